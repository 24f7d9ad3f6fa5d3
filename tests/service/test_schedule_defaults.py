"""An exercise's default rules from its ``exercise.toml`` (``[schedule]``), on SQLite and
PostgreSQL: they are the rules while the database holds no schedule for the exercise (the
upload check, the gradebook and ``schedule show`` read them, which says where they come from),
``schedule set`` starts from them, and a table the checks refuse stops the app when it starts,
naming the file and the key, instead of failing a page later.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from grader.config import GraderConfig
from service import create_app
from service.domain.course_rules import Counts, Part, RulesError, Shown
from service.domain.schedules import load_all_rules, load_rules
from service.extensions import db
from tests.service.service_support import EXERCISE, bearer, tiny_notebook, upload
from tests.service.service_support import cli_ok as cli
from tests.service.test_dashboard import add_instructor, log_in

#: Closed long ago: an upload now is refused, whatever the real clock says.
TABLE = """\
[schedule]
opens = 2000-12-01T09:00:00+09:00
due = "2001-01-01T00:00:00+09:00"
late_until = 2001-01-03T00:00:00+09:00
late_penalty = "10%/day"
counts = "last"
attempts_per_day = 4
timezone = "Europe/Paris"
weight = 2.5
release = "exam"
"""


def exercises_with(tmp_path: Path, config: GraderConfig, table: str) -> GraderConfig:
    """The grader's configuration with a copy of the exercise whose spec holds ``table``."""
    target = tmp_path / "exercises" / EXERCISE
    shutil.copytree(config.exercises_root / EXERCISE, target)
    spec = target / "exercise.toml"
    spec.write_text(spec.read_text(encoding="utf-8").replace(
        "[[items]]", table + "\n[[items]]", 1), encoding="utf-8")
    return dataclasses.replace(config, exercises_root=target.parent)


@pytest.fixture
def app(make_app: Any, tmp_path: Path, config: GraderConfig) -> Flask:
    return make_app(GRADER=exercises_with(tmp_path, config, TABLE))


def shown(app: Flask) -> dict[str, Any]:
    return json.loads(cli(app, "schedule", "show", EXERCISE, "--json"))


def send(app: Flask, token: str, marker: int) -> Any:
    return app.test_client().post("/api/submissions", data=upload(tiny_notebook(marker)),
                                  headers=bearer(token), content_type="multipart/form-data")


def test_the_toml_schedule_is_the_rules_until_the_database_has_one(app: Flask,
                                                                    tokens: dict[str, str]):
    with app.app_context():
        rules = load_rules(db.session, EXERCISE)
        assert load_all_rules(db.session, [EXERCISE])[EXERCISE] == rules  # the gradebook's
    assert rules.dates.opens == dt.datetime(2000, 12, 1, 0, 0)  # stored as naive UTC
    assert rules.dates.due == dt.datetime(2000, 12, 31, 15, 0)
    assert rules.dates.late_until == dt.datetime(2001, 1, 2, 15, 0)
    assert (str(rules.penalty), rules.counts, rules.attempts_per_day) == ("10%/day",
                                                                           Counts.LAST, 4)
    assert (rules.timezone, rules.weight) == ("Europe/Paris", 2.5)
    assert all(rules.release[part] is Shown.ON_PUBLISH for part in Part)

    closed = send(app, tokens["alice"], 1)  # the upload check reads them too
    assert closed.status_code == 403 and closed.get_json()["error"] == "closed"

    before = shown(app)
    assert (before["stored"], before["source"]) == (False, "exercise.toml")
    assert before["due"] == "2000-12-31T15:00:00Z" and before["weight"] == 2.5
    fields = dict(line.split(None, 1) for line in
                  cli(app, "schedule", "show", EXERCISE).splitlines())
    assert fields["exercise"] == (f"{EXERCISE} (no schedule stored: the [schedule] of its "
                                  "exercise.toml)")
    assert fields["source"] == "exercise.toml"
    assert fields["due"] == "2000-12-31T16:00:00+01:00"  # shown in Paris

    # ``schedule set`` starts from the file: what it does not give is the file's.
    cli(app, "schedule", "set", EXERCISE, "--due", "2099-01-01T00:00:00Z", "--late-until", "")
    after = shown(app)
    assert (after["stored"], after["source"]) == (True, "database")
    assert (after["opens"], after["due"], after["late_until"]) == (
        "2000-12-01T00:00:00Z", "2099-01-01T00:00:00Z", None)
    assert {key: after[key] for key in ("late_penalty", "counts", "attempts_per_day",
                                        "timezone", "weight")} == {
        "late_penalty": "10%/day", "counts": "last", "attempts_per_day": 4,
        "timezone": "Europe/Paris", "weight": 2.5}
    assert set(after["release"].values()) == {"on_publish"}
    assert send(app, tokens["alice"], 2).status_code == 202  # the row's dates now


def test_publish_without_a_row_keeps_the_tomls_rules(app: Flask):
    cli(app, "schedule", "publish", EXERCISE)
    after = shown(app)
    assert after["source"] == "database" and after["published_at"] is not None
    assert after["due"] == "2000-12-31T15:00:00Z" and after["counts"] == "last"


def test_the_dashboard_shows_the_tomls_rules_and_says_where_they_come_from(
        make_app: Any, tmp_path: Path, config: GraderConfig):
    app = make_app(GRADER=exercises_with(tmp_path, config, TABLE), WTF_CSRF_ENABLED=False)
    add_instructor(app)
    staff = app.test_client()
    staff.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert log_in(staff).status_code == 303
    page = staff.get(f"/dashboard/{EXERCISE}").get_data(as_text=True)
    assert 'id="rules-source"' in page and "written in the exercise's exercise.toml" in page
    assert 'id="rules-due">2000-12-31 16:00 CET<' in page  # the file's due, in its zone
    assert "exercise.toml に書かれた" in staff.get(f"/dashboard/{EXERCISE}?lang=ja").get_data(
        as_text=True)
    cli(app, "schedule", "set", EXERCISE, "--weight", "3")
    assert 'id="rules-source"' not in staff.get(f"/dashboard/{EXERCISE}").get_data(as_text=True)


def test_without_a_table_the_defaults_say_so(make_app: Any):
    app = make_app()
    assert shown(app)["source"] == "defaults"
    assert "no schedule stored: the defaults" in cli(app, "schedule", "show", EXERCISE)


@pytest.mark.parametrize(("table", "message"), [
    ("late-until = 2026-12-26T23:59:59+09:00",
     "unknown key 'late-until' in [schedule] (known: opens, due, late_until, late_penalty, "
     "counts, attempts_per_day, timezone, weight, release)"),
    ("due = 2026-12-24T23:59:59+09:00\nlate_until = 2026-12-20T00:00:00+09:00",
     "late-until must not be before due"),
    ("opens = 2026-12-25T00:00:00Z\ndue = 2026-12-24T00:00:00Z", "opens must be before due"),
    ("due = 2026-12-24T23:59:59", "'2026-12-24T23:59:59' has no offset"),
    ("due = 2026-12-24", "due must be a date and time with an offset "
     "(2026-12-24T23:59:59+09:00), not 2026-12-24"),
    ('opens = ""', "opens must be a date and time with an offset"),
    ('attempts_per_day = "3"', "attempts per day must be a whole number, not '3'"),
    ("attempts_per_day = 0", "attempts per day must be at least 1"),
    ("late_penalty = 10", "late_penalty must be a string, not 10"),
    ('late_penalty = "ten"', "late penalty 'ten' not understood"),
    ('counts = "worst"', "counts must be best or last, not 'worst'"),
    ('release = "score=later"', "release rule 'score=later' not understood"),
    ('timezone = "Mars/Olympus"', "unknown time zone 'Mars/Olympus'"),
    ("weight = true", "weight must be a number, not true"),
    ("weight = 5000", "weight must be between 0 and 1000"),
])
def test_a_bad_table_stops_the_app_naming_the_file(tmp_path: Path, config: GraderConfig,
                                                    table: str, message: str):
    grader = exercises_with(tmp_path, config, "[schedule]\n" + table + "\n")
    with pytest.raises(RulesError) as refused:
        create_app({"TESTING": True, "SECRET_KEY": "x", "GRADER": grader,
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'grader.db'}",
                    "UPLOAD_DIR": str(tmp_path / "uploads")})
    spec = grader.exercises_root / EXERCISE / "exercise.toml"
    assert str(refused.value).startswith(f"{spec}, [schedule]: "), str(refused.value)
    assert message in str(refused.value)
    assert refused.value.key == "rules.in_exercise_toml"
    assert refused.value.text.ja.startswith(f"{spec} の [schedule]: ")
