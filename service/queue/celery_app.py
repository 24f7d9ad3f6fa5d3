"""The Celery application: the broker connection and its settings, nothing else.

Both sides import it: ``service.queue.dispatch`` sends a message naming a run (by the task's
name, :data:`GRADE_TASK`, so the web side never imports the task or the app factory), and
``service.queue.celery_worker`` holds the task that a ``celery -A service.queue.celery_worker
worker`` process runs. Delivery is at least once (``acks_late`` with ``reject_on_worker_lost``);
the database claim in ``service.queue.grading.take`` makes it graded once at a time.
"""

from __future__ import annotations

import os

from celery import Celery

#: Runs that ask for no GPU, or would take one if free (``none``, ``preferred``): every worker
#: consumes it (``-Q cpu`` without GPUs, ``-Q gpu,cpu`` with).
CPU_QUEUE = "cpu"
#: Runs that require a GPU: only workers of hosts with ``GPUS`` consume it.
GPU_QUEUE = "gpu"
#: The task's name on the wire (kept from the first release: queued messages still match).
GRADE_TASK = "service.grade_run"
#: A similarity run's task (``service.queue.similarity``), on the ``cpu`` queue.
SIMILARITY_TASK = "service.similarity_run"

celery_app = Celery("grader", set_as_current=False)
celery_app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=CPU_QUEUE,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 3600},
    task_ignore_result=True,
)
