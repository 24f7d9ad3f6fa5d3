"""Workers as separate processes, killed with SIGKILL mid-grading: ``flask --app service worker``
on the database queue, and a Celery worker on Redis. A run survives its worker and is graded
once. Every process started here is stopped by the ``processes`` fixture."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis

from service.models import ItemScore
from tests.service.service_support import (
    VENV_BIN,
    Processes,
    child_pids,
    count,
    item_scores,
    only_run,
    service_env,
    wait_for,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(240)]


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in child_pids(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until_grading(app, submission_id: int, processes: Processes) -> dict:
    """The run once a worker claimed it and the notebook started running in the sandbox."""

    def grading() -> dict | None:
        run = only_run(app, submission_id)
        assert run["state"] in ("queued", "running"), (run, processes.logs())
        return run if run["state"] == "running" and run["progress"] else None

    return wait_for(grading, timeout=90, what="a worker to be grading",
                    describe=processes.logs)


def wait_until_finished(app, submission_id: int, processes: Processes) -> dict:
    def finished() -> dict | None:
        run = only_run(app, submission_id)
        return run if run["state"] in ("graded", "failed") else None

    return wait_for(finished, timeout=150, what="the run to finish", interval=0.5,
                    describe=lambda: f"{only_run(app, submission_id)}\n{processes.logs()}")


def assert_graded_once(app, run: dict, attempts: int) -> None:
    assert run["state"] == "graded" and run["outcome"] == "graded", run
    assert (run["score"], run["max_score"], run["attempts"]) == (36, 100, attempts), run
    items = item_scores(app, run["id"])
    assert [i["position"] for i in items] == list(range(11))
    assert count(app, ItemScore) == 11  # one set of item scores: graded once


def kill_and_check_nothing_is_left(pid_of_group: int, processes: Processes,
                                   proc=None) -> None:
    """SIGKILL a worker (its whole process group, or one process) and check that it and
    everything it started, the sandbox included, are gone."""
    tree = descendants(pid_of_group) | {pid_of_group}
    if proc is not None:
        processes.kill_group(proc)
        proc.wait(timeout=10)
    else:
        os.kill(pid_of_group, signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in tree), timeout=10,
             what="the killed worker's processes (sandbox included) to be gone",
             describe=lambda: str([p for p in tree if alive(p)]))


# --- the database queue -------------------------------------------------------------------

def test_a_worker_killed_mid_grading_is_replaced_and_the_run_graded_once(
        make_app, submit, slow_notebook, processes):
    app = make_app(LEASE_SECONDS=6)
    argv = [str(VENV_BIN / "flask"), "--app", "service", "worker"]
    submission_id = submit(slow_notebook, via=app).get_json()["id"]

    first = processes.start("worker-1", argv, service_env(app))
    running = wait_until_grading(app, submission_id, processes)
    kill_and_check_nothing_is_left(first.pid, processes, proc=first)

    assert first.returncode == -signal.SIGKILL
    orphan = only_run(app, submission_id)
    assert (orphan["state"], orphan["worker"], orphan["attempts"]) == (
        "running", running["worker"], 1)

    processes.start("worker-2", argv, service_env(app))
    run = wait_until_finished(app, submission_id, processes)

    assert_graded_once(app, run, attempts=2)
    assert run["worker"] != running["worker"]


# --- Celery and Redis ---------------------------------------------------------------------

@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_celery_worker_grades_a_submission(make_app, submit, short_notebook, redis_broker,
                                             celery_worker, processes):
    app = make_app(QUEUE="celery", CELERY_BROKER_URL=redis_broker, LEASE_SECONDS=6)

    submission_id = submit(short_notebook, via=app).get_json()["id"]
    sent = only_run(app, submission_id)
    assert sent["state"] == "queued" and sent["task_id"] and sent["dispatched_at"], sent
    assert redis.Redis.from_url(redis_broker).llen("cpu") == 1  # on this test's broker (no GPU asked)
    celery_worker(app)
    run = wait_until_finished(app, submission_id, processes)

    assert_graded_once(app, run, attempts=1)
    assert run["task_id"] == sent["task_id"]
    assert run["worker"].startswith("celery:") and sent["task_id"] in run["worker"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_celery_pool_process_killed_mid_task_is_replaced(make_app, submit, slow_notebook,
                                                           redis_broker, celery_worker,
                                                           processes):
    """acks_late + reject_on_worker_lost put the message back; the new delivery waits for the
    dead process's lease to run out, claims the run and grades it (attempt 2)."""
    app = make_app(QUEUE="celery", CELERY_BROKER_URL=redis_broker, LEASE_SECONDS=6)
    worker = celery_worker(app)

    submission_id = submit(slow_notebook, via=app).get_json()["id"]
    running = wait_until_grading(app, submission_id, processes)
    (pool_process,) = child_pids(worker.pid)
    kill_and_check_nothing_is_left(pool_process, processes)
    run = wait_until_finished(app, submission_id, processes)

    assert_graded_once(app, run, attempts=2)
    assert run["task_id"] == running["task_id"]
    assert worker.poll() is None  # the worker itself lived on, with a new pool process
    log = processes.log("celery-1")
    assert "WorkerLostError" in log or "SIGKILL" in log, log
