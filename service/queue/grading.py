"""Grading one queued run, and the embedded worker threads that do it without a broker.

:func:`grade_run` is the whole job, whatever carries it (an embedded thread or a Celery task):
claim (done by the caller), renew the lease while the grader runs, then store the report, item
scores and executed notebook in one fenced transaction. It uses ``grader``'s public API only.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

from grader import GraderConfig, Progress, RunStatus, get_sandbox, grade_notebook
from service.domain.notebook_html import render_notebook_html
from service.extensions import db
from service.models import GradingRun, ItemScore, utcnow
from service.queue import claims as jobs
from service.queue import heartbeats
from service.storage import BlobStore

log = logging.getLogger(__name__)


def worker_name(prefix: str = "embedded") -> str:
    return f"{prefix}:{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    """Renews a run's lease in the background while it is graded."""

    def __init__(self, app: Flask, run_id: int, worker: str):
        self.app, self.run_id, self.worker = app, run_id, worker
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"lease-{run_id}")

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        seconds = self.app.config["LEASE_SECONDS"]
        while not self._stop.wait(max(1.0, seconds / 3)):
            with self.app.app_context():
                try:
                    if not jobs.renew(db.session, self.run_id, self.worker, seconds):
                        self.lost.set()
                        return
                except Exception:  # a database hiccup: try again next period
                    log.exception("lease renewal of run %s failed", self.run_id)
                    db.session.rollback()
                finally:
                    db.session.remove()


class ProgressWriter:
    """Keeps the run's live progress: every event updates the state in memory, and a background
    thread stores it on the run at most once a second, so the last state is never dropped."""

    def __init__(self, app: Flask, run_id: int, worker: str, period: float = 1.0):
        self.app, self.run_id, self.worker, self.period = app, run_id, worker, period
        self.state: dict[str, Any] = {}
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"progress-{run_id}")

    def __enter__(self) -> ProgressWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._dirty.is_set():
            self._store()

    def __call__(self, event: Progress) -> None:
        with self._lock:
            self.state["elapsed"] = round(event.elapsed, 1)
            if event.kind == "cell" and event.cell_index is not None:
                self.state.update(cell=event.cell_index + 1, text=None)
                if event.position is not None and event.count:
                    self.state.update(position=event.position + 1, count=event.count)
            elif event.kind == "output" and event.text:
                self.state["text"] = event.text
            elif event.kind == "kernel_ready":
                self.state["phase"] = "running"
        self._dirty.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            if self._dirty.is_set():
                self._dirty.clear()
                self._store()

    def _store(self) -> None:
        with self._lock:
            progress = dict(self.state)
        with self.app.app_context():
            try:
                run = db.session.get(GradingRun, self.run_id)
                if run is not None and run.worker == self.worker:
                    run.progress = progress
                    db.session.commit()
            except Exception:
                log.exception("progress of run %s not stored", self.run_id)
                db.session.rollback()
            finally:
                db.session.remove()


def grade_run(app: Flask, run_id: int, worker: str) -> str:
    """Grade a run this worker has claimed; returns the run's final status."""
    with app.app_context():
        run = db.session.get(GradingRun, run_id)
        if run is None:
            return "missing"
        submission = run.submission
        exercise_id, sha = submission.exercise, submission.notebook_sha256
        db.session.remove()
    try:
        data = BlobStore(app.config["UPLOAD_DIR"]).get(sha)
    except OSError as exc:  # another host's upload directory, a wiped disk: say so, go on
        log.error("run %s: submitted notebook %s not readable: %s", run_id, sha, exc)
        return _finish_failed(app, run_id, worker, "the submitted notebook is missing from "
                              f"the upload store ({type(exc).__name__}: {exc})")
    config: GraderConfig = app.config["GRADER"]
    try:
        exercise = config.exercise(exercise_id)
        with LeaseKeeper(app, run_id, worker) as lease, \
                ProgressWriter(app, run_id, worker) as progress:
            report = grade_notebook(data, exercise, config, get_sandbox(config.sandbox),
                                    on_progress=progress)
        if lease.lost.is_set():
            log.warning("run %s: lease lost while grading; result dropped", run_id)
            return "lost"
    except Exception as exc:  # the grader itself failed: record it, never lose the job
        log.exception("run %s failed", run_id)
        return _finish_failed(app, run_id, worker, f"{type(exc).__name__}: {exc}")
    if report.status is RunStatus.SANDBOX_ERROR:
        reason = report.reason.en if report.reason else "sandbox error"
        return _requeue_or_fail(app, run_id, worker, reason)
    return _store_report(app, run_id, worker, report)


@contextmanager
def _owned_run(app: Flask, run_id: int, worker: str) -> Iterator[GradingRun | None]:
    """The run, locked, if this worker still owns it (the fence of every result write), else
    ``None``; the caller's changes are committed on a clean exit."""
    with app.app_context():
        try:
            if not jobs.owned(db.session, run_id, worker):
                db.session.rollback()
                yield None
                return
            yield db.session.get(GradingRun, run_id)
            db.session.commit()
        finally:
            db.session.remove()


def _store_report(app: Flask, run_id: int, worker: str, report: Any) -> str:
    html_sha = None
    if report.executed_notebook:
        html = render_notebook_html(report.executed_notebook)
        html_sha = BlobStore(app.config["UPLOAD_DIR"]).put(html.encode("utf-8"))
    with _owned_run(app, run_id, worker) as run:
        if run is None:
            return "lost"
        payload = report.to_dict()
        run.status = "graded"
        run.run_status = str(report.status)
        run.reason = report.reason.en if report.reason else None
        run.score, run.max_score = report.score, report.max_score
        run.measured_accuracy = report.measured_accuracy
        run.claimed_accuracy = report.claimed_accuracy
        run.report = payload
        run.executed_html_sha256 = html_sha
        run.finished_at = utcnow()
        run.lease_expires_at = None
        for position, item in enumerate(payload["items"]):
            run.items.append(ItemScore(
                position=position, item_id=item["id"], score=item["score"],
                max_score=item["max_score"], status=item["status"],
                feedback_ja=item["feedback"]["ja"], feedback_en=item["feedback"]["en"],
                details=item["details"],
            ))
        return "graded"


def _finish_failed(app: Flask, run_id: int, worker: str, reason: str) -> str:
    with _owned_run(app, run_id, worker) as run:
        if run is None:
            return "lost"
        run.status, run.reason, run.finished_at = "failed", reason[:4000], utcnow()
        run.lease_expires_at = None
        return "failed"


def _requeue_or_fail(app: Flask, run_id: int, worker: str, reason: str) -> str:
    """A sandbox error may pass (a busy machine): retry, up to MAX_ATTEMPTS runs in all."""
    with _owned_run(app, run_id, worker) as run:
        if run is None:
            return "lost"
        if run.attempts >= app.config["MAX_ATTEMPTS"]:
            run.status, run.finished_at = "failed", utcnow()
            run.reason = f"{reason} (after {run.attempts} attempts)"
        else:
            run.status, run.worker, run.reason = "queued", None, reason
        run.lease_expires_at = None
        return run.status


class EmbeddedWorkers:
    """Worker threads inside the service process, polling the database queue. Each thread is a
    worker with its own name, kept alive on the dashboard by one :class:`Heartbeat`."""

    def __init__(self, app: Flask, count: int, poll_seconds: float = 1.0,
                 heartbeat_seconds: float = heartbeats.BEAT_SECONDS):
        self.app, self.count, self.poll_seconds = app, count, poll_seconds
        self.wake = threading.Event()
        self.heartbeat = heartbeats.Heartbeat(app, "embedded", heartbeat_seconds)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        names = [worker_name() for _ in range(self.count)]
        for name in names:
            self.heartbeat.working(name, None)
        self.heartbeat.start()
        with self.app.app_context():
            try:
                heartbeats.forget(db.session, older_than=heartbeats.FORGET_AFTER)
            finally:
                db.session.remove()
        for n, name in enumerate(names):
            thread = threading.Thread(target=self._loop, args=(name,),
                                      name=f"grader-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.heartbeat.stop(forget_workers=True)

    def _loop(self, name: str) -> None:
        try:
            self._poll(name)
        finally:
            self.heartbeat.discard(name)

    def _poll(self, name: str) -> None:
        while not self._stop.is_set():
            run_id = None
            with self.app.app_context():
                try:
                    jobs.requeue_expired(db.session, self.app.config["MAX_ATTEMPTS"])
                    run_id = jobs.claim_next(db.session, name, self.app.config["LEASE_SECONDS"])
                except Exception:
                    log.exception("claiming a job failed")
                    db.session.rollback()
                finally:
                    db.session.remove()
            if run_id is None:
                self.wake.wait(self.poll_seconds)
                self.wake.clear()
                continue
            self.heartbeat.working(name, run_id)
            try:
                grade_run(self.app, run_id, name)
            except Exception:
                # The database gone while storing, say: keep the thread alive; the run's
                # lease runs out and it is queued again.
                log.exception("grading run %s failed", run_id)
            finally:
                self.heartbeat.working(name, None)
