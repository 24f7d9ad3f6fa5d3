"""The service's warm pool (``WARM_POOL``, owned by service/queue/host.py) with the real sandbox:
a worker grades in a kit warmed before the upload, the pool refills, and stopping the workers
leaves no kit behind."""

from __future__ import annotations

import re
import signal
import time

import pytest

from service.models import GradingRun
from tests.courses import course_config
from tests.servers import free_port
from tests.service.service_support import (
    VENV_BIN,
    in_session,
    only_run,
    service_env,
    wait_for,
)
from tests.service.test_service_embedded import start_workers


def warm_starts(app) -> float:
    """``grader_kit_starts_total{start="warm"}`` as ``/metrics`` says it (0 before any)."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    found = re.search(r'^grader_kit_starts_total\{start="warm"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.sandbox
@pytest.mark.timeout(420)
def test_a_worker_grades_in_a_warm_kit_and_leaves_none_behind(make_app, submit,
                                                             short_notebook, tmp_path):
    # a course of one exercise: one slot, one kit
    app = make_app(WARM_POOL=1, RUNS_PER_HOST=1,
                   GRADER=course_config(tmp_path / "course", "chap06_cnn"))
    workers = start_workers(app)
    pool = workers.host.pool
    assert pool is not None and pool.wait_ready(timeout=240), pool and pool.stats()
    (ready,) = pool.idle_kits()
    warm_before = warm_starts(app)
    submission_id = submit(short_notebook, via=app).get_json()["id"]

    def finished() -> dict | None:
        run = only_run(app, submission_id)
        return run if run["state"] not in ("queued", "running") else None

    run = wait_for(finished, timeout=180, what="the submission to be graded")
    assert run["state"] == "graded" and run["score"] == 36, run
    timings = in_session(app, lambda s: s.get(GradingRun, run["id"]).report["timings"])
    assert timings["kit_age"] > 0 and timings["wait"] > 0, timings  # graded in the warm kit
    assert ready.closed and pool.closers.wait() and not ready.rundir.exists()  # used once, destroyed
    assert pool.stats().taken == 1
    assert warm_starts(app) == warm_before + 1  # counted on /metrics
    assert pool.wait_ready(timeout=240)  # another one warmed for the next upload
    waiting = [kit.rundir for kit in pool.idle_kits()]
    assert waiting and ready.rundir not in waiting
    workers.stop()
    assert workers.host.pool is None
    assert not any(folder.exists() for folder in waiting)  # the workers' stop closed it


@pytest.mark.sandbox
@pytest.mark.timeout(300)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("command", ["python -m service", "flask worker"])
def test_sigterm_stops_the_workers_cleanly_and_closes_their_warm_kits(make_app, processes,
                                                                    tmp_path, command):
    """``python -m service`` or ``flask worker`` told to stop (SIGTERM: ``docker stop``,
    systemd) closes its warm kits on the way out: no run folder is left for a later sweep."""
    app = make_app()
    jobs = tmp_path / "jobs"
    env = service_env(app, PORT=str(free_port()), WARM_POOL="1", RUNS_PER_HOST="1",
                      GRADER_WORK_DIR=str(jobs))
    argv = ([str(VENV_BIN / "python"), "-m", "service"] if command == "python -m service"
            else [str(VENV_BIN / "flask"), "--app", "service", "worker"])
    proc = processes.start("service", argv, env)

    def kit_waiting() -> bool:
        assert proc.poll() is None, processes.logs()
        return jobs.is_dir() and any((d / "cleanroom").is_dir() for d in jobs.iterdir())

    wait_for(kit_waiting, timeout=120, what="a warm kit's run folder", describe=processes.logs)
    folders = list(jobs.iterdir())
    time.sleep(5)  # its sandboxes up and warming
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, processes.logs()
    assert not any(folder.exists() for folder in folders), processes.logs()
    assert list(jobs.iterdir()) == []
