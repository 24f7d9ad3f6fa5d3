"""The course's rules from the command line (``service.course_commands``), through Flask's CLI
runner on SQLite and PostgreSQL: ``schedule set|show|publish``, ``extension
grant|revoke|list|import``, ``adjust`` and ``adjustments``. Every refusal is checked twice: a
clear message, and the database exactly as before (the schedule's JSON, the extension and
adjustment rows)."""

from __future__ import annotations

import datetime as dt
import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from service.extensions import db
from service.models import Adjustment, ExtensionGrant, GradingRun, ItemScore, Student, Submission
from tests.service.service_support import EXERCISE, in_session
from tests.service.service_support import cli_ok as ok
from tests.service.service_support import cli_refused as refused

AUTHOR = f"cli:{getpass.getuser()}"
DUE = "2026-12-24T23:59:59+09:00"
LATE = "2026-12-26T23:59:59+09:00"



def shown_json(app: Flask) -> dict[str, Any]:
    return json.loads(ok(app, "schedule", "show", EXERCISE, "--json"))


def rows(app: Flask, model: type) -> int:
    return in_session(app, lambda s: s.execute(select(func.count()).select_from(model))
                      .scalar_one())


def add_graded(app: Flask, student_id: str, items: dict[str, float]) -> int:
    """A submission of ``student_id`` with one graded run scoring ``items``."""

    def add(session: Any) -> int:
        student = session.execute(select(Student).where(Student.student_id == student_id)
                                  ).scalar_one()
        submission = Submission(student=student, exercise=EXERCISE, filename="hw.ipynb",
                                notebook_sha256="a" * 64, size=10,
                                created_at=dt.datetime(2026, 12, 20, 3, 0))
        run = GradingRun(submission=submission, state="graded", outcome="graded",
                         score=sum(items.values()), max_score=100.0)
        for position, (item_id, score) in enumerate(items.items()):
            run.items.append(ItemScore(position=position, item_id=item_id, score=score,
                                       max_score=6.0, status="correct"))
        session.add_all([submission, run])
        session.commit()
        return submission.id

    return in_session(app, add)


# --- schedule -----------------------------------------------------------------------------------


def test_schedule_set_stores_utc_and_shows_the_course_zone(app: Flask):
    out = ok(app, "schedule", "set", EXERCISE, "--opens", "2026-12-01T09:00:00+09:00",
             "--due", DUE, "--late-until", "2026-12-26T14:59:59Z", "--late-penalty", "10%/day",
             "--counts", "last", "--attempts-per-day", "3", "--timezone", "Asia/Tokyo",
             "--weight", "2.5", "--release", "holdout_accuracy=on_publish,feedback=after_due")
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert fields["due"] == "2026-12-24T23:59:59+09:00"
    assert fields["late_until"] == "2026-12-26T23:59:59+09:00"  # given in Z, shown in JST
    assert fields["opens"] == "2026-12-01T09:00:00+09:00"
    assert (fields["late_penalty"], fields["counts"]) == ("10%/day", "last")

    shown = shown_json(app)
    assert shown == {
        "exercise": EXERCISE, "stored": True, "source": "database", "timezone": "Asia/Tokyo",
        "opens": "2026-12-01T00:00:00Z", "due": "2026-12-24T14:59:59Z",
        "late_until": "2026-12-26T14:59:59Z", "late_penalty": "10%/day", "counts": "last",
        "attempts_per_day": 3, "weight": 2.5,
        "release": {"score": "always", "feedback": "after_due", "test_accuracy": "always",
                    "holdout_accuracy": "on_publish"},
        "published_at": None, "updated_at": shown["updated_at"], "updated_by": AUTHOR}
    assert shown["updated_at"].endswith("Z")
    fields = dict(line.split(None, 1) for line in
                  ok(app, "schedule", "show", EXERCISE).splitlines())
    assert fields["timezone"] == "Asia/Tokyo" and fields["attempts_per_day"] == "3"
    assert fields["weight"] == "2.5" and fields["release.holdout_accuracy"] == "on_publish"
    assert fields["release.score"] == "always" and fields["published_at"] == "-"
    assert fields["updated"].endswith(f"+09:00 by {AUTHOR}")

    with app.app_context():  # stored in UTC, naive
        from service.models import Schedule
        row = db.session.get(Schedule, EXERCISE)
        assert row.due_at == dt.datetime(2026, 12, 24, 14, 59, 59)
        assert row.late_until == dt.datetime(2026, 12, 26, 14, 59, 59)


def test_a_zone_changes_how_times_are_shown_not_when_they_are(app: Flask):
    ok(app, "schedule", "set", EXERCISE, "--due", DUE, "--timezone", "Europe/Paris")
    assert "2026-12-24T15:59:59+01:00" in ok(app, "schedule", "show", EXERCISE)
    assert shown_json(app)["due"] == "2026-12-24T14:59:59Z"


def test_schedule_show_without_a_schedule_gives_the_defaults(app: Flask):
    shown = shown_json(app)
    assert shown["stored"] is False and shown["due"] is None and shown["counts"] == "best"
    assert shown["source"] == "defaults"
    assert shown["late_penalty"] == "0" and shown["attempts_per_day"] is None
    assert shown["release"]["holdout_accuracy"] == "after_late_until"
    assert "no schedule stored" in ok(app, "schedule", "show", EXERCISE)


def test_an_empty_value_clears_a_time_and_the_daily_limit(app: Flask):
    ok(app, "schedule", "set", EXERCISE, "--opens", "2026-12-01T00:00:00Z", "--due", DUE,
       "--late-until", LATE, "--attempts-per-day", "2")
    ok(app, "schedule", "set", EXERCISE, "--opens", "", "--late-until", "",
       "--attempts-per-day", "")
    shown = shown_json(app)
    assert (shown["opens"], shown["late_until"], shown["attempts_per_day"]) == (None, None, None)
    assert shown["due"] == "2026-12-24T14:59:59Z"  # not given: kept
    assert "empty value ('') clears it" in ok(app, "schedule", "set", "--help")


def test_release_takes_presets_and_rules_over_the_current_ones(app: Flask):
    ok(app, "schedule", "set", EXERCISE, "--release", "exam")
    assert set(shown_json(app)["release"].values()) == {"on_publish"}
    ok(app, "schedule", "set", EXERCISE, "--release", "score=always")
    release = shown_json(app)["release"]
    assert release["score"] == "always" and release["feedback"] == "on_publish"
    ok(app, "schedule", "set", EXERCISE, "--release", "default")
    assert shown_json(app)["release"]["holdout_accuracy"] == "after_late_until"


def test_publish_and_undo(app: Flask):
    out = ok(app, "schedule", "publish", EXERCISE)
    assert "results published at" in out and "+09:00" in out
    assert shown_json(app)["published_at"].endswith("Z")
    assert "not published" in ok(app, "schedule", "publish", EXERCISE, "--undo")
    assert shown_json(app)["published_at"] is None


@pytest.mark.parametrize(("options", "message"), [
    (["--due", "2026-12-24T23:59:59"], "has no offset"),
    (["--due", "next friday"], "not an ISO 8601 time"),
    (["--late-until", "2026-12-24T23:00:00+09:00"], "late-until must not be before due"),
    (["--opens", "2026-12-25T00:00:00+09:00"], "opens must be before due"),
    (["--due", "", "--late-until", LATE], "a late-until needs a due time"),
    (["--late-penalty", "ten percent"], "late penalty 'ten percent' not understood"),
    (["--late-penalty", "150%"], "at most 100%"),
    (["--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
    (["--attempts-per-day", "0"], "at least 1"),
    (["--attempts-per-day", "two"], "whole number"),
    (["--weight", "heavy"], "weight must be a number"),
    (["--release", "holdout=later"], "release rule 'holdout=later' not understood"),
    (["--counts", "worst"], "'worst' is not one of 'best', 'last'"),
    # a good option beside a bad one: neither is applied
    (["--due", "2027-01-10T00:00:00+09:00", "--late-penalty", "5%/week"], "not understood"),
])
def test_a_refused_schedule_change_says_why_and_changes_nothing(app: Flask, options: list[str],
                                                                message: str):
    ok(app, "schedule", "set", EXERCISE, "--opens", "2026-12-01T00:00:00+09:00", "--due", DUE,
       "--late-penalty", "100%", "--attempts-per-day", "4", "--timezone", "Asia/Tokyo")
    before = shown_json(app)
    assert message in refused(app, "schedule", "set", EXERCISE, *options)
    assert shown_json(app) == before


def test_an_unknown_exercise_is_refused_naming_the_known_ones(app: Flask, tokens: dict):
    for args in (["schedule", "set", "chap99", "--due", DUE], ["schedule", "show", "chap99"],
                 ["schedule", "publish", "chap99"],
                 ["extension", "grant", "alice", "chap99", "--due", DUE],
                 ["extension", "list", "chap99"],
                 ["adjust", "alice", "chap99", "--points", "1", "--comment", "x"]):
        out = refused(app, *args)
        assert "unknown exercise 'chap99'" in out and EXERCISE in out, args
    assert rows(app, ExtensionGrant) == rows(app, Adjustment) == 0
    assert shown_json(app)["stored"] is False


# --- extensions ---------------------------------------------------------------------------------


def test_extension_grant_list_and_revoke(app: Flask, tokens: dict):
    ok(app, "schedule", "set", EXERCISE, "--due", DUE, "--late-until", LATE)
    out = ok(app, "extension", "grant", "alice", EXERCISE, "--due", "2026-12-31T23:59:59+09:00",
             "--extra-attempts", "2", "--comment", "medical certificate")
    # no --late-until: the class's two-day late window after her own due
    assert "due 2026-12-31T23:59:59+09:00, late until 2027-01-02T23:59:59+09:00" in out
    listed = json.loads(ok(app, "extension", "list", "--json"))
    assert listed == [{"student_id": "alice", "exercise": EXERCISE,
                       "due": "2026-12-31T14:59:59Z", "late_until": None,
                       "extra_attempts": 2, "comment": "medical certificate",
                       "granted_by": AUTHOR, "granted_at": listed[0]["granted_at"]}]
    text = ok(app, "extension", "list", EXERCISE)
    assert "alice\tchap06_cnn\t2026-12-31T23:59:59+09:00\t-\t2\t" in text

    ok(app, "extension", "grant", "alice", EXERCISE, "--due", "2027-01-05T12:00:00+09:00",
       "--late-until", "2027-01-06T12:00:00+09:00")  # replaces the first
    listed = json.loads(ok(app, "extension", "list", "--json"))
    assert [(e["due"], e["late_until"], e["extra_attempts"]) for e in listed] == [
        ("2027-01-05T03:00:00Z", "2027-01-06T03:00:00Z", 0)]

    assert "revoked" in ok(app, "extension", "revoke", "alice", EXERCISE)
    assert json.loads(ok(app, "extension", "list", "--json")) == []
    assert "no extension" in refused(app, "extension", "revoke", "alice", EXERCISE)
    ok(app, "extension", "grant", "bob", EXERCISE, "--due", DUE)
    assert "no student 'carol'" in refused(app, "extension", "revoke", "carol", EXERCISE)
    assert "unknown exercise" in refused(app, "extension", "revoke", "bob", "chap99")
    assert [e["student_id"] for e in json.loads(ok(app, "extension", "list", "--json"))] == [
        "bob"]
    ok(app, "extension", "revoke", "bob", EXERCISE)
    assert "no extensions" in ok(app, "extension", "list")


@pytest.mark.parametrize(("args", "message"), [
    (["carol", EXERCISE, "--due", DUE], "no student 'carol' on the roster"),
    (["alice", EXERCISE, "--due", "2026-12-31T23:59:59"], "has no offset"),
    (["alice", EXERCISE, "--due", DUE, "--late-until", "2026-12-20T00:00:00Z"],
     "late-until must not be before due"),
    (["alice", EXERCISE, "--due", DUE, "--extra-attempts", "-1"], "-1 is not in the range"),
    (["alice", EXERCISE], "Missing option '--due'"),
])
def test_a_refused_extension_says_why_and_stores_nothing(app: Flask, tokens: dict,
                                                         args: list[str], message: str):
    assert message in refused(app, "extension", "grant", *args)
    assert rows(app, ExtensionGrant) == 0


def test_extension_import_is_all_or_nothing_and_names_the_line(app: Flask, tokens: dict,
                                                              tmp_path: Path):
    good = tmp_path / "good.csv"
    good.write_text("student_id,exercise,due,late_until,extra_attempts,comment\n"
                    f"alice,{EXERCISE},{DUE},,1,exam clash\n"
                    f"bob,{EXERCISE},2026-12-28T12:00:00Z,2026-12-29T12:00:00Z,0,\n")
    assert "2 extensions granted" in ok(app, "extension", "import", str(good))
    listed = {e["student_id"]: e for e in json.loads(ok(app, "extension", "list", "--json"))}
    assert listed["alice"]["extra_attempts"] == 1 and listed["alice"]["comment"] == "exam clash"
    assert listed["bob"]["late_until"] == "2026-12-29T12:00:00Z"

    ok(app, "extension", "revoke", "alice", EXERCISE)
    ok(app, "extension", "revoke", "bob", EXERCISE)
    bad = tmp_path / "bad.csv"
    bad.write_text("student_id,exercise,due\n"
                   f"alice,{EXERCISE},{DUE}\n"
                   f"bob,{EXERCISE},2026-12-28 12:00\n")
    out = refused(app, "extension", "import", str(bad))
    assert "line 3" in out and "has no offset" in out
    assert rows(app, ExtensionGrant) == 0  # alice's good line 2 is not kept either
    for body, message in ((f"alice,chap99,{DUE}\n", "line 2: unknown exercise 'chap99'"),
                          (f"carol,{EXERCISE},{DUE}\n", "line 2: no student 'carol'")):
        bad.write_text("student_id,exercise,due\n" + body)
        assert message in refused(app, "extension", "import", str(bad))
    bad.write_text("student,due\nalice,2026-12-28T12:00:00Z\n")
    assert "missing: student_id, exercise" in refused(app, "extension", "import", str(bad))
    assert rows(app, ExtensionGrant) == 0


# --- adjustments --------------------------------------------------------------------------------


def test_adjust_prints_before_and_after_and_keeps_the_trail(app: Flask, tokens: dict):
    add_graded(app, "alice", {"conv1": 6.0, "conv2": 0.0, "conv3": 30.0})  # 36 points
    out = ok(app, "adjust", "alice", EXERCISE, "--points", "5", "--comment", "bonus for style")
    assert "alice chap06_cnn total: add +5; final 36 -> 41" in out
    out = ok(app, "adjust", "alice", EXERCISE, "--item", "conv2", "--set", "6",
             "--comment", "grader bug: conv2 was right")
    assert "item conv2: set 6; final 41 -> 47" in out
    out = ok(app, "adjust", "alice", EXERCISE, "--remove", "--comment", "bonus withdrawn")
    assert "total: remove; final 47 -> 42" in out

    trail = json.loads(ok(app, "adjustments", "alice", "--json"))
    assert [(a["item"], a["mode"], a["points"], a["before"], a["after"], a["comment"],
             a["author"]) for a in trail] == [
        (None, "add", 5.0, 36.0, 41.0, "bonus for style", AUTHOR),
        ("conv2", "set", 6.0, 41.0, 47.0, "grader bug: conv2 was right", AUTHOR),
        (None, "remove", 0.0, 47.0, 42.0, "bonus withdrawn", AUTHOR)]
    assert all(a["created_at"].endswith("Z") for a in trail)
    text = ok(app, "adjustments", "alice", EXERCISE)
    assert f"\t{AUTHOR}\tchap06_cnn/conv2\tset 6\t41\t47\tgrader bug: conv2 was right" in text
    assert "+09:00" in text.splitlines()[1]  # the time in the course's zone
    assert "no adjustments of bob" in ok(app, "adjustments", "bob")


def test_adjust_without_a_submission_sets_a_grade_by_hand(app: Flask, tokens: dict):
    out = ok(app, "adjust", "bob", EXERCISE, "--set", "70", "--comment", "oral exam instead")
    assert "final - -> 70" in out


@pytest.mark.parametrize(("args", "message"), [
    (["alice", EXERCISE, "--points", "5"], "needs a comment"),
    (["alice", EXERCISE, "--points", "5", "--comment", "   "], "needs a comment"),
    (["alice", EXERCISE, "--remove"], "needs a comment"),
    (["alice", EXERCISE, "--comment", "why"], "exactly one of --points N, --set N or --remove"),
    (["alice", EXERCISE, "--points", "1", "--set", "3", "--comment", "why"],
     "(given: --points --set)"),
    (["alice", EXERCISE, "--set", "3", "--remove", "--comment", "why"], "exactly one of"),
    (["alice", EXERCISE, "--points", "1", "--item", "conv9", "--comment", "why"],
     "unknown item 'conv9'"),
    (["carol", EXERCISE, "--points", "1", "--comment", "why"], "no student 'carol'"),
    (["alice", EXERCISE, "--set", "-3", "--comment", "why"], "cannot be set below 0"),
    (["alice", EXERCISE, "--points", "many", "--comment", "why"], "'many' is not a valid float"),
    (["alice", EXERCISE, "--points", "nan", "--comment", "why"], "points must be a number"),
])
def test_a_refused_adjustment_says_why_and_stores_nothing(app: Flask, tokens: dict,
                                                          args: list[str], message: str):
    add_graded(app, "alice", {"conv1": 6.0})
    assert message in refused(app, "adjust", *args)
    assert rows(app, Adjustment) == 0


def test_adjustments_of_an_unknown_student(app: Flask, tokens: dict):
    assert "no student 'carol' on the roster" in refused(app, "adjustments", "carol")
