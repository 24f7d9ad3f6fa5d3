"""Which exercises the warm pool keeps kits for (``service.domain.open_exercises``,
``service.queue.warm_kits.wanted``): those that take submissions now or within ten minutes, for
the class or for one student's extension, set through the real CLI on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from flask import Flask

from service.domain.course_rules import Dates, Extension, Rules
from service.domain.open_exercises import AHEAD, open_among, takes_submissions
from service.extensions import sessions_of
from service.queue import warm_kits
from tests.service.service_support import EXERCISE
from tests.service.service_support import cli_ok as ok

NOW = dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
SECOND = dt.timedelta(seconds=1)


def test_the_window_with_its_ten_minutes_ahead():
    assert takes_submissions(Dates(), NOW)  # no schedule: always open
    assert takes_submissions(Dates(opens=NOW + AHEAD), NOW)
    assert not takes_submissions(Dates(opens=NOW + AHEAD + SECOND), NOW)
    assert takes_submissions(Dates(due=NOW), NOW)  # the due instant itself is on time
    assert not takes_submissions(Dates(due=NOW - SECOND), NOW)
    assert takes_submissions(Dates(due=NOW - HOUR, late_until=NOW + SECOND), NOW)
    assert not takes_submissions(Dates(due=NOW - HOUR, late_until=NOW - SECOND), NOW)


def test_an_extension_keeps_a_closed_exercise_open():
    closed = Rules("a", Dates(due=NOW - 2 * HOUR, late_until=NOW - HOUR))
    rules = {"a": closed, "b": Rules("b"), "c": Rules("c", Dates(opens=NOW + 2 * HOUR))}
    assert open_among(rules, [], NOW) == ["b"]
    extended = [("a", Extension(due=NOW + HOUR))]
    assert open_among(rules, extended, NOW) == ["a", "b"]
    # An extension's own late window, and the class's window length after its due time.
    assert open_among(rules, [("a", Extension(due=NOW - HOUR, late_until=NOW + SECOND))],
                      NOW) == ["a", "b"]
    assert open_among(rules, [("a", Extension(due=NOW - HOUR + SECOND))], NOW) == ["a", "b"]
    assert open_among(rules, [("a", Extension(due=NOW - HOUR - SECOND))], NOW) == ["b"]
    assert open_among(rules, [], NOW + 2 * HOUR - AHEAD) == ["b", "c"]


def iso(moment: dt.datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


def wanted(app: Flask) -> list[str]:
    return warm_kits.wanted(sessions_of(app), app.config["GRADER"])


def test_the_pool_wants_what_the_stored_schedules_open(app: Flask, tokens: dict[str, str]):
    everything = app.config["GRADER"].exercise_ids()
    assert wanted(app) == everything  # no schedule stored: all open
    now = dt.datetime.now(dt.UTC)
    ok(app, "schedule", "set", EXERCISE, "--opens", iso(now - 3 * HOUR),
       "--due", iso(now - 2 * HOUR), "--late-until", iso(now - HOUR))
    others = [e for e in everything if e != EXERCISE]
    assert wanted(app) == others
    ok(app, "extension", "grant", "alice", EXERCISE, "--due", iso(now + HOUR))
    assert wanted(app) == everything
    ok(app, "extension", "revoke", "alice", EXERCISE)
    ok(app, "schedule", "set", EXERCISE, "--opens", iso(now + 5 * 60 * SECOND),
       "--due", iso(now + 48 * HOUR), "--late-until", iso(now + 49 * HOUR))
    assert wanted(app) == everything  # opens within ten minutes: warmed ahead
    ok(app, "schedule", "set", EXERCISE, "--opens", iso(now + HOUR))
    assert wanted(app) == others
