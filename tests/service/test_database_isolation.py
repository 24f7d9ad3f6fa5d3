"""Every test gets a database of its own (``tests/service/conftest.py``'s ``database_url``, a
copy of the migrated template on PostgreSQL, a copied file on SQLite): what one test writes, the
next one does not see. The two tests run in this order in one process (a module stays whole in
one pytest-xdist worker)."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from service.extensions import db
from service.models import Student

#: The database URLs the writing test used, so the reading one knows it ran before it.
WRITTEN: list[str] = []


def students(app: Flask) -> int:
    with app.app_context():
        return db.session.execute(select(func.count(Student.id))).scalar_one()


def test_a_test_writes_rows_in_its_database(app: Flask, tokens: dict[str, str]) -> None:
    assert students(app) == 2
    WRITTEN.append(app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0])


def test_the_next_test_finds_none_of_them(app: Flask) -> None:
    kind = app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0]
    assert students(app) == 0
    assert kind in WRITTEN or not WRITTEN  # alone (-k), there is nothing to compare with
