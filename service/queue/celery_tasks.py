"""Celery tasks: the queue at scale, with Redis as the broker.

Start a worker with::

    celery -A service.queue.celery_tasks worker -Q gpu --concurrency 1

Delivery is acknowledged only after the task returns (``acks_late``), and a task whose worker
process dies is delivered again (``reject_on_worker_lost``). The task itself claims the run in
the database (``service.queue.claims``), so a redelivered or duplicated message never grades a
run twice at once; a run still leased by a worker that may be alive is retried after the lease
runs out. The Flask app is built lazily in the worker process, never at import.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

from celery import Celery
from sqlalchemy import update

GPU_QUEUE = "gpu"

celery_app = Celery("grader", set_as_current=False)
celery_app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=GPU_QUEUE,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 3600},
    task_ignore_result=True,
)

_flask_app = None


def flask_app():
    global _flask_app
    if _flask_app is None:
        from service import create_app

        _flask_app = create_app()
    return _flask_app


@celery_app.task(bind=True, name="service.grade_run", max_retries=20)
def grade(self, run_id: int) -> str:
    from service.extensions import db
    from service.models import GradingRun, utcnow
    from service.queue import claims as jobs
    from service.queue.grading import grade_run
    from service.queue.heartbeats import Heartbeat

    app = flask_app()
    # unique per delivery: two deliveries of one message must not share a lease
    worker = f"celery:{self.request.hostname}:{self.request.id}:{uuid.uuid4().hex[:8]}"
    # The dashboard's heartbeat: one row per worker process (prefork children share the
    # node's hostname), renewed while the task runs.
    node = f"{self.request.hostname}:{os.getpid()}"
    with Heartbeat(app, "celery") as heartbeat:
        heartbeat.working(node, None)
        with app.app_context():
            try:
                # Expired leases first, as the embedded workers do: a run that used up its
                # attempts is failed here instead of being claimed once more by a redelivered
                # message.
                jobs.requeue_expired(db.session, app.config["MAX_ATTEMPTS"])
                claimed = jobs.claim(db.session, run_id, worker, app.config["LEASE_SECONDS"])
                run = db.session.get(GradingRun, run_id)
                status = run.status if run else "missing"
                lease = run.lease_expires_at if run else None
            finally:
                db.session.remove()
        if not claimed:
            if status == "running" and lease is not None:  # maybe a dead worker: wait for it
                wait = max(1.0, (lease - utcnow()).total_seconds() + 1)
                raise self.retry(countdown=wait)
            return f"skipped ({status})"
        heartbeat.working(node, run_id)
        try:
            return grade_run(app, run_id, worker)
        finally:
            heartbeat.working(node, None)


def send_run(run_id: int) -> None:
    """Send a committed run to the broker and note when (see :func:`resend_stale`)."""
    from flask import current_app

    from service.extensions import db
    from service.models import GradingRun, utcnow

    # The app's broker, not the one this module read from the environment at import.
    with celery_app.connection_for_write(current_app.config["CELERY_BROKER_URL"]) as broker:
        result = grade.apply_async(  # type: ignore[call-arg]  # celery-types lacks connection=
            args=(run_id,), queue=GPU_QUEUE, connection=broker)
    db.session.execute(update(GradingRun).where(GradingRun.id == run_id)
                       .values(task_id=result.id, dispatched_at=utcnow()))
    db.session.commit()


def resend_stale(older_than: dt.timedelta) -> int:
    """Send again the runs that sit queued although sent long ago (or never sent)."""
    from sqlalchemy import or_, select

    from service.extensions import db
    from service.models import GradingRun, utcnow

    cutoff = utcnow() - older_than
    ids = db.session.execute(
        select(GradingRun.id).where(
            GradingRun.status == "queued",
            or_(GradingRun.dispatched_at.is_(None), GradingRun.dispatched_at < cutoff),
            GradingRun.queued_at < cutoff,
        )
    ).scalars().all()
    for run_id in ids:
        send_run(run_id)
    return len(ids)
