"""Production web serving: ``gunicorn -c gunicorn.conf.py 'service:create_app()'``.

Several processes, so that a slow page (an instructor's dashboard) cannot stall uploads the way
one Python process did: each process has its own interpreter lock, and each serves a few
requests at once on threads (waiting on the database or the disk releases the lock).

No grading worker starts here: ``create_app`` never starts any, and neither does this file.
Grading runs in processes of its own, ``flask --app service worker --threads N`` (QUEUE=embedded,
the database is the queue) or ``celery -A service.queue.celery_worker worker`` (QUEUE=celery).
The master process runs the migrations once, then the queue's janitor (one per host, as
``python -m service`` does), before forking the web processes. docs/operations.md says more.

Settings from the environment: ``WEB_CONCURRENCY`` (processes, default 2 per core + 1),
``WEB_THREADS`` (threads per process, 4), ``BIND`` (``127.0.0.1:8000``),
``PROMETHEUS_MULTIPROC_DIR`` (the metrics of every process, see service/metrics.py; a folder
under ``var/`` by default, emptied at start).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Any

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", str(2 * multiprocessing.cpu_count() + 1)))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
#: A request may take this long (a large upload over a slow link) before its process is replaced.
timeout = 120
graceful_timeout = 30
keepalive = 5
#: Many clients at once wait in the listen queue rather than being refused.
backlog = 2048
#: Each process imports the app itself: nothing (database pool, threads) is shared over fork.
preload_app = False
accesslog = "-"

_metrics = Path(os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(__file__).resolve().parent / "var" / "prometheus")))


def on_starting(server: Any) -> None:
    """Before any process: empty the metrics folder (old processes' files would count again),
    migrate the database, start the janitor in the master."""
    shutil.rmtree(_metrics, ignore_errors=True)
    _metrics.mkdir(parents=True, exist_ok=True)
    from flask_migrate import upgrade

    from service import create_app
    from service.logs import configure
    from service.queue.janitor import Janitor

    configure()
    app = create_app()
    with app.app_context():
        upgrade()
    server.janitor = Janitor(app)
    server.janitor.start()


def post_worker_init(worker: Any) -> None:
    """A web process has loaded the app: freeze its start-up heap (``service.heap``)."""
    from service.heap import settle

    settle()


def on_exit(server: Any) -> None:
    janitor = getattr(server, "janitor", None)
    if janitor is not None:
        janitor.stop()


def child_exit(server: Any, worker: Any) -> None:
    """A web process ended: its live gauges go (its counters stay summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
