"""The job row's SQL: claim (compare-and-set), renew, the fence, requeue after a death.

Each function is one statement the database decides atomically, so they hold whatever carries
the job and however many workers race (the story is told in ``service.queue``):

- :func:`claim` / :func:`claim_next`: ``UPDATE … SET state = 'running' WHERE state = 'queued'``
  (or a lease that ran out); the row count says who won. A worker claims only runs whose
  ``gpu`` it can serve (:func:`takeable_needs`): ``required`` ones only while it holds a GPU
  (``service.queue.gpu_leases``);
- :func:`renew`: extend the lease, only while this worker still owns the run;
- :func:`owned`: the fence, read with ``FOR UPDATE`` inside the transaction that stores a result;
- :func:`requeue_expired`: a run whose lease ran out goes back to ``queued``, or to ``failed``
  after ``max_attempts`` claims.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy import and_, func, or_, select, update

from service.extensions import DbSession, rowcount
from service.models import GradingRun, utcnow
from service.queue_channel import notify_queued
from service.states import GpuNeed, RunState

#: Every run, whatever it asks of the GPUs.
ALL_NEEDS: tuple[GpuNeed, ...] = tuple(GpuNeed)


def takeable_needs(holds_gpu: bool) -> tuple[GpuNeed, ...]:
    """The runs a worker may claim: any when it holds a free GPU's lease (a ``none`` run is
    then graded without it), else those that can do without one."""
    return ALL_NEEDS if holds_gpu else (GpuNeed.PREFERRED, GpuNeed.NONE)


def _lease(seconds: int) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def requeue_expired(session: DbSession, max_attempts: int) -> int:
    """Queue again the runs whose worker stopped renewing its lease; fail those out of attempts.
    Returns how many runs changed."""
    now = utcnow()
    expired = and_(GradingRun.state == RunState.RUNNING, GradingRun.lease_expires_at < now)
    failed = rowcount(session.execute(
        update(GradingRun)
        .where(expired, GradingRun.attempts >= max_attempts)
        .values(state=RunState.FAILED, finished_at=now, worker=None,
                reason=f"the worker running it stopped {max_attempts} times (crash or kill)")
    ))
    requeued = rowcount(session.execute(
        update(GradingRun).where(expired).values(state=RunState.QUEUED, worker=None,
                                                 lease_expires_at=None)
    ))
    if requeued:
        notify_queued(session)
    session.commit()
    return failed + requeued


def claim(session: DbSession, run_id: int, worker: str, lease_seconds: int,
          needs: Collection[GpuNeed] = ALL_NEEDS) -> bool:
    """Claim one given run (a Celery message names it): ``True`` when this worker now owns it.
    A queued run, or a running one whose lease ran out (its worker died), can be claimed, if it
    asks of the GPUs one of ``needs`` (what this worker can give: :func:`takeable_needs`)."""
    now = utcnow()
    claimable = or_(
        GradingRun.state == RunState.QUEUED,
        and_(GradingRun.state == RunState.RUNNING, GradingRun.lease_expires_at < now),
    )
    changed = rowcount(session.execute(
        update(GradingRun)
        .where(GradingRun.id == run_id, claimable, GradingRun.gpu.in_(list(needs)))
        .values(state=RunState.RUNNING, worker=worker, lease_expires_at=_lease(lease_seconds),
                started_at=now, attempts=GradingRun.attempts + 1)
    ))
    session.commit()
    return changed == 1


def claim_next(session: DbSession, worker: str, lease_seconds: int,
               needs: Collection[GpuNeed] = ALL_NEEDS) -> int | None:
    """Claim the oldest queued run asking one of ``needs`` (the embedded workers poll this
    way); its id, or ``None``. Losing the race for a candidate just means trying the next."""
    for _ in range(5):
        candidate = session.execute(
            select(GradingRun.id).where(GradingRun.state == RunState.QUEUED,
                                        GradingRun.gpu.in_(list(needs)))
            .order_by(GradingRun.id).limit(1)
        ).scalar_one_or_none()
        session.rollback()
        if candidate is None:
            return None
        if claim(session, candidate, worker, lease_seconds, needs):
            return candidate
    return None


def renew(session: DbSession, run_id: int, worker: str, lease_seconds: int) -> bool:
    """Extend the lease; ``False`` when this worker no longer owns the run."""
    changed = rowcount(session.execute(
        update(GradingRun)
        .where(GradingRun.id == run_id, GradingRun.worker == worker,
               GradingRun.state == RunState.RUNNING)
        .values(lease_expires_at=_lease(lease_seconds))
    ))
    session.commit()
    return changed == 1


def reclaim(session: DbSession, run_id: int, worker: str, lease_seconds: int) -> bool:
    """Take back a run this worker was grading whose lease ran out (a paused host) and which
    was requeued but not yet claimed by anyone: ``True`` when it is ours again. The same
    attempt goes on, so ``attempts`` is unchanged; any other state, or another worker's claim,
    leaves it alone."""
    changed = rowcount(session.execute(
        update(GradingRun)
        .where(GradingRun.id == run_id, GradingRun.state == RunState.QUEUED,
               GradingRun.worker.is_(None))
        .values(state=RunState.RUNNING, worker=worker, lease_expires_at=_lease(lease_seconds))
    ))
    session.commit()
    return changed == 1


def owned(session: DbSession, run_id: int, worker: str) -> bool:
    """Whether ``worker`` still holds the run (checked inside the result transaction)."""
    row = session.execute(
        select(GradingRun.id).where(GradingRun.id == run_id, GradingRun.worker == worker,
                                    GradingRun.state == RunState.RUNNING)
        .with_for_update()
    ).scalar_one_or_none()
    return row is not None


def queue_position(session: DbSession, run_id: int) -> int | None:
    """1 for the next run to start; ``None`` when the run is not queued."""
    run = session.get(GradingRun, run_id)
    if run is None or run.state != RunState.QUEUED:
        return None
    ahead = session.execute(
        select(func.count(GradingRun.id))
        .where(GradingRun.state == RunState.QUEUED, GradingRun.id < run_id)
    ).scalar_one()
    return ahead + 1
