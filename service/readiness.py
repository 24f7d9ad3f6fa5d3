"""What ``/readyz`` checks before a load balancer sends this process traffic.

``/healthz`` says the process answers; ready means it can do its work: the database answers, its
schema is at the migrations' head (a process started before ``flask db upgrade`` ran, or a newer
code against an older schema, would fail on the first query that needs a new column), and, with
``QUEUE=celery``, the broker answers (an upload would be stored but its message not sent until
the janitor re-sends it). Each check is short and time-bounded; a failure is named, never raised.
"""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import text

from service.extensions import db
from service.states import WorkerKind

#: Seconds the broker may take to answer.
BROKER_TIMEOUT = 2


def readiness(app: Flask) -> list[str]:
    """What is not ready, for people (empty: ready)."""
    problems: list[str] = []
    with app.app_context():
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                current = set(MigrationContext.configure(connection).get_current_heads())
        except Exception as exc:  # any driver error means the same: not reachable
            problems.append(f"database unreachable: {type(exc).__name__}")
        else:
            heads = set(_script_heads(app))
            if current != heads:
                problems.append(f"database schema at {sorted(current) or 'nothing'}, "
                                f"migrations at {sorted(heads)}: run flask db upgrade")
    if app.config["QUEUE"] == WorkerKind.CELERY:
        problem = _broker_problem(app.config["CELERY_BROKER_URL"])
        if problem:
            problems.append(problem)
    return problems


def _script_heads(app: Flask) -> tuple[str, ...]:
    config = app.extensions["migrate"].migrate.get_config()
    return tuple(ScriptDirectory.from_config(config).get_heads())


def _broker_problem(url: str) -> str | None:
    from celery import Celery

    probe = Celery(broker=url, set_as_current=False)
    probe.conf.broker_connection_timeout = BROKER_TIMEOUT
    try:
        with probe.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    except Exception as exc:  # the transport raises its own errors
        return f"queue broker unreachable: {type(exc).__name__}"
    return None
