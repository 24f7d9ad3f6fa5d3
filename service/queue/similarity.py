"""Carrying a similarity run (``flask similarity run``, the dashboard's button) on the queue, the
way a grading run is carried: the ``SimilarityRun`` row is the job.

- **claimed** by compare-and-set (``queued -> running``, or a lease that ran out), with a
  lease renewed while it works (``leases.LeaseKeeper`` with :func:`renew`);
- **computed** outside any transaction (``service.domain.similarity_check``: gather, compare);
- **stored under the fence**: the pairs are written only if this worker still owns the row
  (:func:`owned`, row locked), in one transaction with ``state = done``;
- **failed with the reason** when the comparison raises (an exercise gone, a bug): it would
  raise again, so it is not retried;
- **requeued after its worker dies** (:func:`requeue_expired`, the janitor and the embedded
  workers call it), and failed after ``MAX_ATTEMPTS`` claims, saying so.

Grading comes first: an embedded worker takes a similarity run only when it found no grading
run to take (``service.queue.embedded``), and a Celery worker gets one message per run on the
``cpu`` queue, behind the grading messages already there. :func:`take_similarity` is what
both carriers, and the CLI when no worker is alive, call.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from flask import Flask
from sqlalchemy import and_, or_, select, update

from grader import GraderConfig
from service.blobs import blob_store
from service.domain import similarity_check
from service.extensions import DbSession, db, rowcount, sessions_of
from service.models import SimilarityRun, utcnow
from service.queue.grading import storable
from service.queue.leases import LeaseKeeper
from service.states import SimilarityState

log = logging.getLogger(__name__)


class SimilarityTakeResult(StrEnum):
    """What :func:`take_similarity` says of the run it was asked for or claimed: its state when
    the worker let it go (a :class:`~service.states.SimilarityState`'s value), or why this
    worker did not compute it (the same words as ``grading.TakeResult``'s)."""

    QUEUED = SimilarityState.QUEUED.value
    RUNNING = SimilarityState.RUNNING.value
    DONE = SimilarityState.DONE.value
    FAILED = SimilarityState.FAILED.value
    #: The run was taken over (its lease ran out) and this worker's pairs dropped.
    LOST = "lost"
    #: There is no such run.
    MISSING = "missing"

    @classmethod
    def of(cls, state: SimilarityState) -> SimilarityTakeResult:
        return cls(state.value)


@dataclass(frozen=True)
class SimilarityTaken:
    """What :func:`take_similarity` did."""

    #: The run claimed (and computed); ``None`` when none was.
    run_id: int | None
    #: Claimed: ``done``, ``failed`` or ``lost``. Not claimed: the asked-for run's state,
    #: ``missing``, or ``None`` when nothing was queued.
    result: SimilarityTakeResult | None
    #: Not claimed because another worker holds the lease until then.
    leased_until: dt.datetime | None = None


def _lease(seconds: int) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def claim(session: DbSession, run_id: int, worker: str, lease_seconds: int) -> bool:
    """Claim run ``run_id`` (queued, or running with a lease that ran out)."""
    now = utcnow()
    claimable = or_(SimilarityRun.state == SimilarityState.QUEUED,
                    and_(SimilarityRun.state == SimilarityState.RUNNING,
                         SimilarityRun.lease_expires_at < now))
    changed = rowcount(session.execute(
        update(SimilarityRun).where(SimilarityRun.id == run_id, claimable)
        .values(state=SimilarityState.RUNNING, worker=worker, started_at=now,
                lease_expires_at=_lease(lease_seconds), attempts=SimilarityRun.attempts + 1)))
    session.commit()
    return changed == 1


def claim_next(session: DbSession, worker: str, lease_seconds: int) -> int | None:
    """Claim the oldest queued run; its id, or ``None``."""
    for _ in range(3):
        candidate = session.execute(
            select(SimilarityRun.id).where(SimilarityRun.state == SimilarityState.QUEUED)
            .order_by(SimilarityRun.id).limit(1)).scalar_one_or_none()
        session.rollback()
        if candidate is None:
            return None
        if claim(session, candidate, worker, lease_seconds):
            return candidate
    return None


def renew(session: DbSession, run_id: int, worker: str, lease_seconds: int) -> bool:
    """Extend the lease while ``worker`` owns the run (``leases.Renew``)."""
    changed = rowcount(session.execute(
        update(SimilarityRun).where(SimilarityRun.id == run_id, SimilarityRun.worker == worker,
                                    SimilarityRun.state == SimilarityState.RUNNING)
        .values(lease_expires_at=_lease(lease_seconds))))
    session.commit()
    return changed == 1


def owned(session: DbSession, run_id: int, worker: str) -> bool:
    """The fence: whether ``worker`` still holds the run (row locked till the commit)."""
    return session.execute(
        select(SimilarityRun.id).where(SimilarityRun.id == run_id,
                                       SimilarityRun.worker == worker,
                                       SimilarityRun.state == SimilarityState.RUNNING)
        .with_for_update()).scalar_one_or_none() is not None


def requeue_expired(session: DbSession, max_attempts: int) -> list[int]:
    """Queue again the runs whose worker stopped renewing; fail those out of attempts. The
    ids of the runs queued again (with Celery, they need a message: the janitor sends it)."""
    now = utcnow()
    expired = and_(SimilarityRun.state == SimilarityState.RUNNING,
                   SimilarityRun.lease_expires_at < now)
    session.execute(
        update(SimilarityRun).where(expired, SimilarityRun.attempts >= max_attempts)
        .values(state=SimilarityState.FAILED, finished_at=now, worker=None,
                lease_expires_at=None,
                reason=f"the worker running it stopped {max_attempts} times (crash or kill)"))
    ids = list(session.execute(select(SimilarityRun.id).where(expired)).scalars())
    if ids:
        session.execute(update(SimilarityRun).where(expired, SimilarityRun.id.in_(ids))
                        .values(state=SimilarityState.QUEUED, worker=None,
                                lease_expires_at=None))
    session.commit()
    return ids


def take_similarity(app: Flask, run_id: int | None, worker: str) -> SimilarityTaken:
    """Claim ``run_id`` (a Celery message, the CLI) or the oldest queued run (``None``: an
    embedded worker with no grading run to take), compute it as ``worker`` and store the pairs
    if ``worker`` still owns it. Database errors propagate, as in ``grading.take``: a run
    claimed meanwhile is queued again when its lease runs out."""
    lease_seconds = app.config["LEASE_SECONDS"]
    with app.app_context():
        try:
            if run_id is None:
                requeue_expired(db.session, app.config["MAX_ATTEMPTS"])
                claimed = claim_next(db.session, worker, lease_seconds)
            else:
                claimed = run_id if claim(db.session, run_id, worker, lease_seconds) else None
            if claimed is None:
                if run_id is None:
                    return SimilarityTaken(None, None)
                run = db.session.get(SimilarityRun, run_id)
                if run is None:
                    return SimilarityTaken(None, SimilarityTakeResult.MISSING)
                leased = run.lease_expires_at if run.state == SimilarityState.RUNNING else None
                return SimilarityTaken(None, SimilarityTakeResult.of(run.state), leased)
            exercise = db.session.get_one(SimilarityRun, claimed).exercise
        finally:
            db.session.remove()
    log.info("similarity run %s of %s taken by %s", claimed, exercise, worker)
    return SimilarityTaken(claimed, compute_run(app, claimed, exercise, worker))


def compute_run(app: Flask, run_id: int, exercise: str,
                worker: str) -> SimilarityTakeResult:
    """Gather, compare and store a run ``worker`` has claimed: ``done``, ``failed`` or
    ``lost`` (the lease was lost, the pairs dropped)."""
    config: GraderConfig = app.config["GRADER"]
    with LeaseKeeper(sessions_of(app), run_id, worker, app.config["LEASE_SECONDS"],
                     renew=renew) as lease:
        try:
            with app.app_context():
                try:
                    gathered = similarity_check.gather(db.session, exercise, config,
                                                       blob_store(app))
                finally:
                    db.session.remove()
            with _owned_run(app, run_id, worker) as run:  # over which submissions, from now
                if run is None:
                    return SimilarityTakeResult.LOST
                run.submissions = similarity_check.submissions_of(gathered)
            comparison = similarity_check.compare(gathered)
        except Exception as exc:  # would raise again: failed, with the reason
            log.exception("similarity run %s failed", run_id)
            return _finish_failed(app, run_id, worker, f"{type(exc).__name__}: {exc}")
        if lease.lost.is_set():
            log.warning("similarity run %s: lease lost; pairs dropped", run_id)
            return SimilarityTakeResult.LOST
        began = time.monotonic()
        try:
            with _owned_run(app, run_id, worker) as run:
                if run is None:
                    return SimilarityTakeResult.LOST
                similarity_check.record(db.session, run, gathered, comparison, began)
                return SimilarityTakeResult.DONE
        except Exception as exc:  # a store that fails would fail again (a value too large)
            log.exception("similarity run %s: pairs not stored", run_id)
            return _finish_failed(app, run_id, worker,
                                  f"pairs not stored: {type(exc).__name__}: {exc}")


@contextmanager
def _owned_run(app: Flask, run_id: int, worker: str) -> Iterator[SimilarityRun | None]:
    """The run, locked, if ``worker`` still owns it, else ``None``; committed on a clean exit,
    rolled back when the caller raises."""
    with app.app_context():
        try:
            if not owned(db.session, run_id, worker):
                db.session.rollback()
                yield None
                return
            yield db.session.get_one(SimilarityRun, run_id)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        finally:
            db.session.remove()


def _finish_failed(app: Flask, run_id: int, worker: str,
                   reason: str) -> SimilarityTakeResult:
    with _owned_run(app, run_id, worker) as run:
        if run is None:
            return SimilarityTakeResult.LOST
        run.state, run.finished_at = SimilarityState.FAILED, utcnow()
        run.reason = storable(reason[:4000])
        run.lease_expires_at = None
        return SimilarityTakeResult.FAILED
