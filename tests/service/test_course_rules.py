"""The course's upload rules at their edges, through the real upload path (``POST
/api/submissions`` with a student's bearer token) and the real grading path (``take`` of
``service.queue.grading``, the grader stubbed to answer a chosen score), on SQLite and
PostgreSQL: one second before and after ``opens``, ``due`` and ``late_until``; acknowledged
before the due time and graded after it; a regrade after the close; an extension; the daily
limit in the course's time zone and an extension's extra attempts; what a refusal answers and
that it stores nothing; and the issue's "Done when" set up from the command line.

The time is a fake clock (:class:`Clock`) put where the code reads it: ``utcnow`` as
``service.domain.submissions`` imported it (the upload's rules and the submission's time) and
as ``service.queue.grading`` did (a run's ``finished_at``). The schedule's times are fixed
dates. A schedule set relative to the real clock would put the second under test within the
test's own run time: an upload sent "one second before the due time" that reaches the check
after a slow commit on a loaded PostgreSQL is one second after it. With the clock, every edge
is exact, and "graded an hour after the due time" takes no hour.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from sqlalchemy import func, select

from grader import Outcome
from grader.report import GradeReport, ItemResult, ItemStatus
from grader.spec import Text
from service.domain import submissions
from service.domain.course_rules import Window, parse_time
from service.domain.gradebook import GradeRow, exercise_rows
from service.domain.schedules import load_rules
from service.extensions import db
from service.models import GradingRun, IdempotencyKey, Submission
from service.queue import grading
from tests.service.service_support import (
    EXERCISE,
    bearer,
    in_session,
    take,
    tiny_notebook,
    upload,
)

OPENS = "2026-12-01T09:00:00+09:00"
DUE = "2026-12-24T23:59:59+09:00"
LATE_UNTIL = "2026-12-26T23:59:59+09:00"
SECOND = dt.timedelta(seconds=1)
_markers = itertools.count()


class Clock:
    """The service's "now" (naive UTC, as ``service.models.utcnow`` gives it)."""

    def __init__(self) -> None:
        self.now = parse_time("2026-11-01T00:00:00Z")

    def at(self, moment: str | dt.datetime, offset: dt.timedelta = dt.timedelta(0)) -> None:
        self.now = (parse_time(moment) if isinstance(moment, str) else moment) + offset

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(submissions, "utcnow", fake)
    monkeypatch.setattr(grading, "utcnow", fake)
    return fake


@pytest.fixture
def grader(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """The stub grader's answer: ``grader["score"]`` points (on item conv1) for any notebook."""
    answer = {"score": 50.0}

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        item = ItemResult("conv1", Text("conv1", "conv1"), answer["score"], 100.0,
                          ItemStatus.CORRECT)
        return GradeReport(exercise.id, Outcome.GRADED, [item], exercise.max_score)

    monkeypatch.setattr(grading, "grade_notebook", grade)
    return answer


def send(app: Flask, tokens: dict[str, str], student: str = "alice",
         key: str | None = None) -> Any:
    """A new notebook (never a duplicate of an earlier one) uploaded by ``student``."""
    headers = bearer(tokens[student])
    if key is not None:
        headers["Idempotency-Key"] = key
    return app.test_client().post("/api/submissions", data=upload(tiny_notebook(next(_markers))),
                                  headers=headers, content_type="multipart/form-data")


def accepted(response: Any) -> int:
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def schedule(app: Flask, *options: str) -> None:
    result = app.test_cli_runner().invoke(args=["schedule", "set", EXERCISE, *options])
    assert result.exit_code == 0, result.output


def grant(app: Flask, student: str, *options: str) -> None:
    result = app.test_cli_runner().invoke(args=["extension", "grant", student, EXERCISE,
                                                *options])
    assert result.exit_code == 0, result.output


def stored(app: Flask) -> tuple[int, int, int, int]:
    """Submissions, runs, idempotency keys, and notebooks in the upload store."""

    def counts(session: Any) -> tuple[int, int, int]:
        return tuple(session.execute(select(func.count()).select_from(model)).scalar_one()
                     for model in (Submission, GradingRun, IdempotencyKey))

    uploads = Path(app.config["UPLOAD_DIR"])
    blobs = sum(1 for p in uploads.rglob("*") if p.is_file()) if uploads.exists() else 0
    return (*in_session(app, counts), blobs)


def assert_refused(response: Any, status: int, code: str, *phrases: str) -> None:
    """A refusal the API documents: the status, the code, a message in English and Japanese."""
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error"] == code
    assert body["message"] and body["message_ja"] and body["message"] != body["message_ja"]
    assert any("\u3040" <= ch <= "\u30ff" for ch in body["message_ja"])  # kana: Japanese
    for phrase in phrases:
        assert phrase in body["message"] and phrase in body["message_ja"], body


def grade(app: Flask, submission_id: int, grader: dict[str, float], score: float) -> dict:
    """The submission's queued run taken and graded by the real worker path, scoring ``score``
    (at the clock's time): the run's row afterwards."""
    grader["score"] = score

    def queued(session: Any) -> int:
        return session.execute(select(GradingRun.id).where(
            GradingRun.submission_id == submission_id, GradingRun.state == "queued")
        ).scalar_one()

    run_id = in_session(app, queued)
    taken = take(app, run_id, "test:course-rules")
    assert (taken.run_id, taken.result) == (run_id, "graded")
    return in_session(app, lambda s: {
        "score": (run := s.get(GradingRun, run_id)).score, "finished_at": run.finished_at})


def row_of(app: Flask, student: str) -> GradeRow:
    def read(session: Any) -> GradeRow:
        return next(r for r in exercise_rows(session, EXERCISE)
                    if r.student.student_id == student)

    return in_session(app, read)


def created_at(app: Flask, submission_id: int) -> dt.datetime:
    return in_session(app, lambda s: s.get(Submission, submission_id).created_at)


# --- the dates' edges ---------------------------------------------------------------------------


def test_one_second_before_opens_is_refused_and_stores_nothing(app, tokens, clock):
    schedule(app, "--opens", OPENS, "--due", DUE, "--late-until", LATE_UNTIL)
    clock.at(OPENS, -SECOND)
    before = stored(app)
    refusal = send(app, tokens, key="first-try")
    assert_refused(refusal, 403, "not_open", "2026-12-01 09:00 JST")
    assert stored(app) == before == (0, 0, 0, 0)  # no row, no run, no key, no file

    clock.at(OPENS)
    at_opening = accepted(send(app, tokens, key="first-try"))  # the key was not kept
    clock.at(OPENS, SECOND)
    after = accepted(send(app, tokens))
    assert created_at(app, at_opening) == parse_time(OPENS)
    assert created_at(app, after) == parse_time(OPENS) + SECOND
    assert stored(app) == (2, 2, 1, 2)


def test_one_second_before_due_is_on_time_and_one_after_is_late(app, tokens, clock, grader):
    schedule(app, "--due", DUE, "--late-until", LATE_UNTIL, "--late-penalty", "100%",
             "--counts", "last")
    clock.at(DUE, -SECOND)
    early = accepted(send(app, tokens, "alice"))
    clock.at(DUE)
    at_due = accepted(send(app, tokens, "alice"))
    clock.at(DUE, SECOND)
    late = accepted(send(app, tokens, "bob"))
    clock.at(DUE, dt.timedelta(hours=2))
    for submission_id in (early, at_due, late):
        grade(app, submission_id, grader, 50.0)

    alice, bob = row_of(app, "alice"), row_of(app, "bob")
    assert alice.counted.submission.id == at_due  # counts last: the one at the due second
    assert (alice.late, alice.grade.window, alice.raw, alice.grade.penalty, alice.final) == (
        False, Window.ON_TIME, 50.0, 0.0, 50.0)
    assert (bob.late, bob.grade.window, bob.raw, bob.grade.penalty, bob.final) == (
        True, Window.LATE, 50.0, 50.0, 0.0)
    assert created_at(app, late) - created_at(app, at_due) == SECOND


def test_one_second_after_late_until_is_refused_and_stores_nothing(app, tokens, clock):
    schedule(app, "--due", DUE, "--late-until", LATE_UNTIL)
    clock.at(LATE_UNTIL, -SECOND)
    accepted(send(app, tokens))
    clock.at(LATE_UNTIL)
    last_moment = accepted(send(app, tokens))
    assert created_at(app, last_moment) == parse_time(LATE_UNTIL)
    before = stored(app)
    clock.at(LATE_UNTIL, SECOND)
    assert_refused(send(app, tokens, key="too-late"), 403, "closed", "2026-12-26 23:59 JST")
    assert_refused(send(app, tokens, "bob"), 403, "closed")
    assert stored(app) == before == (2, 2, 0, 2)


def test_without_late_until_the_due_time_closes(app, tokens, clock):
    schedule(app, "--due", DUE)
    clock.at(DUE)
    accepted(send(app, tokens))
    clock.at(DUE, SECOND)
    assert_refused(send(app, tokens), 403, "closed", "2026-12-24 23:59 JST")
    assert stored(app)[0] == 1


# --- the submission's time is the acknowledgement's ---------------------------------------------


def test_acknowledged_before_due_and_graded_after_is_on_time(app, tokens, clock, grader):
    schedule(app, "--due", DUE, "--late-until", LATE_UNTIL, "--late-penalty", "100%")
    clock.at(DUE, -SECOND)
    submission_id = accepted(send(app, tokens))
    clock.at(DUE, dt.timedelta(hours=1))  # the queue was long
    run = grade(app, submission_id, grader, 80.0)

    assert run["finished_at"] == parse_time(DUE) + dt.timedelta(hours=1)
    assert created_at(app, submission_id) == parse_time(DUE) - SECOND
    row = row_of(app, "alice")
    assert row.counted.submission.id == submission_id
    assert (row.late, row.raw, row.grade.penalty, row.final) == (False, 80.0, 0.0, 80.0)


def test_a_regrade_after_the_close_keeps_the_submission_time_and_stays_on_time(
        app, tokens, clock, grader):
    schedule(app, "--due", DUE, "--late-until", LATE_UNTIL, "--late-penalty", "100%")
    clock.at(DUE, -SECOND)
    submission_id = accepted(send(app, tokens))
    clock.at(DUE, dt.timedelta(minutes=5))
    grade(app, submission_id, grader, 80.0)

    clock.at(LATE_UNTIL, dt.timedelta(days=2))  # the class is closed: uploads are refused...
    assert_refused(send(app, tokens), 403, "closed")
    with app.app_context():  # ...but the instructor regrades (the grader had a bug)
        submissions.regrade(db.session.get(Submission, submission_id))
    regraded = grade(app, submission_id, grader, 30.0)

    assert regraded["finished_at"] > parse_time(LATE_UNTIL)
    assert created_at(app, submission_id) == parse_time(DUE) - SECOND
    row = row_of(app, "alice")
    assert row.counted.submission.id == submission_id and row.attempts == 1
    assert (row.late, row.grade.window, row.raw, row.grade.penalty, row.final) == (
        False, Window.ON_TIME, 30.0, 0.0, 30.0)  # the regrade replaces the score, not the time


# --- extensions ---------------------------------------------------------------------------------


def test_an_extension_lets_one_student_in_after_the_class_closed(app, tokens, clock, grader):
    schedule(app, "--due", DUE, "--late-until", LATE_UNTIL, "--late-penalty", "100%")
    grant(app, "alice", "--due", "2026-12-31T23:59:59+09:00")  # late window: two days, hers
    clock.at(LATE_UNTIL, dt.timedelta(days=1))
    before = stored(app)
    assert_refused(send(app, tokens, "bob"), 403, "closed", "2026-12-26 23:59 JST")
    assert stored(app) == before
    mine = accepted(send(app, tokens, "alice"))
    grade(app, mine, grader, 70.0)
    alice = row_of(app, "alice")
    assert (alice.extended, alice.late, alice.final) == (True, False, 70.0)
    assert row_of(app, "bob").extended is False

    clock.at("2027-01-02T23:59:59+09:00", SECOND)  # after her own late-until
    assert_refused(send(app, tokens, "alice"), 403, "closed", "2027-01-02 23:59 JST")
    assert stored(app)[0] == 1


# --- the daily limit ----------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "second_accepted"), [("Asia/Tokyo", True), ("UTC", False)])
def test_attempts_per_day_count_days_in_the_course_zone(app, tokens, clock, zone: str,
                                                       second_accepted: bool):
    """23:59:59 and 00:00:00 JST are two days in Tokyo, one UTC day (14:59:59Z, 15:00:00Z)."""
    schedule(app, "--attempts-per-day", "1", "--timezone", zone)
    clock.at("2026-12-10T23:59:59+09:00")
    accepted(send(app, tokens))
    clock.at("2026-12-11T00:00:00+09:00")
    assert clock.now.date() == dt.date(2026, 12, 10)  # the same UTC day
    if second_accepted:
        accepted(send(app, tokens))
        clock.at("2026-12-11T00:00:01+09:00")
    before = stored(app)
    assert_refused(send(app, tokens), 429, "daily_limit", "1", zone)
    assert stored(app) == before  # nothing stored: no row, no run, no file
    accepted(send(app, tokens, "bob"))  # the limit is each student's


def test_an_extension_gives_extra_attempts_to_its_student_only(app, tokens, clock):
    schedule(app, "--due", DUE, "--attempts-per-day", "2")
    grant(app, "alice", "--due", DUE, "--extra-attempts", "1")
    clock.at("2026-12-15T10:00:00+09:00")
    for _ in range(3):
        accepted(send(app, tokens, "alice"))
    for _ in range(2):
        accepted(send(app, tokens, "bob"))
    before = stored(app)
    assert_refused(send(app, tokens, "alice", key="fourth"), 429, "daily_limit", "3")
    assert_refused(send(app, tokens, "bob"), 429, "daily_limit", "2")
    assert stored(app) == before
    clock.at("2026-12-16T00:00:00+09:00")  # a new day in Tokyo
    accepted(send(app, tokens, "alice", key="fourth"))


# --- the API documents the refusals ------------------------------------------------------------


def test_the_refusals_are_documented_and_match_the_openapi_document(app, tokens, clock):
    document = app.test_client().get("/api/openapi.json").get_json()
    responses = document["paths"]["/api/submissions"]["post"]["responses"]
    assert {"not_open", "closed"} <= set(re.findall(r"`(\w+)`", responses["403"]["description"]))
    assert "daily_limit" in re.findall(r"`(\w+)`", responses["429"]["description"])
    schema = {**responses["403"]["content"]["application/json"]["schema"],
              "components": document["components"]}
    assert schema == {**responses["429"]["content"]["application/json"]["schema"],
                      "components": document["components"]}

    schedule(app, "--opens", OPENS, "--due", DUE, "--attempts-per-day", "1")
    clock.at(OPENS, -SECOND)
    answers = [send(app, tokens)]
    clock.at(OPENS)
    accepted(send(app, tokens))
    answers.append(send(app, tokens))
    clock.at(DUE, SECOND)
    answers.append(send(app, tokens))
    assert [(a.status_code, a.get_json()["error"]) for a in answers] == [
        (403, "not_open"), (429, "daily_limit"), (403, "closed")]
    for answer in answers:
        errors = list(Draft202012Validator(schema).iter_errors(answer.get_json()))
        assert not errors, [e.message for e in errors]


# --- the "Done when", set up from the command line ---------------------------------------


def test_done_when_a_late_upload_is_kept_at_zero_and_one_after_late_until_refused(
        app, tokens, clock, grader):
    result = app.test_cli_runner().invoke(args=[
        "schedule", "set", EXERCISE, "--due", DUE, "--late-until", LATE_UNTIL,
        "--late-penalty", "100%"])
    assert result.exit_code == 0, result.output

    clock.at(DUE, -dt.timedelta(hours=3))
    on_time = accepted(send(app, tokens, "alice"))
    grade(app, on_time, grader, 60.0)
    clock.at(DUE, dt.timedelta(hours=5))
    late = accepted(send(app, tokens, "alice"))  # better work, but late: kept, worth nothing
    grade(app, late, grader, 90.0)
    only_late = accepted(send(app, tokens, "bob"))
    grade(app, only_late, grader, 80.0)

    with app.app_context():
        dates = load_rules(db.session, EXERCISE).dates
    assert dates.window(created_at(app, late)) is Window.LATE  # stored, and late
    alice, bob = row_of(app, "alice"), row_of(app, "bob")
    assert alice.attempts == 2 and alice.counted.submission.id == on_time
    assert (alice.late, alice.raw, alice.grade.penalty, alice.final) == (False, 60.0, 0.0, 60.0)
    assert bob.counted.submission.id == only_late
    assert (bob.late, bob.raw, bob.grade.penalty, bob.final) == (True, 80.0, 80.0, 0.0)

    clock.at(LATE_UNTIL, SECOND)
    before = stored(app)
    assert_refused(send(app, tokens, "alice"), 403, "closed", "2026-12-26 23:59 JST")
    assert stored(app) == before
    assert row_of(app, "alice").final == 60.0
