"""The database as the job queue: claiming runs, leases, fenced completion.

Every worker, embedded thread or Celery task, goes through these functions, so the guarantees
hold whatever carries the job:

- a run is claimed by one compare-and-set ``UPDATE … WHERE status = 'queued'``: two workers never
  grade it at once;
- a claimed run carries a lease that its worker renews while grading; a run whose lease expired
  (its worker died) is queued again, up to ``max_attempts`` runs, then failed with the reason;
- results are written with a fenced ``UPDATE … WHERE worker = me AND status = 'running'``, so a
  worker that lost its lease cannot overwrite the result of the worker that took over.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, or_, select, update

from service.extensions import DbSession
from service.models import GradingRun, utcnow

# An UPDATE run by Session.execute returns a CursorResult (it has ``rowcount``), typed only as a
# Result: the session cannot promise it for every statement (sqlalchemy/sqlalchemy#12913).


def _lease(seconds: int) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def requeue_expired(session: DbSession, max_attempts: int) -> int:
    """Queue again the runs whose worker stopped renewing its lease; fail those out of attempts.
    Returns how many runs changed."""
    now = utcnow()
    expired = and_(GradingRun.status == "running", GradingRun.lease_expires_at < now)
    failed = cast(CursorResult[Any], session.execute(
        update(GradingRun)
        .where(expired, GradingRun.attempts >= max_attempts)
        .values(status="failed", finished_at=now, worker=None,
                reason=f"the worker running it stopped {max_attempts} times (crash or kill)")
    )).rowcount
    requeued = cast(CursorResult[Any], session.execute(
        update(GradingRun).where(expired).values(status="queued", worker=None,
                                                 lease_expires_at=None)
    )).rowcount
    session.commit()
    return failed + requeued


def claim(session: DbSession, run_id: int, worker: str, lease_seconds: int) -> bool:
    """Claim one given run (Celery's path): ``True`` when this worker now owns it."""
    now = utcnow()
    claimable = or_(
        GradingRun.status == "queued",
        and_(GradingRun.status == "running", GradingRun.lease_expires_at < now),
    )
    changed = cast(CursorResult[Any], session.execute(
        update(GradingRun)
        .where(GradingRun.id == run_id, claimable)
        .values(status="running", worker=worker, lease_expires_at=_lease(lease_seconds),
                started_at=now, attempts=GradingRun.attempts + 1)
    )).rowcount
    session.commit()
    return changed == 1


def claim_next(session: DbSession, worker: str, lease_seconds: int) -> int | None:
    """Claim the oldest queued run (the embedded workers' path); its id, or ``None``."""
    for _ in range(5):
        candidate = session.execute(
            select(GradingRun.id).where(GradingRun.status == "queued")
            .order_by(GradingRun.id).limit(1)
        ).scalar_one_or_none()
        session.rollback()
        if candidate is None:
            return None
        if claim(session, candidate, worker, lease_seconds):
            return candidate
    return None


def renew(session: DbSession, run_id: int, worker: str, lease_seconds: int) -> bool:
    """Extend the lease; ``False`` when this worker no longer owns the run."""
    changed = cast(CursorResult[Any], session.execute(
        update(GradingRun)
        .where(GradingRun.id == run_id, GradingRun.worker == worker,
               GradingRun.status == "running")
        .values(lease_expires_at=_lease(lease_seconds))
    )).rowcount
    session.commit()
    return changed == 1


def owned(session: DbSession, run_id: int, worker: str) -> bool:
    """Whether ``worker`` still holds the run (checked inside the result transaction)."""
    row = session.execute(
        select(GradingRun.id).where(GradingRun.id == run_id, GradingRun.worker == worker,
                                    GradingRun.status == "running")
        .with_for_update()
    ).scalar_one_or_none()
    return row is not None


def queue_position(session: DbSession, run_id: int) -> int | None:
    """1 for the next run to start; ``None`` when the run is not queued."""
    run = session.get(GradingRun, run_id)
    if run is None or run.status != "queued":
        return None
    ahead = session.execute(
        select(func.count(GradingRun.id))
        .where(GradingRun.status == "queued", GradingRun.id < run_id)
    ).scalar_one()
    return ahead + 1
