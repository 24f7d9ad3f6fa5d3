"""Regrading from the dashboard: one submission, or an exercise's submissions after its
reference changed. Each regrade is a new run (``service.domain.submissions.regrade``); old runs
stay. The runs are committed as queued; the caller hands them to the queue
(``service.queue.dispatch.enqueue``).

A submission whose latest run is still queued or running is skipped: a second pending run of the
same notebook would only grade it twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from service.domain.submissions import regrade
from service.extensions import db
from service.models import GradingRun, Submission

#: ``all``: every submission; ``latest``: each student's most recent submission only.
SCOPES = ("all", "latest")


@dataclass(frozen=True)
class RegradeResult:
    queued: list[GradingRun]
    #: Submissions left alone because a run of theirs is already pending.
    skipped: int


def is_pending(submission: Submission) -> bool:
    run = submission.latest_run
    return run is not None and run.is_live


def regrade_submission(submission: Submission) -> GradingRun | None:
    """A new run, or ``None`` when one is already queued or running."""
    return None if is_pending(submission) else regrade(submission)


def regrade_exercise(exercise_id: str, scope: str = "all") -> RegradeResult:
    submissions = db.session.execute(
        select(Submission).where(Submission.exercise == exercise_id)
        .options(selectinload(Submission.runs))
        .order_by(Submission.created_at, Submission.id)
    ).scalars().all()
    if scope == "latest":
        latest: dict[int, Submission] = {}
        for submission in submissions:
            latest[submission.student_pk] = submission
        submissions = sorted(latest.values(), key=lambda s: (s.created_at, s.id))
    queued, skipped = [], 0
    for submission in submissions:
        run = regrade_submission(submission)
        if run is None:
            skipped += 1
        else:
            queued.append(run)
    return RegradeResult(queued, skipped)
