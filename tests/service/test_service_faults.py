"""Faults, each injected, each shown to lose nothing: the upload store full, the web process
killed (-9) while an upload is in flight or just after it was stored, and a burst of uploads
from many clients at once. (A worker killed mid-run: ``test_service_workers.py``.) The grader
is replaced by a stub where the point is the queue and the database, not the sandbox."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import http.client
import json
import os
import socket
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from grader import Outcome
from grader.report import GradeReport
from service.domain.roster import import_roster
from service.models import GradingRun, IdempotencyKey, Submission
from service.queue import grading
from service.queue.embedded import EmbeddedWorkers
from service.queue.janitor import sweep
from service.states import RunState
from tests.servers import ThrowawayPostgres, ThrowawayRedis, free_port
from tests.service.service_support import (
    EXERCISE,
    VENV_BIN,
    Processes,
    count,
    in_session,
    run_rows,
    service_env,
    tiny_notebook,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def multipart(data: bytes, exercise: str = EXERCISE) -> tuple[bytes, str]:
    """The body and content type of ``POST /api/submissions``, built by hand so that a test
    can send part of it."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"exercise\"\r\n\r\n"
            f"{exercise}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"notebook\"; "
            f"filename=\"student.ipynb\"\r\nContent-Type: application/json\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_upload(port: int, token: str, data: bytes, key: str | None = None
                ) -> tuple[int, dict[str, str], dict[str, Any]]:
    body, content_type = multipart(data)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/api/submissions", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


# --- a full upload store ------------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs (root only), unmounted afterwards."""
    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fsync_on_a_full_disk(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("fault", ["enospc_at_the_seam", "tmpfs_full"])
def test_a_full_upload_store_refuses_the_upload_and_records_nothing(
        make_app, tokens, monkeypatch, request, fault):
    if fault == "tmpfs_full":
        upload_dir = request.getfixturevalue("small_tmpfs")
        notebook = tiny_notebook("x" * 200_000)  # larger than the whole tmpfs
    else:  # the bytes written to the temporary file, then the disk is full at fsync
        upload_dir = Path(request.getfixturevalue("tmp_path")) / "uploads"
        notebook = tiny_notebook("full")
        monkeypatch.setattr("service.blobs.folder.os.fsync", _fsync_on_a_full_disk)
    app = make_app(UPLOAD_DIR=str(upload_dir))
    client = app.test_client()
    key = "retry-after-full-disk"

    def send():
        from tests.service.service_support import bearer, upload
        return client.post("/api/submissions", data=upload(notebook),
                           headers={**bearer(tokens["alice"]), "Idempotency-Key": key},
                           content_type="multipart/form-data")

    refused = send()

    assert refused.status_code == 507, refused.get_data(as_text=True)
    body = refused.get_json()
    assert body["error"] == "storage_full"
    assert body["message"] and body["message_ja"] and body["message"] != body["message_ja"]
    assert files_under(upload_dir) == []  # no half-written file, no temporary file
    assert (count(app, Submission), count(app, GradingRun), count(app, IdempotencyKey)) == (0,) * 3

    # Once there is room again, the same request (same key) is accepted: the key was not spent.
    if fault == "tmpfs_full":
        subprocess.run(["mount", "-o", "remount,size=4m", str(upload_dir)], check=True)
    else:
        monkeypatch.undo()
    accepted = send()
    assert accepted.status_code == 202, accepted.get_data(as_text=True)
    assert (count(app, Submission), count(app, GradingRun)) == (1, 1)
    sha = hashlib.sha256(notebook).hexdigest()
    assert files_under(upload_dir) == [upload_dir / sha[:2] / sha]


# --- the web process killed mid-upload ----------------------------------------------------

class Service:
    """``python -m service`` on the test's database and upload directory, without grading
    workers (the runs stay queued: what matters here is what was stored)."""

    def __init__(self, app: Flask, processes: Processes):
        self.app, self.processes, self.port = app, processes, free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = service_env(self.app, PORT=str(self.port), WORKERS="0", DUPLICATE_WINDOW="0",
                          RATE_LIMIT="100/600")
        self.proc = self.processes.start(f"service-{self.starts}",
                                         [str(VENV_BIN / "python"), "-m", "service"], env)

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                assert self.proc is not None and self.proc.poll() is None, \
                    self.processes.logs()
                return False

        wait_for(answers, timeout=60, what="the service to listen",
                 describe=self.processes.logs)

    def kill(self) -> None:
        assert self.proc is not None
        self.processes.kill_group(self.proc)
        self.proc.wait(timeout=10)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("moment", ["after_storing", "mid_body"])
def test_the_web_process_killed_mid_upload_then_a_retry_makes_one_submission(
        make_app, tokens, processes, moment):
    """The client sends with an ``Idempotency-Key``, the service is killed before the client
    read an answer (after the submission was committed, or while the body was half sent), the
    service comes back and the client retries with the same key: one submission, one run, and
    the retry's answer names it. The duplicate window is 0 so only the key can protect."""
    app = make_app(DUPLICATE_WINDOW=0)
    service = Service(app, processes)
    service.start()
    notebook = tiny_notebook("killed mid-upload")
    key = str(uuid.uuid4())
    body, content_type = multipart(notebook)
    head = (f"POST /api/submissions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {tokens['alice']}\r\nIdempotency-Key: {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=30)
    try:
        if moment == "after_storing":
            sock.sendall(head + body)  # the answer is never read
            wait_for(lambda: count(app, Submission) == 1, timeout=30,
                     what="the upload to be committed", describe=processes.logs)
        else:
            sock.sendall(head + body[: len(body) // 2])
        service.kill()
    finally:
        sock.close()
    stored = count(app, Submission)
    assert stored == (1 if moment == "after_storing" else 0)

    service.start()
    status, headers, answer = post_upload(service.port, tokens["alice"], notebook, key=key)
    again = post_upload(service.port, tokens["alice"], notebook, key=key)

    assert status == 202, answer
    assert again[0] == 202 and again[2]["id"] == answer["id"], again
    assert headers.get("Idempotent-Replayed") == ("true" if stored else None)
    assert count(app, Submission) == 1 and count(app, IdempotencyKey) == 1
    (run,) = run_rows(app)
    assert run["state"] in (RunState.QUEUED, RunState.GRADED), run
    ids = in_session(app, lambda s: s.scalars(select(Submission.id)).all())
    assert ids == [answer["id"]]


# --- a burst of uploads -------------------------------------------------------------------

#: Uploads in the burst and clients sending them (one student each).
BURST_UPLOADS, BURST_CLIENTS = 1000, 200


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_burst_of_uploads_is_stored_once_and_graded_once(make_app, processes, monkeypatch):
    """``BURST_CLIENTS`` threads send ``BURST_UPLOADS`` distinct notebooks to the real service
    (a separate process, no worker); four embedded workers of this process grade them with a
    stub grader that counts its calls. Every upload is acknowledged, stored once, and graded
    exactly once."""
    app = make_app(DUPLICATE_WINDOW=0, RATE_LIMIT_COUNT=1000)
    with app.app_context():
        roster = "student_id,name,email\n" + "".join(
            f"s{k:03d},S{k},\n" for k in range(BURST_CLIENTS))
        issued, _ = import_roster(roster)
    tokens = [row.token for row in issued]
    service = Service(app, processes)
    service.start()

    graded: Counter[str] = Counter()
    lock = threading.Lock()

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        with lock:
            graded[hashlib.sha256(data).hexdigest()] += 1
        return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score)

    monkeypatch.setattr(grading, "grade_notebook", grade)
    workers = EmbeddedWorkers(app, 4, poll_seconds=0.2)
    app.extensions["grader_workers"] = workers  # stopped by make_app's teardown
    workers.start()

    def client(k: int) -> list[tuple[int, Any]]:
        answers = []
        for n in range(k, BURST_UPLOADS, BURST_CLIENTS):
            status, _, answer = post_upload(service.port, tokens[k], tiny_notebook(f"burst {n}"))
            answers.append((status, answer.get("id")))
        return answers

    with ThreadPoolExecutor(BURST_CLIENTS) as pool:
        answers = [a for batch in pool.map(client, range(BURST_CLIENTS)) for a in batch]

    assert Counter(status for status, _ in answers) == {202: BURST_UPLOADS}
    assert len({sid for _, sid in answers}) == BURST_UPLOADS

    def all_finished() -> bool:
        return in_session(app, lambda s: s.execute(select(func.count(GradingRun.id)).where(
            GradingRun.state.in_([RunState.QUEUED, RunState.RUNNING]))).scalar_one()) == 0

    wait_for(all_finished, timeout=180, interval=1, what="every run to be graded",
             describe=lambda: str(Counter(r["state"] for r in run_rows(app))))
    runs = run_rows(app)
    assert count(app, Submission) == BURST_UPLOADS and len(runs) == BURST_UPLOADS
    assert Counter((r["state"], r["attempts"]) for r in runs) == {
        (RunState.GRADED, 1): BURST_UPLOADS}
    assert len(graded) == BURST_UPLOADS and set(graded.values()) == {1}  # none graded twice


# --- PostgreSQL restarted while a run is graded -------------------------------------------

@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A cluster of this test's own, so that it can be stopped: the session's is left alone."""
    with ThrowawayPostgres() as server:
        yield server


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # unused: ours is below
@pytest.mark.parametrize("down", ["while_grading", "when_storing"])
def test_postgresql_restarted_during_grading_the_run_ends_graded(
        make_app, tokens, throwaway_postgres, monkeypatch, down):
    """A worker grades (a stub that waits for the test) while the database is stopped and
    started again. Down while grading: the lease keeper's renewals fail and recover, the result
    is stored at the first attempt. Down at the moment of storing: the store fails, the worker
    lives on, the run is requeued once its lease runs out and graded at the second attempt.
    Either way: one submission, one run, graded."""
    pg = throwaway_postgres
    app = make_app(SQLALCHEMY_DATABASE_URI=pg.url, LEASE_SECONDS=3)
    with app.app_context():
        issued, _ = import_roster("student_id,name,email\ncarol,Carol,\n")
    grading_started, release = threading.Event(), threading.Event()
    store_failed = threading.Event()
    calls: list[int] = []

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        calls.append(1)
        if len(calls) == 1:
            grading_started.set()
            assert release.wait(120)
        return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score)

    store = grading._store_report

    def watched_store(*args: Any, **kw: Any) -> str:
        try:
            return store(*args, **kw)
        except Exception:
            store_failed.set()
            raise

    monkeypatch.setattr(grading, "grade_notebook", grade)
    monkeypatch.setattr(grading, "_store_report", watched_store)
    workers = EmbeddedWorkers(app, 1, poll_seconds=0.2)
    app.extensions["grader_workers"] = workers
    workers.start()
    from tests.service.service_support import bearer, upload
    answer = app.test_client().post("/api/submissions", data=upload(tiny_notebook("pg")),
                                    headers=bearer(issued[0].token),
                                    content_type="multipart/form-data")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert grading_started.wait(60), "the worker never started grading"

    pg.stop()
    if down == "while_grading":
        pg.start()
        release.set()
    else:
        release.set()
        assert store_failed.wait(60), "the store did not fail with the database down"
        pg.start()

    def finished() -> dict | None:
        try:
            (run,) = run_rows(app)
        except Exception:
            return None
        return run if run["state"] in (RunState.GRADED, RunState.FAILED) else None

    run = wait_for(finished, timeout=120, what="the run to finish after the restart")
    assert (run["state"], run["outcome"]) == (RunState.GRADED, Outcome.GRADED), run
    assert run["attempts"] == (1 if down == "while_grading" else 2), run
    assert len(calls) == run["attempts"]
    assert count(app, Submission) == 1


# --- Redis restarted under Celery ---------------------------------------------------------

@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A ``redis-server`` of this test's own (no persistence), so that it can be killed."""
    with ThrowawayRedis() as server:
        yield server


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_redis_restarted_under_celery_no_run_is_lost(make_app, tokens, throwaway_redis,
                                                      processes):
    """Runs are sent to a real Celery worker (its grader a stub), Redis is killed (its messages gone: no persistence),
    more runs are submitted while it is down (accepted, queued, not sent), Redis comes back
    empty. The janitor's sweep sends again what sits queued: every run ends graded, once."""
    broker = throwaway_redis
    app = make_app(QUEUE="celery", CELERY_BROKER_URL=broker.url, LEASE_SECONDS=6)
    env = service_env(app)
    processes.start("celery", [str(VENV_BIN / "celery"), "-A", "tests.service.stub_celery_worker",
                               "worker", "-Q", "cpu", "--pool", "prefork", "--concurrency", "1",
                               "-n", f"grader-faults-{os.getpid()}@%h", "--without-heartbeat",
                               "--without-gossip", "--without-mingle", "-l", "info"], env)
    from tests.service.service_support import bearer, upload

    def submit(marker: str) -> int:
        answer = app.test_client().post(
            "/api/submissions", data=upload(tiny_notebook(marker)),
            headers=bearer(tokens["alice"]), content_type="multipart/form-data")
        assert answer.status_code == 202, answer.get_data(as_text=True)
        return answer.get_json()["id"]

    before = [submit(f"before {k}") for k in range(3)]
    broker.kill()
    during = [submit(f"during {k}") for k in range(2)]  # the broker is down: queued, unsent
    assert all(r["dispatched_at"] is None for r in run_rows(app)[3:])
    broker.start()

    def all_graded() -> bool:
        with app.app_context():
            sweep(app, resend_after=dt.timedelta(seconds=5))  # what the janitor does
        return all(r["state"] in (RunState.GRADED, RunState.FAILED) for r in run_rows(app))

    wait_for(all_graded, timeout=150, interval=2, what="every run to be graded",
             describe=lambda: f"{run_rows(app)}\n{processes.logs()}")
    runs = run_rows(app)
    assert len(runs) == len(before + during) == count(app, Submission)
    assert {(r["state"], r["outcome"]) for r in runs} == {
        (RunState.GRADED, Outcome.GRADED)}, runs
    assert all(r["attempts"] >= 1 for r in runs)
