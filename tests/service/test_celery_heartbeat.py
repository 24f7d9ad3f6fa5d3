"""A Celery worker process beats with its grading host's heartbeat (issue 22): opened once
with the host, named by the first task, renewed between tasks while the process is idle, and
its row forgotten when the host closes, as the embedded threads'. The tasks run in this process
(``apply``) on a host opened as a Celery child's is; the database is real (SQLite)."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
from flask import Flask
from sqlalchemy import select

from service.extensions import db
from service.models import Worker, utcnow
from service.queue import celery_worker as tasks
from service.queue.host import GradingHost
from service.states import WorkerKind


def _rows(app: Flask) -> list[tuple[str, str, dt.datetime]]:
    with app.app_context():
        try:
            return [(w.name, w.kind, w.last_seen)
                    for w in db.session.execute(select(Worker)).scalars()]
        finally:
            db.session.remove()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_celery_process_beats_between_its_tasks_and_leaves_when_it_stops(
        make_app, monkeypatch: pytest.MonkeyPatch):
    app = make_app()
    with GradingHost(app, spare_renderer=False, heartbeat=WorkerKind.CELERY,
                     heartbeat_seconds=0.1) as host:
        monkeypatch.setattr(tasks, "_child", tasks.CeleryChild(app, host))
        assert tasks.grade.apply(args=[424242]).get() == "skipped (missing)"
        assert tasks.grade.apply(args=[424243]).get() == "skipped (missing)"
        ((name, kind, seen),) = _rows(app)  # one row for the process, whatever the tasks
        assert kind == "celery" and name.endswith(f":{os.getpid()}")
        deadline = time.monotonic() + 10
        while _rows(app)[0][2] == seen:  # idle now: the host's heartbeat still renews it
            assert time.monotonic() < deadline, "not beaten after its last task"
            time.sleep(0.05)
        assert utcnow() - _rows(app)[0][2] < dt.timedelta(seconds=5)
    assert _rows(app) == []  # a clean stop is not a death to report
