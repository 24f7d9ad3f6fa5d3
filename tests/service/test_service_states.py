"""Run states as enums: the migration that named them (on SQLite and PostgreSQL), the typed
columns that read them back as members, and no run state left as a bare string in service/."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select, text

from service import create_app
from service.extensions import db
from service.models import GradingRun, Worker
from service.queue.heartbeats import beat
from service.states import Outcome, RunState, WorkerKind

SERVICE = Path(__file__).resolve().parents[2] / "service"
#: The revision before the run's columns were named ``state`` and ``outcome``.
BEFORE = "c0042c5721b2"


def _app(database_url: str, tmp_path: Path) -> Flask:
    return create_app({"TESTING": True, "SECRET_KEY": "x" * 32, "QUEUE": "embedded",
                       "SQLALCHEMY_DATABASE_URI": database_url,
                       "UPLOAD_DIR": str(tmp_path / "uploads")})


def _columns_and_indexes(app: Flask) -> tuple[set[str], set[str]]:
    inspector = inspect(db.engine)
    return ({c["name"] for c in inspector.get_columns("grading_runs")},
            {i["name"] for i in inspector.get_indexes("grading_runs")})


def test_the_rename_migration_keeps_the_runs_both_ways(database_url, tmp_path):
    app = _app(database_url, tmp_path)
    try:
        with app.app_context():
            upgrade(revision=BEFORE)
            db.session.execute(text(
                "INSERT INTO students (id, student_id, name, email, token_hash, created_at) "
                "VALUES (1, 's1', 'S', '', :hash, CURRENT_TIMESTAMP)"), {"hash": "0" * 64})
            db.session.execute(text(
                "INSERT INTO submissions (id, student_pk, exercise, filename, notebook_sha256, "
                "size, created_at) VALUES (1, 1, 'e', 'n.ipynb', :sha, 1, CURRENT_TIMESTAMP)"),
                {"sha": "0" * 64})
            db.session.execute(text(
                "INSERT INTO grading_runs (id, submission_id, status, run_status, attempts, "
                "queued_at) VALUES (1, 1, 'graded', 'timeout', 1, CURRENT_TIMESTAMP), "
                "(2, 1, 'queued', NULL, 0, CURRENT_TIMESTAMP)"))
            db.session.commit()

            upgrade()
            columns, indexes = _columns_and_indexes(app)
            assert {"state", "outcome"} <= columns and not {"status", "run_status"} & columns
            assert "ix_grading_runs_state" in indexes and "ix_grading_runs_status" not in indexes
            runs = db.session.scalars(select(GradingRun).order_by(GradingRun.id)).all()
            assert [(run.state, run.outcome) for run in runs] == [
                (RunState.GRADED, Outcome.TIMEOUT), (RunState.QUEUED, None)]
            assert all(type(run.state) is RunState for run in runs)
            assert type(runs[0].outcome) is Outcome
            db.session.remove()

            downgrade(revision=BEFORE)
            columns, indexes = _columns_and_indexes(app)
            assert {"status", "run_status"} <= columns and not {"state", "outcome"} & columns
            assert "ix_grading_runs_status" in indexes
            rows = db.session.execute(text(
                "SELECT status, run_status FROM grading_runs ORDER BY id")).all()
            assert [tuple(row) for row in rows] == [("graded", "timeout"), ("queued", None)]
            db.session.remove()
            upgrade()
    finally:
        with app.app_context():
            db.engine.dispose()


def test_typed_columns_store_the_values_and_read_back_members(app):
    with app.app_context():
        beat(db.session, "embedded:h:1", WorkerKind.EMBEDDED)
        db.session.remove()
        assert type(db.session.execute(select(Worker.kind)).scalar_one()) is WorkerKind
        stored = db.session.execute(text("SELECT kind FROM workers")).scalar_one()
        assert stored == "embedded" and type(stored) is str


# --- no bare run state in service/ ---------------------------------------------------------

#: Words that spell a run state but mean something else there (file -> words, and why).
NOT_RUN_STATES = {
    # the dashboard filter "show=failed" (the rows of students stuck on a failed run)
    "domain/gradebook.py": {"failed"},
    "templates/dashboard/exercise.html": {"failed"},
    "templates/dashboard/index.html": {"failed"},
    # the gradebook CSV's "only=graded" (students with a score)
    "views/dashboard/pages.py": {"graded"},
    # progress["phase"] once the kernel runs the cells
    "queue/progress.py": {"running"},
}
STATES = {state.value for state in RunState}
QUOTED = re.compile("[\"'](" + "|".join(sorted(STATES)) + ")[\"']")


def _python_strings(source: str) -> list[tuple[int, str]]:
    """The plain string literals of a module (docstrings and f-strings aside)."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and token.string[:1] in "\"'":
            found.append((token.start[0], token.string[1:-1]))
    return found


def test_no_run_state_is_a_bare_string_outside_its_enum():
    offenders = []
    for path in sorted(SERVICE.rglob("*")):
        relative = path.relative_to(SERVICE).as_posix()
        if relative == "states.py" or "migrations/" in relative or "__pycache__" in relative:
            continue
        allowed = NOT_RUN_STATES.get(relative, set())
        if path.suffix == ".py":
            hits = [(line, word) for line, word in _python_strings(path.read_text())
                    if word in STATES]
        elif path.suffix in (".html", ".js"):
            hits = [(number, match.group(1))
                    for number, text_line in enumerate(path.read_text().splitlines(), 1)
                    for match in QUOTED.finditer(text_line)]
        else:
            continue
        offenders += [f"{relative}:{line}: {word!r}" for line, word in hits
                      if word not in allowed]
    assert not offenders, ("run states are RunState members (RunState.QUEUED in Python and "
                           "templates), not strings:\n" + "\n".join(offenders))
