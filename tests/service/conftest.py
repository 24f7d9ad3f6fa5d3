"""Fixtures of the service tests: every test runs against a fresh SQLite file *and* a fresh
PostgreSQL database (the schema made by the real migrations), with students holding real
tokens, and, where a test needs them, worker processes that are always stopped afterwards.

PostgreSQL is the session's server of ``postgres_admin_url`` (``GRADER_TEST_POSTGRES``, or a
throwaway cluster: ``tests/conftest.py``); each test gets its own database
``grader_test_<pid>_<n>``, dropped after it. Redis for the Celery tests is ``redis_url``
(``GRADER_TEST_REDIS``, or a throwaway ``redis-server``), flushed before and after.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from flask import Flask
from flask_migrate import upgrade

from service import create_app
from service.domain.roster import import_roster
from service.extensions import db
from tests.migrated import apps_only, create_postgres, filler, forget
from tests.servers import sqlalchemy_url
from tests.service.compiled_templates import CompiledTemplates
from tests.service.service_support import (
    CELERY_APP,
    TEST_PASSWORD_HASH,
    VENV_BIN,
    Processes,
    bearer,
    service_env,
    upload,
)

_database_numbers = itertools.count()


# --- databases ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_admin(postgres_admin_url: str) -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(postgres_admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed for the service tests ({postgres_admin_url}): {exc}")
    prefix = f"grader_test_{os.getpid()}_"
    try:
        yield conn
    finally:  # whatever a crashed test left behind
        names = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                             (prefix + "%",)).fetchall()
        for (name,) in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database: a SQLite file, or a new PostgreSQL database.
    Tests limited to one kind parametrize ``database_url`` indirectly with that kind. A
    PostgreSQL database that only the test's apps use (``tests.migrated.apps_only``) is made a
    copy of the session's migrated one at once, which its first app would make it anyway."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'grader.db'}"
        return
    admin: psycopg.Connection = request.getfixturevalue("postgres_admin")
    name = f"grader_test_{os.getpid()}_{next(_database_numbers)}"
    url = sqlalchemy_url(request.getfixturevalue("postgres_admin_url"), name)
    template = request.getfixturevalue("migrated_postgres") if apps_only(request) else None
    create_postgres(admin, url, template)
    try:
        yield url
    finally:
        forget(url)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the app ------------------------------------------------------------------------------

AppFactory = Callable[..., Flask]


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Settings every app of a test starts from, over the factory's own: a module overrides
    this fixture to change its apps' defaults (the dashboard's tests turn CSRF off); a test
    passes its own to ``make_app``."""
    return {}


@pytest.fixture(scope="session")
def compiled_templates() -> CompiledTemplates:
    """The service's pages compiled once for every app of the process
    (``tests/service/compiled_templates.py``)."""
    return CompiledTemplates()


@pytest.fixture
def make_app(database_url: str, tmp_path: Path, app_config: dict[str, Any],
             request: pytest.FixtureRequest, compiled_templates: CompiledTemplates
             ) -> Iterator[AppFactory]:
    """``make_app(**config)``: the service on this test's database, schema migrated: the one
    app factory of the service's tests. Every
    app made shares the database and the upload directory (like the service and its workers).
    The first app on the test's database, still empty, finds it a copy of the session's
    migrated one (``tests/migrated.py``); on a database holding something (the test migrated
    it itself), or on another, the app runs the migrations. The apps of every test share
    their compiled templates (``compiled_templates``)."""
    made: list[Flask] = []
    fill = filler(request, database_url)

    def build(**overrides: Any) -> Flask:
        config = {
            "TESTING": True,
            "SECRET_KEY": "service-tests-secret-key",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "QUEUE": "embedded",
            "LEASE_SECONDS": 60,
            "MAX_ATTEMPTS": 3,
            "RATE_LIMIT_COUNT": 100,
            "RATE_LIMIT_WINDOW": 600,
            "DUPLICATE_WINDOW": 120,
            "PASSWORD_HASH_METHOD": TEST_PASSWORD_HASH,
            **app_config,
            **overrides,
        }
        copied = config["SQLALCHEMY_DATABASE_URI"] == database_url and fill()
        app = create_app(config)
        app.jinja_env.bytecode_cache = compiled_templates
        if not copied:
            with app.app_context():
                upgrade()
        made.append(app)
        return app

    yield build
    for app in made:
        workers = app.extensions.get("grader_workers")
        if workers is not None:
            workers.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def tokens(app: Flask) -> dict[str, str]:
    """Two students from a real roster import: student id -> personal access token."""
    with app.app_context():
        issued, _ = import_roster("student_id,name,email\n"
                                  "alice,Alice,alice@example.org\nbob,Bob,bob@example.org\n")
    return {row.student_id: row.token for row in issued}


@pytest.fixture
def submit(app: Flask, tokens: dict[str, str]) -> Callable[..., Any]:
    """``submit(data, student="alice", via=app, **form)``: POST /api/submissions through
    ``via`` (by default the ``app`` fixture), the response."""

    def post(data: bytes, student: str = "alice", via: Flask | None = None, **form: Any):
        return (via or app).test_client().post(
            "/api/submissions", data=upload(data, **form), headers=bearer(tokens[student]),
            content_type="multipart/form-data")

    return post


@pytest.fixture
def short_notebook(make_notebook) -> bytes:
    """The solution up to the pooling exercise: 36 of 100 points, graded in about 10 s."""
    return make_notebook(keep_until="pool3")


@pytest.fixture
def slow_notebook(make_notebook) -> bytes:
    """The short notebook with a cell that sleeps, so a test can act while it is graded."""
    return make_notebook(keep_until="pool3",
                         insert_after={"pool3": ["import time\ntime.sleep(6)"]})


# --- processes ----------------------------------------------------------------------------

@pytest.fixture
def processes(database_url: str, tmp_path: Path) -> Iterator[Processes]:
    """Depends on ``database_url`` so that processes stop before their database is dropped."""
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


# --- Celery and Redis ---------------------------------------------------------------------

@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[str]:
    """The session's Redis database, flushed before and after the test."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is needed for the Celery tests ({redis_url}): {exc}")
    client.flushdb()
    try:
        yield redis_url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def celery_worker(redis_broker: str, processes: Processes) -> Callable[..., subprocess.Popen]:
    """``celery_worker(app, celery_app=CELERY_APP, **env)``: a real Celery worker (prefork, one
    process) of ``celery_app`` for ``app``'s database and broker, ``env`` added to its
    environment. Requested after ``redis_broker``, so it stops before the flush."""
    started: list[subprocess.Popen] = []

    def start(app: Flask, celery_app: str = CELERY_APP, **env: str) -> subprocess.Popen:
        name = f"celery-{len(started) + 1}"
        argv = [str(VENV_BIN / "celery"), "-A", celery_app, "worker", "-Q", "cpu",
                "--pool", "prefork", "--concurrency", "1", "-l", "info", "-n",
                f"grader-test-{os.getpid()}-{name}@%h",
                "--without-heartbeat", "--without-gossip", "--without-mingle"]
        proc = processes.start(name, argv, service_env(app, QUEUE="celery", **env))
        started.append(proc)
        return proc

    return start
