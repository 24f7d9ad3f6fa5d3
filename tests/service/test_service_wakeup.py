"""No idle waits: a queued run reaches an idle worker at once, not at its next poll, and a run's
progress reaches the database as its cells run (``service.queue.wakeup``,
``service.queue.progress``). The workers here poll every 60 s, so a run taken within seconds
was taken because something woke the worker; the grader is a stub that answers at once."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from grader import Outcome, Progress
from grader.report import GradeReport
from service.extensions import sessions_of
from service.queue import claims, grading
from service.queue.embedded import EmbeddedWorkers
from service.queue.progress import ProgressWriter
from service.queue.wakeup import Doorbell
from tests.service.service_support import (
    VENV_BIN,
    in_session,
    only_run,
    service_env,
    tiny_notebook,
    wait_for,
)

#: The workers' poll: far longer than any bound below, so only a wake-up can meet those.
POLL_SECONDS = 60.0
#: How long a woken worker may take to claim a run on a loaded 2-core machine (it takes
#: milliseconds; the poll would take a minute).
WOKEN_WITHIN = 15.0


@pytest.fixture
def graded_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score)

    monkeypatch.setattr(grading, "grade_notebook", grade)


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """What each of this process's looks at the queue (``claims.claim_next``) found."""
    found: list[int | None] = []
    claim_next = claims.claim_next

    def counted(*args: Any, **kw: Any) -> int | None:
        run_id = claim_next(*args, **kw)
        found.append(run_id)
        return run_id

    monkeypatch.setattr(claims, "claim_next", counted)
    return found


def test_a_ring_between_the_look_and_the_wait_is_not_missed() -> None:
    bell = Doorbell()
    seen = bell.rings  # a worker notes the bell, then finds the queue empty...
    bell.ring()  # ...a run is committed and the bell rung before it waits
    started = time.monotonic()
    assert bell.wait(seen, timeout=POLL_SECONDS) is True
    assert time.monotonic() - started < 1
    assert bell.wait(bell.rings, timeout=0.05) is False


def test_an_idle_worker_thread_takes_a_new_run_at_once(app, submit, graded_at_once, looks):
    """Same process (``python -m service``): the upload rings the workers after its commit."""
    workers = EmbeddedWorkers(app, 1, poll_seconds=POLL_SECONDS)
    app.extensions["grader_workers"] = workers  # as python -m service does; stopped by make_app
    waits = _count_waits(workers.wake)
    workers.start()
    if workers.listener is not None:  # PostgreSQL: its LISTEN rings once more, at start
        wait_for(lambda: _listening(app), timeout=30, what="the workers to LISTEN")
    # Idle: it found the queue empty and waits for a ring after the last one (the LISTEN's ring
    # may come before or after its first look: one look or two, both right).
    wait_for(lambda: waits and waits[-1] == workers.wake.rings and len(waits) == len(looks),
             timeout=30, what="the worker to wait, idle, on the bell",
             describe=lambda: f"waits {waits}, rings {workers.wake.rings}, looks {looks}")
    assert set(looks) == {None}
    idle = len(looks)

    submission_id = submit(tiny_notebook("woken")).get_json()["id"]

    run = wait_for(lambda: (r := only_run(app, submission_id))["state"] == "graded" and r,
                   timeout=WOKEN_WITHIN, what="the idle worker to take the run",
                   describe=lambda: f"{only_run(app, submission_id)}, looks {looks}")
    assert run["attempts"] == 1 and run["worker"].startswith("embedded:")
    assert looks[idle] == run["id"]  # woken, and took it


def _count_waits(bell: Doorbell) -> list[int]:
    """The ring counts ``bell``'s waiters waited on, in order (an instance attribute over
    :meth:`Doorbell.wait`)."""
    seen_at_waits: list[int] = []
    wait = bell.wait

    def counted(seen: int, timeout: float) -> bool:
        seen_at_waits.append(seen)
        return wait(seen, timeout)

    bell.wait = counted  # type: ignore[method-assign]
    return seen_at_waits


def _listening(app) -> bool:
    url = app.config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND query = 'LISTEN grader_queue'"
                            ).fetchone() == (1,)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_process_is_woken_by_notify(app, submit, processes):
    """A ``flask worker`` process beside the web (PostgreSQL): the upload's transaction sends
    NOTIFY, the worker's listening connection hears it at the commit."""
    argv = [str(VENV_BIN / "python"), "-m", "tests.service.stub_worker", "--app", "service",
            "worker", "--poll-seconds", str(POLL_SECONDS)]
    processes.start("worker", argv, service_env(app))
    wait_for(lambda: _listening(app), timeout=60, what="the worker to LISTEN",
             describe=processes.logs)
    time.sleep(2)  # its first look (after LISTEN) done: only a notification wakes it now

    submission_id = submit(tiny_notebook("notified")).get_json()["id"]

    run = wait_for(lambda: (r := only_run(app, submission_id))["state"] == "graded" and r,
                   timeout=WOKEN_WITHIN, what="the idle worker process to take the run",
                   describe=lambda: f"{only_run(app, submission_id)}\n{processes.logs()}")
    assert run["attempts"] == 1 and run["worker"].startswith("embedded:")
    assert "woken by NOTIFY" in processes.log("worker")


def test_progress_is_stored_at_once_then_at_most_once_a_period(app, submit):
    """The first event is on the row at once; later ones wait for the period (here a minute,
    so the second cannot be seen before the writer ends), and the last is stored at the end."""
    submission_id = submit(tiny_notebook("progress")).get_json()["id"]
    run_id = only_run(app, submission_id)["id"]
    assert in_session(app, lambda s: claims.claim(s, run_id, "worker-A", 60)) is True

    with ProgressWriter(sessions_of(app), run_id, "worker-A", period=POLL_SECONDS) as progress:
        progress(Progress("cell", cell_index=0, position=0, count=3, elapsed=0.5))
        first = wait_for(lambda: only_run(app, submission_id)["progress"], timeout=WOKEN_WITHIN,
                         what="the first cell's progress on the row")
        progress(Progress("cell", cell_index=4, position=1, count=3, elapsed=1.0))
        time.sleep(0.5)
        assert only_run(app, submission_id)["progress"] == first
    assert first == {"cell": 1, "position": 1, "count": 3, "elapsed": 0.5, "text": None}
    assert only_run(app, submission_id)["progress"]["position"] == 2
