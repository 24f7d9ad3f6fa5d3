"""The names of the service's states, one enum per concept, shared by models, API and pages.

A grading run has two different things one might call its "status"; each has one word, used
by the code, the database, the JSON API, the pages' translation keys and the docs alike:

- its **state**, :class:`RunState`, where the run is in the queue (``queued -> running ->
  graded | failed``), owned by ``service.queue``: ``GradingRun.state``, the API's ``state``,
  the catalogs' ``state.*``;
- its **outcome**, ``grader.Outcome``, what the grader said of the notebook (``graded``,
  ``timeout``, ``out_of_memory``...), set only on a ``graded`` run: ``GradeReport.outcome``,
  ``GradingRun.outcome``, the API's ``outcome``, the catalogs' ``outcome.*``.

A failed run (state ``failed``) has no outcome: no report came. A graded run's outcome may
still say the notebook did not run to its end (``timeout``): the grader finished, the student's
notebook did not. The JSON API still sends both under their older names too, marked
deprecated (``service/views/schemas.py``); ``tests/test_concept_words.py`` keeps the older words
out of everything else.

The enums are ``StrEnum``: a member *is* its string, so JSON, the database (through
``service.models``), Jinja (``RunState`` and ``Outcome`` are template globals) and the
translation keys (``label("state", run.state)``) see the same value they always did, and a typo
in a state's name fails at import instead of silently never matching.
"""

from __future__ import annotations

from enum import StrEnum

from grader import GpuNeed, ItemStatus, Outcome

__all__ = ["FINISHED", "LIVE", "GpuNeed", "ItemStatus", "Outcome", "ReviewDecision", "RunState",
           "SimilarityState", "WorkerKind"]


class RunState(StrEnum):
    """Where a grading run is in the queue (``GradingRun.state``)."""

    #: Waiting for a worker to claim it.
    QUEUED = "queued"
    #: Claimed by a worker that holds a lease on it.
    RUNNING = "running"
    #: The grader finished and its report is stored (whatever its outcome).
    GRADED = "graded"
    #: No report will come: the notebook is gone, the grader raised, or workers died too often.
    FAILED = "failed"

    @property
    def is_live(self) -> bool:
        """Still waiting for a result (the pages poll, a regrade is not queued twice)."""
        return self in LIVE

    @property
    def is_finished(self) -> bool:
        return self in FINISHED


#: The states of a run that has no result yet.
LIVE = (RunState.QUEUED, RunState.RUNNING)
#: The states a run does not leave.
FINISHED = (RunState.GRADED, RunState.FAILED)


class WorkerKind(StrEnum):
    """What carries a grading worker (``Worker.kind``, shown on the dashboard)."""

    #: A thread of the service process (or of ``flask worker``), polling the database.
    EMBEDDED = "embedded"
    #: A Celery task, fed by the broker.
    CELERY = "celery"


class ScoreState(StrEnum):
    """Where a score of grade passback's outbox is (``LtiScore.state``,
    ``service.domain.lti_outbox``)."""

    #: To be sent (now, or after its backoff).
    PENDING = "pending"
    #: The platform acknowledged it.
    SENT = "sent"
    #: Given up, with the reason: a refusal that cannot pass, or seven days of failures.
    FAILED = "failed"


class SimilarityState(StrEnum):
    """Where a similarity run is (``SimilarityRun.state``, ``service.queue.similarity``)."""

    #: Waiting for a worker.
    QUEUED = "queued"
    #: Taken by a worker that holds a lease on it.
    RUNNING = "running"
    #: Its pairs are stored.
    DONE = "done"
    #: No pairs will come, with the reason.
    FAILED = "failed"


class ReviewDecision(StrEnum):
    """An instructor's word on a pair of students (``SimilarityReview.decision``). A decision
    never changes a score by itself: adjustments do."""

    #: Not reviewed yet, or reopened.
    OPEN = "open"
    #: Looked at: nothing wrong (a shared study group's habits, a common source).
    DISMISSED = "dismissed"
    #: Looked at: the work was shared.
    CONFIRMED = "confirmed"
