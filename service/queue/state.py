"""The queue in numbers, for the dashboard's queue page and its index and for ``/metrics``: how
many runs wait and for how long, what runs now, what failed and why, and which workers are alive
(``heartbeats``). Queries only: nothing here renders or writes."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import defer, selectinload

from service.extensions import DbSession
from service.models import GradingRun, Submission, Worker, utcnow
from service.queue.heartbeats import is_alive, recent_workers
from service.states import RunState

#: Averages are over this many most recent runs.
RECENT = 20
LISTED = 20


@dataclass(frozen=True)
class QueueState:
    counts: dict[RunState, int]
    failed_last_day: int
    graded_last_hour: int
    #: Seconds the oldest queued run has waited.
    oldest_wait: float | None
    #: Mean seconds from queued to started over the last ``RECENT`` started runs.
    average_wait: float | None
    #: Mean seconds from started to finished over the last ``RECENT`` graded runs.
    average_grading: float | None
    queued: list[GradingRun]
    running: list[GradingRun]
    failed: list[GradingRun]
    workers: list[tuple[Worker, bool]]

    @property
    def alive(self) -> int:
        return sum(1 for _, alive in self.workers if alive)

    @property
    def drain_estimate(self) -> float | None:
        """Seconds until the runs queued now are graded, at the recent pace, by the workers
        alive now; None when it cannot be told (nothing known, or no worker)."""
        waiting = self.counts[RunState.QUEUED] + self.counts[RunState.RUNNING]
        if not waiting or self.average_grading is None or not self.alive:
            return None
        return waiting * self.average_grading / self.alive


def queue_counts(session: DbSession) -> dict[RunState, int]:
    counts = dict.fromkeys(RunState, 0)
    counts.update(session.execute(
        select(GradingRun.state, func.count(GradingRun.id)).group_by(GradingRun.state)
    ).all())
    return counts


def _runs(session: DbSession, *where, order, limit: int = LISTED) -> list[GradingRun]:
    return list(session.execute(
        select(GradingRun).where(*where)
        .options(defer(GradingRun.report),
                 selectinload(GradingRun.submission).selectinload(Submission.student))
        .order_by(*order).limit(limit)
    ).scalars())


def queue_state(session: DbSession) -> QueueState:
    now = utcnow()
    counts = queue_counts(session)
    oldest = session.execute(
        select(func.min(GradingRun.queued_at)).where(GradingRun.state == RunState.QUEUED)
    ).scalar_one()
    started = session.execute(
        select(GradingRun.queued_at, GradingRun.started_at)
        .where(GradingRun.started_at.is_not(None))
        .order_by(GradingRun.started_at.desc()).limit(RECENT)
    ).all()
    graded = session.execute(
        select(GradingRun.started_at, GradingRun.finished_at)
        .where(GradingRun.state == RunState.GRADED, GradingRun.started_at.is_not(None),
               GradingRun.finished_at.is_not(None))
        .order_by(GradingRun.finished_at.desc()).limit(RECENT)
    ).all()

    def since(state: RunState, delta: dt.timedelta) -> int:
        return session.execute(
            select(func.count(GradingRun.id)).where(GradingRun.state == state,
                                                    GradingRun.finished_at >= now - delta)
        ).scalar_one()

    return QueueState(
        counts=counts,
        failed_last_day=since(RunState.FAILED, dt.timedelta(days=1)),
        graded_last_hour=since(RunState.GRADED, dt.timedelta(hours=1)),
        oldest_wait=(now - oldest).total_seconds() if oldest else None,
        average_wait=_mean([(s - q).total_seconds() for q, s in started if s is not None]),
        average_grading=_mean([(f - s).total_seconds() for s, f in graded
                               if s is not None and f is not None]),  # the query made sure
        queued=_runs(session, GradingRun.state == RunState.QUEUED, order=[GradingRun.id]),
        running=_runs(session, GradingRun.state == RunState.RUNNING, order=[GradingRun.started_at]),
        failed=_runs(session, GradingRun.state == RunState.FAILED,
                     order=[GradingRun.finished_at.desc(), GradingRun.id.desc()]),
        workers=[(worker, is_alive(worker, now)) for worker in recent_workers(session)],
    )


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None



def outcome_counts(session: DbSession) -> dict[str, int]:
    """Finished runs by how they ended: a graded run's outcome (``graded``, ``timeout``...), or
    ``failed``. Counted from the table, so every process reports the same totals."""
    counts: dict[str, int] = {}
    for state, outcome, count in session.execute(
        select(GradingRun.state, GradingRun.outcome, func.count(GradingRun.id))
        .where(GradingRun.state.in_([RunState.GRADED, RunState.FAILED]))
        .group_by(GradingRun.state, GradingRun.outcome)
    ):
        key = str(outcome) if state == RunState.GRADED and outcome is not None else str(state)
        counts[key] = counts.get(key, 0) + count
    return counts
