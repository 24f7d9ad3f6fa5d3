"""``make bench`` (queue wait): how long a queued run waits for an idle worker.

The figure is a run's ``started_at - queued_at``: from the upload's insert (committed a moment
later) to a worker's claim. The grader is a stub that answers at once (this measures the queue,
not the sandbox), the worker is idle when each upload comes, and uploads are spaced by a random
pause so that they fall anywhere in a polling worker's cycle. Carriers:

- ``in-process``: worker threads in the web process, as ``make run`` (``python -m service``)
  has them; the upload rings them after its commit;
- ``worker process``: ``flask --app service worker`` beside the web, as in production with
  ``QUEUE=embedded``: woken by the upload's ``NOTIFY`` on PostgreSQL; on SQLite it finds the
  run at its next poll (1 s), the figure shows that;
- ``celery``: a Celery worker on a throwaway ``redis-server`` (when installed), the message
  sent after the commit.

Each on a throwaway SQLite file and PostgreSQL database (``GRADER_BENCH_POSTGRES``, or a
cluster of its own, as ``benchmarks/serving.py``). Goal: under 100 ms at the median and p90.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

import nbformat
from flask import Flask
from flask_migrate import upgrade
from serving import postgres_database, sqlite_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import Outcome  # noqa: E402
from grader.report import GradeReport  # noqa: E402
from service import create_app  # noqa: E402
from service.domain.roster import import_roster  # noqa: E402
from service.extensions import db  # noqa: E402
from service.models import GradingRun  # noqa: E402
from service.queue import grading  # noqa: E402
from service.queue.embedded import EmbeddedWorkers  # noqa: E402

EXERCISE = "chap06_cnn"
GOAL = 0.100
#: ``flask --app service worker`` whose grader answers at once.
STUB_FLASK_WORKER = (
    "from grader import Outcome; from grader.report import GradeReport; "
    "from service.queue import grading; "
    "grading.grade_notebook = lambda data, exercise, *a, **k: "
    "GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score); "
    "from flask.cli import main; main()"
)


def graded_at_once(data: bytes, exercise: Any, config: Any, sandbox: Any,
                   **kw: Any) -> GradeReport:
    return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score)


def migrated_app(config: dict[str, Any]) -> Flask:
    app = create_app(config)
    with app.app_context(), redirect_stderr(io.StringIO()):  # alembic's log lines
        upgrade()
    return app


def service_config(url: str, folder: Path, **extra: Any) -> dict[str, Any]:
    return {"SECRET_KEY": "bench-secret-key", "SQLALCHEMY_DATABASE_URI": url,
            "UPLOAD_DIR": str(folder / "uploads"), "QUEUE": "embedded",
            "RATE_LIMIT_COUNT": 10_000, "RATE_LIMIT_WINDOW": 60, **extra}


def notebook(k: int) -> bytes:
    cell = nbformat.v4.new_code_cell(f"print({k})", id="bench")
    return nbformat.writes(nbformat.v4.new_notebook(cells=[cell])).encode()


def wait_claimed(app: Flask, submission_id: int, timeout: float = 30.0) -> float:
    """Seconds the submission's run sat queued, once it is graded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            run = db.session.query(GradingRun).filter_by(submission_id=submission_id).one()
            state, queued, started = run.state, run.queued_at, run.started_at
            db.session.remove()
        if state in ("graded", "failed") and started is not None:
            return (started - queued).total_seconds()
        time.sleep(0.01)
    raise RuntimeError(f"submission {submission_id} not graded within {timeout:.0f} s")


def measure(app: Flask, runs: int, max_gap: float) -> list[float]:
    """Queue waits of ``runs`` uploads after a warm-up one (not counted: the worker may still
    be starting), each made while the worker is idle, after a random pause."""
    with app.app_context():
        issued, _ = import_roster("student_id,name,email\nbench,Bench,bench@example.org\n")
    client, headers = app.test_client(), {"Authorization": f"Bearer {issued[0].token}"}
    waits = []
    for k in range(runs + 1):
        time.sleep(random.uniform(0.05, max_gap))
        form = {"exercise": EXERCISE, "notebook": (io.BytesIO(notebook(k)), "n.ipynb")}
        response = client.post("/api/submissions", headers=headers,
                               content_type="multipart/form-data", data=form)
        assert response.status_code == 202, response.get_data(as_text=True)
        wait = wait_claimed(app, response.get_json()["id"], timeout=60 if k == 0 else 30)
        if k:
            waits.append(wait)
    return waits


@contextmanager
def in_process(url: str, folder: Path) -> Iterator[Flask]:
    grading.grade_notebook = graded_at_once
    app = migrated_app(service_config(url, folder))
    workers = EmbeddedWorkers(app, 1)  # python -m service's default poll
    app.extensions["grader_workers"] = workers
    workers.start()
    try:
        yield app
    finally:
        workers.stop()
        with app.app_context():
            db.engine.dispose()


@contextmanager
def worker_process(argv: list[str], url: str, folder: Path, **extra: str) -> Iterator[Flask]:
    """The uploading app in this process (no worker in it, as under gunicorn), ``argv`` as a
    separate worker process on the same database."""
    config = service_config(url, folder, **extra)
    app = migrated_app(config)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url,
           "UPLOAD_DIR": config["UPLOAD_DIR"], "SECRET_KEY": config["SECRET_KEY"],
           **{k: str(v) for k, v in extra.items()}}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        yield app
    except Exception:
        log.seek(0)
        print(log.read().decode(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        with app.app_context():
            db.engine.dispose()


def flask_worker(url: str, folder: Path) -> AbstractContextManager[Flask]:
    return worker_process([sys.executable, "-c", STUB_FLASK_WORKER, "--app", "service",
                           "worker"], url, folder)


@contextmanager
def celery_worker(url: str, folder: Path) -> Iterator[Flask]:
    from tests.servers import ThrowawayRedis

    argv = [str(Path(sys.executable).parent / "celery"), "-A", "tests.service.stub_celery_worker",
            "worker", "-Q", "cpu", "--pool", "solo", "-l", "warning", "--without-heartbeat",
            "--without-gossip", "--without-mingle"]
    with ThrowawayRedis() as redis_server, worker_process(
            argv, url, folder, QUEUE="celery", CELERY_BROKER_URL=redis_server.url) as app:
        yield app


def report(name: str, waits: list[float]) -> None:
    waits = sorted(waits)
    median, p90 = statistics.median(waits), waits[int(0.9 * (len(waits) - 1))]
    verdict = "ok" if p90 < GOAL else f"over the {GOAL * 1000:.0f} ms goal"
    print(f"  {name:<34} median {median * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms   "
          f"max {waits[-1] * 1000:7.1f} ms   ({len(waits)} runs, {verdict})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="uploads measured per carrier")
    parser.add_argument("--max-gap", type=float, default=1.0,
                        help="longest random pause (s) before each upload")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    carriers: list[tuple[str, Callable[[str, Path], AbstractContextManager[Flask]]]] = [
        ("in-process", in_process), ("worker process", flask_worker)]
    if shutil.which("redis-server"):
        carriers.append(("celery", celery_worker))
    print("queue wait (a run's insert -> a worker's claim; the grader stubbed)")
    for kind in args.databases.split(","):
        for name, carrier in carriers:
            with ExitStack() as stack:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                database = (sqlite_database(folder) if kind == "sqlite"
                            else postgres_database())
                url = stack.enter_context(database)
                app = stack.enter_context(carrier(url, folder))
                report(f"{name}, {kind}", measure(app, args.runs, args.max_gap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
