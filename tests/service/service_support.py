"""Helpers shared by the service tests: waiting for a condition, reading rows, building
notebooks and uploads. Fixtures live in ``conftest.py``; these are plain functions."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import nbformat
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grader.config import PROJECT_ROOT
from service.extensions import db
from service.models import GradingRun, ItemScore, Student, Submission

T = TypeVar("T")

EXERCISE = "chap06_cnn"
VENV_BIN = Path(sys.executable).parent
#: The Celery app of the real worker, and of the one whose grader is a stub answering at once.
CELERY_APP = "service.queue.celery_worker"
STUB_CELERY_APP = "tests.service.stub_celery_worker"
#: The tests' apps hash instructors' passwords with scrypt at 1/256 of werkzeug's cost (N=128
#: rather than 32768; the smallest N that OpenSSL computes within werkzeug's memory bound at
#: r=8): 0.2 ms a hash rather than 1.5 ms at N=1024 or a second at the default on a loaded
#: machine, and the service tests hash thousands of times (every log-in, every instructor made).
#: ``tests/service/test_dashboard.py`` checks that the service's own default is werkzeug's.
TEST_PASSWORD_HASH = "scrypt:128:8:1"


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.2,
             describe: Callable[[], str] | None = None) -> T:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds with
    ``what`` and, when given, ``describe()`` (logs of a worker, the run's row...)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


def in_session(app: Flask, work: Callable[[Session], T]) -> T:
    """Run ``work`` with the app's session in a fresh app context (the session is removed
    afterwards, so the next call reads the database again, not a cached identity map)."""
    with app.app_context():
        return work(db.session)


RUN_COLUMNS = ("id", "state", "reason", "attempts", "worker", "lease_expires_at", "task_id",
               "dispatched_at", "started_at", "finished_at", "progress", "outcome", "score",
               "max_score", "executed_html_sha256")


def run_rows(app: Flask, submission_id: int | None = None) -> list[dict[str, Any]]:
    """The grading runs (of one submission, or all) as plain dicts, oldest first."""

    def read(session: Session) -> list[dict[str, Any]]:
        query = select(GradingRun).order_by(GradingRun.id)
        if submission_id is not None:
            query = query.where(GradingRun.submission_id == submission_id)
        return [{c: getattr(r, c) for c in RUN_COLUMNS}
                for r in session.scalars(query)]

    return in_session(app, read)


def only_run(app: Flask, submission_id: int) -> dict[str, Any]:
    rows = run_rows(app, submission_id)
    assert len(rows) == 1, f"expected one run of submission {submission_id}, found {rows}"
    return rows[0]


def item_scores(app: Flask, run_id: int | None = None) -> list[dict[str, Any]]:
    def read(session: Session) -> list[dict[str, Any]]:
        query = select(ItemScore).order_by(ItemScore.run_id, ItemScore.position)
        if run_id is not None:
            query = query.where(ItemScore.run_id == run_id)
        return [{"run_id": i.run_id, "position": i.position, "item_id": i.item_id,
                 "score": i.score, "max_score": i.max_score, "status": i.status,
                 "feedback_en": i.feedback_en} for i in session.scalars(query)]

    return in_session(app, read)


def count(app: Flask, model: type) -> int:
    return in_session(app, lambda s: s.execute(select(func.count(model.id))).scalar_one())


def add_queued_runs(app: Flask, n: int) -> list[int]:
    """``n`` queued runs (one submission each) made directly in the database, oldest first."""

    def add(session: Session) -> list[int]:
        student = session.scalars(select(Student).where(Student.student_id == "queue")).first()
        if student is None:
            student = Student(student_id="queue", name="Queue", token_hash="0" * 64)
        runs = []
        for k in range(n):
            submission = Submission(student=student, exercise=EXERCISE, filename=f"{k}.ipynb",
                                    notebook_sha256=f"{k:064x}", size=1)
            runs.append(GradingRun(submission=submission, state="queued"))
        session.add_all(runs)
        session.commit()
        return [r.id for r in runs]

    return in_session(app, add)


def tiny_notebook(marker: object = 0) -> bytes:
    """A small valid notebook; different ``marker`` values give different bytes."""
    cell = nbformat.v4.new_code_cell(f"print({marker!r})", id="tiny")  # ids are random else
    nb = nbformat.v4.new_notebook(cells=[cell])
    return nbformat.writes(nb).encode()


def upload(data: bytes, exercise: str = EXERCISE, filename: str = "student.ipynb"
           ) -> dict[str, Any]:
    """The multipart form of ``POST /api/submissions``."""
    return {"exercise": exercise, "notebook": (io.BytesIO(data), filename)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the flask command line, in the test's app ------------------------------------------------

def cli(app: Flask, *args: str) -> Any:
    """``flask --app service ARGS`` run in ``app`` (Click's test runner: stdout and stderr apart)."""
    return app.test_cli_runner().invoke(args=list(args))


def cli_ok(app: Flask, *args: str) -> str:
    """What the command printed (stdout; the migrations log on stderr); it must have succeeded."""
    result = cli(app, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def cli_refused(app: Flask, *args: str) -> str:
    """The command's error (stderr); it must have failed with nothing on stdout."""
    result = cli(app, *args)
    assert result.exit_code != 0, result.output
    assert result.stdout == "", result.stdout
    return result.stderr


# --- processes ----------------------------------------------------------------------------

class Processes:
    """Subprocesses in their own process groups, output in log files, all stopped at the end."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # the child keeps its own copy
        try:
            proc = subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.started.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name} (exit {proc.poll()}) ---\n{self.log(name)}"
                         for name, proc in self.started)

    @staticmethod
    def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for _, proc in self.started:
            self.kill_group(proc, signal.SIGTERM)
        for _, proc in self.started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.kill_group(proc, signal.SIGKILL)  # the group, grandchildren included
            proc.wait(timeout=10)


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (Linux ``/proc``)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def service_env(app: Flask, **extra: str) -> dict[str, str]:
    """Environment for a service process (worker) sharing ``app``'s database and uploads."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        UPLOAD_DIR=app.config["UPLOAD_DIR"],
        SECRET_KEY="service-tests-secret-key",
        LEASE_SECONDS=str(app.config["LEASE_SECONDS"]),
        MAX_ATTEMPTS=str(app.config["MAX_ATTEMPTS"]),
        QUEUE=app.config["QUEUE"],
        CELERY_BROKER_URL=app.config["CELERY_BROKER_URL"],
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def take(app: Flask, run_id: int | None, worker: str, **kw: Any) -> Any:
    """``grading.take`` on a grading host opened for this one call (no spare render child: a
    cold one per render, as a worker without one)."""
    from service.queue import grading
    from service.queue.host import GradingHost

    with GradingHost(app, spare_renderer=False) as host:
        return grading.take(host, run_id, worker, **kw)


def grade_run(app: Flask, run_id: int, worker: str, device: str | None = None) -> str:
    """``grading.grade_run`` on a grading host opened for this one call."""
    from service.queue import grading
    from service.queue.host import GradingHost

    with GradingHost(app, spare_renderer=False) as host:
        return grading.grade_run(host, run_id, worker, device)
