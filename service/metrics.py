"""Prometheus metrics at ``/metrics`` (prometheus-client).

Two kinds of numbers, kept apart on purpose:

- what the database knows (queue depth by state, finished runs by outcome) is read from it at
  each scrape by :class:`DatabaseCollector`: every process answers the same, however many
  gunicorn workers or grading processes run, and nothing is lost when a process restarts;
- what only a process sees (an upload refused, and by which rule; the seconds a grading took)
  is counted where it happens. Under gunicorn (several processes) prometheus-client's
  multiprocess mode adds them up: ``PROMETHEUS_MULTIPROC_DIR`` names a folder shared by the web
  processes and the ``flask worker`` processes of one host, emptied before they start
  (``gunicorn.conf.py`` does it). Without it, a single process counts in memory.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

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


class DatabaseCollector:
    """Queue depth by state and finished runs by outcome, read at scrape time."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        from service.domain.lti_outbox import outbox_counts
        from service.extensions import db
        from service.queue.state import outcome_counts, queue_counts

        with self.app.app_context():
            try:
                depth = queue_counts(db.session)
                outcomes = outcome_counts(db.session)
                outbox = outbox_counts(db.session)
            finally:
                db.session.remove()
        queue = GaugeMetricFamily("grader_queue_runs", "Grading runs by state", labels=["state"])
        for state, count in depth.items():
            queue.add_metric([str(state)], count)
        yield queue
        runs = GaugeMetricFamily("grader_runs_finished", "Finished runs by outcome (graded, "
                                 "timeout, ..., failed), from the database", labels=["outcome"])
        for outcome, count in sorted(outcomes.items()):
            runs.add_metric([outcome], count)
        yield runs
        scores = GaugeMetricFamily("grader_lti_scores", "Grade passback's outbox: scores "
                                   "pending, sent and failed, from the database",
                                   labels=["state"])
        for outbox_state, number in sorted(outbox.items()):
            scores.add_metric([outbox_state], number)
        yield scores


def registry_for(app: Flask) -> CollectorRegistry:
    """The registry ``/metrics`` answers from: this process's counters, or every process's
    under multiprocess mode, plus the database's numbers."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (UPLOAD_REJECTIONS, GRADING_SECONDS, WORKER_RESULTS, KIT_STARTS,
                          LTI_SCORES_SENT):
            registry.register(collector)
    registry.register(DatabaseCollector(app))
    return registry


def scraper_allowed(app: Flask, authorization: str | None) -> bool:
    """Whether a scrape may read the metrics: always without ``METRICS_TOKEN``, else only with
    ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time). Each scrape queries
    the database, so a public ``/metrics`` is also work anyone can make the service do."""
    token = app.config.get("METRICS_TOKEN")
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def init_app(app: Flask) -> None:
    registry = registry_for(app)

    @app.get("/metrics")
    def metrics() -> Response:
        if not scraper_allowed(app, request.headers.get("Authorization")):
            return Response("metrics need Authorization: Bearer <METRICS_TOKEN>\n", status=401,
                            mimetype="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
