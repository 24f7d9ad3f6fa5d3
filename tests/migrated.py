"""Databases with the schema of the real migrations, made once per test session and copied.

The service's tests give every test a database of its own holding what ``flask db upgrade``
makes, on SQLite and on PostgreSQL. Running the migrations costs a second or two a database, so
a session (each pytest-xdist process) runs them once per kind, into a template: a SQLite file,
a PostgreSQL database. A test's database, made empty by its ``database_url`` fixture, becomes a
copy of the template when its first app is built (:func:`fill_sqlite`: the file copied;
:func:`fill_postgres`: ``CREATE DATABASE ... TEMPLATE``), alembic's version table included, so a
test may still downgrade and upgrade it. A database that already holds something (a migration
test that upgraded it to an older revision itself) is left alone, and the app factory runs the
migrations on it as before.
"""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url


def migrate(url: str, upload_dir: Path) -> None:
    """Run the real migrations (``flask db upgrade`` to head) on the database of ``url``, then
    close every connection the app opened."""
    from flask_migrate import upgrade

    from service import create_app
    from service.extensions import db

    app = create_app({"TESTING": True, "SECRET_KEY": "migrated-template",
                      "SQLALCHEMY_DATABASE_URI": url, "UPLOAD_DIR": str(upload_dir),
                      "QUEUE": "embedded"})
    with app.app_context():
        upgrade()
        db.session.remove()
        db.engine.dispose()


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///<path>`` URL."""
    return Path(url.removeprefix("sqlite:///"))


def make_sqlite_template(directory: Path) -> Path:
    """A SQLite file in ``directory`` migrated to head, closed (its write-ahead log folded in)."""
    path = directory / "migrated.db"
    migrate(f"sqlite:///{path}", directory / "uploads")
    leftovers = [p.name for p in directory.glob("migrated.db-*")]
    if leftovers:  # a copy of the main file alone would lack what they hold
        raise RuntimeError(f"the migrated SQLite template was not closed: {leftovers}")
    return path


def fill_sqlite(url: str, template: Path) -> bool:
    """Make the database of ``url`` a copy of ``template`` when its file does not exist yet;
    ``False`` (nothing done) when it does."""
    path = sqlite_path(url)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return True


@dataclass(frozen=True)
class PostgresTemplate:
    """A migrated database nobody connects to (PostgreSQL copies a database only then), on the
    server of ``admin``: a connection (autocommit) to ``admin_url``, kept for the copies."""

    name: str
    admin_url: str
    admin: psycopg.Connection


def make_postgres_template(admin_url: str, name: str, directory: Path) -> PostgresTemplate:
    """Database ``name`` made on the server of ``admin_url`` and migrated to head, its
    connections closed. ``directory`` takes the app's upload folder."""
    from tests.servers import sqlalchemy_url

    admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    migrate(sqlalchemy_url(admin_url, name), directory / "uploads")
    return PostgresTemplate(name, admin_url, admin)


#: SQLAlchemy URLs of PostgreSQL databases made as copies of the template by
#: :func:`create_postgres` and not yet used by an app: :func:`fill_postgres` needs no look.
_FRESH_COPIES: set[str] = set()


def apps_only(request: pytest.FixtureRequest) -> bool:
    """Whether the test reaches its database only through its app factory (``make_app``): it
    does not take ``database_url`` itself, so nothing may see the database empty."""
    return ("make_app" in request.fixturenames
            and "database_url" not in inspect.signature(request.function).parameters)


def create_postgres(admin: psycopg.Connection, url: str, template: PostgresTemplate | None
                    ) -> None:
    """Make the database of ``url``: a copy of ``template`` when given (one statement, rather
    than an empty database replaced at the first app), else empty."""
    name = make_url(url).database
    if template is None:
        admin.execute(f'CREATE DATABASE "{name}"')
        return
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template.name}"{_file_copy(admin)}')
    _FRESH_COPIES.add(url)


def forget(url: str) -> None:
    """The database of ``url`` is dropped (its name may come back)."""
    _FRESH_COPIES.discard(url)


def fill_postgres(url: str, template: PostgresTemplate) -> bool:
    """Make the database of the SQLAlchemy ``url`` (on ``template``'s server) a copy of
    ``template`` when it holds no relation; ``False`` (nothing done) when it holds one. A copy
    :func:`create_postgres` made is used as it is (``True``), once."""
    if url in _FRESH_COPIES:
        _FRESH_COPIES.discard(url)
        return True
    name = make_url(url).database
    conninfo = psycopg.conninfo.make_conninfo(template.admin_url, dbname=name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n "
                           "ON n.oid = c.relnamespace WHERE n.nspname = 'public')").fetchone()
    if row is None or row[0]:
        return False
    admin = template.admin
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template.name}"{_file_copy(admin)}')
    return True


def _file_copy(admin: psycopg.Connection) -> str:
    """PostgreSQL 15's ``STRATEGY FILE_COPY`` when the server has it: for a small template on a
    server without fsync, a third of the time of the default (``WAL_LOG``)."""
    return " STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else ""


def filler(request: pytest.FixtureRequest, database_url: str) -> Callable[[], bool]:
    """``fill()`` for an app factory: make the empty database of ``database_url`` (a SQLite
    file, or a database of ``postgres_admin_url``'s server) a copy of the session's migrated
    one of its kind (fixtures ``migrated_sqlite``, ``migrated_postgres``); ``False`` when it is
    not empty (then nothing is done)."""
    if database_url.startswith("sqlite:///"):
        sqlite_template: Path = request.getfixturevalue("migrated_sqlite")
        return lambda: fill_sqlite(database_url, sqlite_template)
    postgres_template: PostgresTemplate = request.getfixturevalue("migrated_postgres")
    return lambda: fill_postgres(database_url, postgres_template)
