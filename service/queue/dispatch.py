"""Handing a committed run to whatever carries jobs: waking the embedded workers of this process
(those of others were woken by the commit, ``service.queue.wakeup``), or sending a
message to the Celery broker (and sending it again when the run still sits queued), on the
``gpu`` queue for a run that requires a GPU and the ``cpu`` queue for the others."""

from __future__ import annotations

import datetime as dt
import logging

from flask import current_app
from sqlalchemy import or_, select, update

from service.extensions import db
from service.models import GradingRun, SimilarityRun, utcnow
from service.queue_channel import notify_queued
from service.states import GpuNeed, RunState, SimilarityState, WorkerKind

log = logging.getLogger(__name__)


def enqueue(run_id: int) -> None:
    """Tell the queue about a run already committed as queued. Never raises: a run the broker
    did not take stays queued in the database and is sent again by the janitor (or ``flask
    requeue``)."""
    if current_app.config["QUEUE"] == WorkerKind.CELERY:
        try:
            send_run(run_id)
        except Exception:
            log.exception("run %s not sent to the broker; it stays queued", run_id)
        return
    workers = current_app.extensions.get("grader_workers")
    if workers is not None:  # this process's threads; other processes heard the NOTIFY
        workers.wake.ring()


def enqueue_similarity(run_id: int) -> None:
    """Tell the queue about a similarity run committed as queued (``service.domain.
    similarity_runs.request_run``): ring this process's embedded workers and, on PostgreSQL,
    those of other processes (``NOTIFY``), or send the Celery task on the ``cpu`` queue. Never
    raises: the run stays queued in the database, asking again sends it again, and the CLI
    computes it itself when no worker is alive."""
    try:
        if current_app.config["QUEUE"] == WorkerKind.CELERY:
            send_similarity(run_id)
            return
        notify_queued(db.session)
        db.session.commit()
    except Exception:
        log.exception("similarity run %s not handed to the queue; it stays queued", run_id)
        db.session.rollback()
    workers = current_app.extensions.get("grader_workers")
    if workers is not None:
        workers.wake.ring()


def send_similarity(run_id: int) -> None:
    """Send a similarity run's message to the broker (``cpu`` queue) and keep its task id."""
    from service.queue.celery_app import CPU_QUEUE, SIMILARITY_TASK, celery_app

    with celery_app.connection_for_write(current_app.config["CELERY_BROKER_URL"]) as broker:
        result = celery_app.send_task(SIMILARITY_TASK, args=(run_id,), queue=CPU_QUEUE,
                                      connection=broker)
    db.session.execute(update(SimilarityRun).where(SimilarityRun.id == run_id)
                       .values(task_id=result.id, dispatched_at=utcnow()))
    db.session.commit()


def send_run(run_id: int) -> None:
    """Send a committed run to the broker, on the queue of what it asks of the GPUs
    (:func:`queue_for`), and note when (see :func:`resend_stale`)."""
    from service.queue.celery_app import GRADE_TASK, celery_app

    need = db.session.execute(select(GradingRun.gpu).where(GradingRun.id == run_id)
                              ).scalar_one_or_none() or GpuNeed.NONE
    # The app's broker, not the one the Celery module read from the environment at import.
    with celery_app.connection_for_write(current_app.config["CELERY_BROKER_URL"]) as broker:
        result = celery_app.send_task(GRADE_TASK, args=(run_id,), queue=queue_for(need),
                                      connection=broker)
    db.session.execute(update(GradingRun).where(GradingRun.id == run_id)
                       .values(task_id=result.id, dispatched_at=utcnow()))
    db.session.commit()


def queue_for(need: GpuNeed) -> str:
    """The Celery queue of a run: ``gpu`` when it requires a GPU (only workers with GPUs read
    it), else ``cpu`` (every worker reads it; one with a free GPU lends it to a ``preferred``
    run)."""
    from service.queue.celery_app import CPU_QUEUE, GPU_QUEUE

    return GPU_QUEUE if need is GpuNeed.REQUIRED else CPU_QUEUE


def resend_stale(older_than: dt.timedelta) -> int:
    """Send again the runs that sit queued although sent long ago (or never sent): the message
    was lost, or the broker was down when the run was submitted. A duplicate is harmless (the
    database claim lets one delivery grade). Returns how many were sent."""
    cutoff = utcnow() - older_than
    ids = db.session.execute(
        select(GradingRun.id).where(
            GradingRun.state == RunState.QUEUED,
            or_(GradingRun.dispatched_at.is_(None), GradingRun.dispatched_at < cutoff),
            GradingRun.queued_at < cutoff,
        )
    ).scalars().all()
    for run_id in ids:
        send_run(run_id)
    return len(ids)


def resend_stale_similarity(older_than: dt.timedelta) -> int:
    """:func:`resend_stale` for similarity runs: those queued although sent long ago (or never
    sent: the broker was down when it was asked for). Returns how many were sent."""
    cutoff = utcnow() - older_than
    ids = db.session.execute(
        select(SimilarityRun.id).where(
            SimilarityRun.state == SimilarityState.QUEUED,
            or_(SimilarityRun.dispatched_at.is_(None), SimilarityRun.dispatched_at < cutoff),
            SimilarityRun.queued_at < cutoff,
        )
    ).scalars().all()
    for run_id in ids:
        send_similarity(run_id)
    return len(ids)
