"""Indexes: every foreign key the pages query by leads an index, in the schema the migrations
make (on SQLite and PostgreSQL), the migration that added the missing ones goes both ways, and
a submission's runs are read through the index rather than a scan of every run."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from service.extensions import db

#: The revision before ``grading_runs.submission_id`` was indexed.
BEFORE = "a7c3e9d41f60"


def _leading_columns(table: str) -> set[str]:
    inspector = inspect(db.engine)
    firsts = {index["column_names"][0] for index in inspector.get_indexes(table)}
    firsts |= {key["constrained_columns"][0] for key in [inspector.get_pk_constraint(table)]
               if key["constrained_columns"]}
    firsts |= {columns[0] for unique in inspector.get_unique_constraints(table)
               if (columns := unique["column_names"])}
    return firsts


def test_every_foreign_key_leads_an_index(app):
    with app.app_context():
        inspector = inspect(db.engine)
        unindexed = [(table, key["constrained_columns"])
                     for table in inspector.get_table_names()
                     for key in inspector.get_foreign_keys(table)
                     if key["constrained_columns"][0] not in _leading_columns(table)]
        assert unindexed == []
        assert "exercise" in _leading_columns("submissions")


def test_a_submissions_runs_are_read_through_the_index(app):
    query = "SELECT id FROM grading_runs WHERE submission_id = 7 ORDER BY id"
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in db.session.execute(
                text(f"EXPLAIN QUERY PLAN {query}")))
        else:  # an empty table is scanned whatever its indexes: ask what the planner can use
            db.session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in db.session.execute(text(f"EXPLAIN {query}")))
        db.session.rollback()
    assert "ix_grading_runs_submission" in plan, plan


def test_the_index_migration_goes_both_ways(app):
    with app.app_context():
        downgrade(revision=BEFORE)
        assert "submission_id" not in _leading_columns("grading_runs")
        db.session.remove()
        upgrade()
        assert "submission_id" in _leading_columns("grading_runs")
