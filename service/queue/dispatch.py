"""Handing a committed run to whatever carries jobs: the embedded workers or Celery."""

from __future__ import annotations

import logging

from flask import current_app

log = logging.getLogger(__name__)


def enqueue(run_id: int) -> None:
    """Tell the queue about a run already committed as ``queued``. Never raises: a run the
    broker did not take stays queued in the database and is sent again by ``flask requeue``."""
    if current_app.config["QUEUE"] == "celery":
        from service.queue.celery_tasks import send_run

        try:
            send_run(run_id)
        except Exception:
            log.exception("run %s not sent to the broker; it stays queued", run_id)
        return
    workers = current_app.extensions.get("grader_workers")
    if workers is not None:
        workers.wake.set()
