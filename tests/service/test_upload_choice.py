"""The upload form of a course of several exercises: it offers first the exercise the student
most likely hands in now (``likely_exercise``: open, closing first), says each one's state in
its option, and holds every exercise's own dates (the chosen one's shown), on SQLite and
PostgreSQL, through the real pages."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from service.domain import schedules
from service.domain.course_rules import Dates, LatePenalty
from service.domain.schedules import ScheduleChange
from service.domain.student_gradebook import OwnDates, likely_exercise
from service.extensions import db
from service.models import utcnow
from tests.courses import course_config

CNN, KERAS, NUMPY = "chap06_cnn", "chap07_keras_cnn", "chap04_numpy_mlp"
NOW = dt.datetime(2026, 12, 10, 3, 0)
DAY = dt.timedelta(days=1)


def own(opens: dt.datetime | None = None, due: dt.datetime | None = None,
        late_until: dt.datetime | None = None) -> OwnDates:
    dates = Dates(opens, due, late_until)
    return OwnDates(dates, False, "UTC", LatePenalty(), dates.window(NOW), None, None)


def test_the_likely_exercise_is_the_open_one_closing_first():
    assert likely_exercise({}) is None
    assert likely_exercise({"a": own(), "b": own()}) == "a"  # nothing closes: the first
    assert likely_exercise({"a": own(), "b": own(due=NOW + DAY)}) == "b"
    assert likely_exercise({"a": own(due=NOW + 2 * DAY), "b": own(due=NOW + DAY)}) == "b"
    closed = own(due=NOW - 2 * DAY, late_until=NOW - DAY)
    late = own(due=NOW - DAY, late_until=NOW + 3 * DAY)  # closes in three days
    assert likely_exercise({"a": closed, "b": late, "c": own(due=NOW + DAY)}) == "c"
    assert likely_exercise({"a": closed, "b": late}) == "b"
    soon, later = own(opens=NOW + DAY, due=NOW + 9 * DAY), own(opens=NOW + 2 * DAY)
    assert likely_exercise({"a": closed, "b": later, "c": soon}) == "c"  # none open: next
    assert likely_exercise({"a": closed, "b": closed}) == "a"


def iso(moment: dt.datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


def set_rules(app: Flask, exercise: str, **change: Any) -> None:
    with app.app_context():
        schedules.set_schedule(db.session, exercise, ScheduleChange(**change), "teacher")


def page_of(app: Flask, token: str, query: str = "") -> str:
    client: FlaskClient = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert client.post("/login", data={"token": token}).status_code == 303
    return client.get("/" + query).get_data(as_text=True)


def selected(page: str) -> str:
    found = re.findall(r'<option value="([^"]+)" selected>', page)
    assert len(found) == 1, found
    return found[0]


def option(page: str, exercise: str) -> str:
    match = re.search(rf'<option value="{exercise}"[^>]*>(.*?)</option>', page, re.S)
    assert match, exercise
    return " ".join(match.group(1).split())


def dates_block(page: str, exercise: str) -> str:
    """The exercise's dates, from its opening tag to its end."""
    start = page.index(f'<div class="own-dates" data-exercise="{exercise}"')
    return page[start:page.index("</div>", start)]


def test_the_form_offers_the_open_exercise_closing_first(
        make_app, tmp_path, tokens: dict[str, str]):
    app = make_app(WTF_CSRF_ENABLED=False,
                   GRADER=course_config(tmp_path / "course", NUMPY, CNN, KERAS))
    now = utcnow()
    set_rules(app, NUMPY, due=iso(now - 2 * DAY), late_until=iso(now - DAY))  # closed
    set_rules(app, CNN, due=iso(now + 5 * DAY))
    set_rules(app, KERAS, due=iso(now + 2 * DAY))
    page = page_of(app, tokens["alice"])
    assert selected(page) == KERAS
    assert option(page, NUMPY).endswith("(closed)")
    assert "(due " in option(page, CNN) and "(due " in option(page, KERAS)
    assert 'hidden' not in dates_block(page, KERAS).split(">")[0]
    assert 'hidden' in dates_block(page, CNN).split(">")[0]
    assert "Submissions for this exercise closed at" in dates_block(page, NUMPY)
    # A student with an extension of the closed one sees it first, with their own date.
    with app.app_context():
        schedules.grant_extension(db.session, "alice", NUMPY, iso(now + DAY), None, "teacher")
    alice = page_of(app, tokens["alice"])
    assert selected(alice) == NUMPY and "(due " in option(alice, NUMPY)
    assert "extended for you" in dates_block(alice, NUMPY)
    assert selected(page_of(app, tokens["bob"])) == KERAS
    # Asked for by name (a link, or the form again after a refusal), that one is chosen.
    assert selected(page_of(app, tokens["bob"], f"?exercise={CNN}")) == CNN
    assert selected(page_of(app, tokens["bob"], "?exercise=no_such")) == KERAS
    assert "受付終了" in page_of(app, tokens["bob"], "?lang=ja")  # the closed one, in Japanese
