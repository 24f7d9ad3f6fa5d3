"""Prometheus counters (prometheus-client): what only a process sees (an upload refused, and by
which rule; the seconds a grading took), counted where it happens, by the views and the queue.

What the database knows (queue depth by state, finished runs by outcome) is not counted here: it
is read from the database at each scrape by ``service.views.metrics``, which serves ``/metrics``,
so every process answers the same and nothing is lost when a process restarts.

Under gunicorn (several processes) prometheus-client's multiprocess mode adds the counters up:
``PROMETHEUS_MULTIPROC_DIR`` names a folder shared by the web processes and the ``flask worker``
processes of one host, emptied before they start (``gunicorn.conf.py`` does it). Without it, a
single process counts in memory.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

UPLOAD_REJECTIONS = Counter(
    "grader_upload_rejections", "Uploads refused, by the rule's code", ["code"])
GRADING_SECONDS = Histogram(
    "grader_grading_seconds", "Seconds from a run's claim to its stored result",
    buckets=(5, 15, 30, 60, 120, 180, 300, 600, 900, 1800))
WORKER_RESULTS = Counter(
    "grader_worker_results", "Runs a worker of this host took, by what became of them "
    "(graded, failed, queued again, lost)", ["result"])

KIT_STARTS = Counter(
    "grader_kit_starts", "Runs a worker of this host graded, by how their sandboxes started: "
    "warm (a kit of the warm pool) or cold (none was ready, WARM_POOL=0, or a GPU run)",
    ["start"])

LTI_SCORES_SENT = Counter(
    "grader_lti_scores_sent", "Scores this host's senders sent to an LMS (grade passback), by "
    "what became of the row: sent, pending (to be tried again), failed (given up), replaced (a "
    "newer score took the row meanwhile)", ["outcome"])


def upload_rejected(code: str) -> None:
    """An upload was refused (``Rejection.code``: ``rate_limited``, ``invalid_notebook``...)."""
    UPLOAD_REJECTIONS.labels(code=code).inc()


def run_taken(result: str, seconds: float) -> None:
    """A worker finished with a run (``grading.take``): its result and how long it took."""
    WORKER_RESULTS.labels(result=result).inc()
    GRADING_SECONDS.observe(seconds)


def kit_started(warm: bool) -> None:
    """A run got a warm kit, or started its sandboxes cold."""
    KIT_STARTS.labels(start="warm" if warm else "cold").inc()


def lti_score_sent(outcome: str) -> None:
    """A sender recorded the platform's answer to one score (``lti_outbox.record``)."""
    LTI_SCORES_SENT.labels(outcome=outcome).inc()


#: Every counter of this module, registered one by one when no multiprocess folder adds them up.
COUNTERS = (UPLOAD_REJECTIONS, GRADING_SECONDS, WORKER_RESULTS, KIT_STARTS, LTI_SCORES_SENT)
