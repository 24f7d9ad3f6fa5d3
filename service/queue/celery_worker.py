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
``service.queue.celery_app``). The Flask app, the process's one grading host
(``service.queue.host``: CPU slots, warm pool, spare render child, GPU inventory, the process's
heartbeat) and its grade passback sender are made in the worker process (:class:`CeleryChild`,
at ``worker_process_init``, else at its first task), never at import, and closed when the
process stops; nothing in the app imports this module (it imports the app factory).

The dashboard's heartbeat is one row per worker process (prefork children share the node's
hostname): the host's heartbeat, opened once with the host, beats for the process from its first
task (which names it) until the process stops, busy or idle, as the embedded threads' does.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown
from flask import Flask

from service.models import utcnow
from service.queue.celery_app import GPU_QUEUE, GRADE_TASK, SIMILARITY_TASK, celery_app
from service.queue.grading import TakeResult, take
from service.queue.host import GradingHost
from service.queue.lti_sender import PassbackSender
from service.queue.similarity import take_similarity
from service.states import WorkerKind

__all__ = ["CeleryChild", "celery_app", "compare", "grade"]

log = logging.getLogger(__name__)

#: The worker process's app, grading host and sender, opened once: a Celery child has no
#: other place to keep them between its signals and its tasks.
_child: CeleryChild | None = None
#: Seconds before a run that found no free GPU is delivered again.
GPU_WAIT_SECONDS = 15


@dataclass
class CeleryChild:
    """What one Celery worker process holds: its Flask app (the similarity task takes it:
    ``service.queue.similarity``), its grading host, opened with its heartbeat, and its grade
    passback sender (``None``: none runs, as in a test that runs a task here)."""

    app: Flask
    host: GradingHost
    sender: PassbackSender | None = None

    @classmethod
    def open(cls) -> CeleryChild:
        """Make the app and open the host, then start the sender (it sends the scores this
        process grades, woken by the host when one is queued)."""
        from service import create_app

        app = create_app()
        sender = PassbackSender(app)
        host = GradingHost(app, heartbeat=WorkerKind.CELERY, passback_bell=sender.ring).open()
        return cls(app, host, sender.start())

    def close(self) -> None:
        """Stop the sender, then close the host (its warm kits, its spare render child, its
        heartbeat, the process's row forgotten): nothing left behind."""
        if self.sender is not None:
            self.sender.stop()
        self.host.close()


def celery_child() -> CeleryChild:
    """The worker process's app, host and sender, opened at the first call (a bad ``GPUS``
    setting fails it loudly, and the next call tries again)."""
    global _child
    if _child is None:
        _child = CeleryChild.open()
    return _child


def grading_host() -> GradingHost:
    """The worker process's grading host."""
    return celery_child().host


def flask_app() -> Flask:
    """The worker process's Flask app."""
    return celery_child().app


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """A prefork child opens its grading host (and so starts its warm pool, ``WARM_POOL``, and
    its heartbeat) before its first task; an app that cannot be made now fails the first task
    instead, saying why."""
    try:
        celery_child()
    except Exception:
        log.exception("the worker process could not warm up")


@worker_process_shutdown.connect
@worker_shutdown.connect
def _cool_down(**_: object) -> None:
    """Close what the process holds when it stops (nothing left behind)."""
    if _child is not None:
        _child.close()


def _node(task: Task) -> str:
    """The process's name on the dashboard: one row per worker process."""
    return f"{task.request.hostname}:{os.getpid()}"


@celery_app.task(bind=True, name=GRADE_TASK, max_retries=20)
def grade(self: Task, run_id: int) -> str:
    """Take run ``run_id``: its state when done, or ``skipped (<state>)`` when it was not ours
    to take (a duplicate delivery, a run already finished or gone)."""
    host = grading_host()
    # unique per delivery: two deliveries of one message must not share a lease
    worker = f"celery:{self.request.hostname}:{self.request.id}:{uuid.uuid4().hex[:8]}"
    node, heartbeat = _node(self), host.heartbeat
    if heartbeat is None:  # a host opened without one (a test's): nothing to show
        taken = take(host, run_id, worker)
    else:
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
    child = celery_child()
    worker = f"celery:{self.request.hostname}:{self.request.id}:{uuid.uuid4().hex[:8]}"
    if child.host.heartbeat is not None:
        child.host.heartbeat.working(_node(self), None)
    taken = take_similarity(child.app, run_id, worker)
    if taken.run_id is None:
        if taken.leased_until is not None:  # maybe a dead worker: ask again after its lease
            wait = max(1.0, (taken.leased_until - utcnow()).total_seconds() + 1)
            raise self.retry(countdown=wait)
        return f"skipped ({taken.result})"
    return str(taken.result)
