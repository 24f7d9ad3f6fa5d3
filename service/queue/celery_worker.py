"""The Celery carrier: the queue at scale, with Redis (or RabbitMQ) as the broker.

Start a worker with::

    celery -A service.queue.celery_worker worker -Q cpu --concurrency <RUNS_PER_HOST>  # no GPU
    GPUS=auto GRADER_SANDBOX=docker \
      celery -A service.queue.celery_worker worker -Q gpu,cpu --concurrency <GPUs>  # GPU host

Runs that require a GPU come on the ``gpu`` queue, the others on ``cpu``
(``service.queue.dispatch.queue_for``). A delivery of a run requiring a GPU to a worker with
none free is sent again on the ``gpu`` queue a little later (:data:`GPU_WAIT_SECONDS`).

A message only names a run; the task hands it to :func:`service.queue.grading.take`, the same
claim, lease and fenced store as the embedded workers, so the database decides who grades. The
broker may deliver a message twice or again after a worker died (``acks_late`` with
``reject_on_worker_lost``): a second delivery finds the run claimed or finished and is skipped,
and one that finds the run leased by a worker that may be dead asks again when the lease runs
out. Messages are sent by ``service.queue.dispatch`` (by name, through
``service.queue.celery_app``). The Flask app and the process's one grading host
(``service.queue.host``: CPU slots, warm pool, spare render child, GPU inventory) are made in
the worker process (at ``worker_process_init``, else at its first task), never at import, and
the host is closed when the process stops; nothing in the app imports this module (it imports
the app factory).
"""

from __future__ import annotations

import logging
import os
import uuid

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown
from flask import Flask

from service.lti import passback
from service.models import utcnow
from service.queue.celery_app import GPU_QUEUE, GRADE_TASK, SIMILARITY_TASK, celery_app
from service.queue.grading import TakeResult, take
from service.queue.heartbeats import Heartbeat
from service.queue.host import GradingHost
from service.queue.lti_sender import PassbackSender
from service.queue.similarity import take_similarity
from service.states import WorkerKind

__all__ = ["celery_app", "compare", "grade"]

log = logging.getLogger(__name__)

#: The worker process's grading host (its app in it), opened once: a Celery child has no
#: other place to keep it between its signals and its tasks.
_host: GradingHost | None = None
#: Seconds before a run that found no free GPU is delivered again.
GPU_WAIT_SECONDS = 15


def grading_host() -> GradingHost:
    """The worker process's grading host, opened at its first call (a bad ``GPUS`` setting
    fails it loudly, and the next call tries again)."""
    global _host
    if _host is None:
        from service import create_app

        app = create_app()
        host = GradingHost(app).open()
        PassbackSender(app).start()  # sends the scores this process grades
        _host = host
    return _host


def flask_app() -> Flask:
    """The worker process's Flask app (its grading host's)."""
    return grading_host().app


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """A prefork child opens its grading host (and so starts its warm pool, ``WARM_POOL``)
    before its first task; an app that cannot be made now fails the first task instead, saying
    why."""
    try:
        grading_host()
    except Exception:
        log.exception("the worker process could not warm up")


@worker_process_shutdown.connect
@worker_shutdown.connect
def _cool_down(**_: object) -> None:
    """Close the process's grading host when it stops: its warm kits, its spare render child
    (nothing left behind)."""
    if _host is not None:
        sender = _host.app.extensions.get(passback.EXTENSION)
        if sender is not None:
            sender.stop()
        _host.close()


@celery_app.task(bind=True, name=GRADE_TASK, max_retries=20)
def grade(self: Task, run_id: int) -> str:
    """Take run ``run_id``: its state when done, or ``skipped (<state>)`` when it was not ours
    to take (a duplicate delivery, a run already finished or gone)."""
    host = grading_host()
    app = host.app
    # unique per delivery: two deliveries of one message must not share a lease
    worker = f"celery:{self.request.hostname}:{self.request.id}:{uuid.uuid4().hex[:8]}"
    # The dashboard's heartbeat: one row per worker process (prefork children share the
    # node's hostname), renewed while the task runs.
    node = f"{self.request.hostname}:{os.getpid()}"
    with Heartbeat(app, WorkerKind.CELERY) as heartbeat:
        heartbeat.working(node, None)
        try:
            taken = take(host, run_id, worker,
                         on_claim=lambda claimed: heartbeat.working(node, claimed))
        finally:
            heartbeat.working(node, None)
    if taken.run_id is None:
        if taken.result is TakeResult.WAIT_GPU:  # every GPU busy here, or none: ask the gpu queue
            raise self.retry(countdown=GPU_WAIT_SECONDS, queue=GPU_QUEUE)
        if taken.leased_until is not None:  # maybe a dead worker: ask again after its lease
            wait = max(1.0, (taken.leased_until - utcnow()).total_seconds() + 1)
            raise self.retry(countdown=wait)
        return f"skipped ({taken.result})"
    return str(taken.result)


@celery_app.task(bind=True, name=SIMILARITY_TASK, max_retries=20)
def compare(self: Task, run_id: int) -> str:
    """Take similarity run ``run_id`` (``service.queue.similarity``): ``done``, ``failed``, or
    ``skipped (<state>)`` when it was not ours to take."""
    app = flask_app()
    worker = f"celery:{self.request.hostname}:{self.request.id}:{uuid.uuid4().hex[:8]}"
    node = f"{self.request.hostname}:{os.getpid()}"
    with Heartbeat(app, WorkerKind.CELERY) as heartbeat:
        heartbeat.working(node, None)
        taken = take_similarity(app, run_id, worker)
    if taken.run_id is None:
        if taken.leased_until is not None:  # maybe a dead worker: ask again after its lease
            wait = max(1.0, (taken.leased_until - utcnow()).total_seconds() + 1)
            raise self.retry(countdown=wait)
        return f"skipped ({taken.result})"
    return str(taken.result)
