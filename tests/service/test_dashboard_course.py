"""The dashboard's course rules (issue 18) through Flask's test client, on SQLite and
PostgreSQL (the fixtures of ``tests/service/test_dashboard.py``): an exercise's schedule, publishing,
extensions (one by one, from a CSV, revoked), the class table's gradebook columns, a student's
dates, figures, adjustments and their audit trail, and the course gradebook. Every form changes
the database when it should, and nothing when it refuses (400, the message shown); the CSRF
token is required; a student's session reaches none of it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.domain import schedules
from service.domain.roster import import_roster
from service.extensions import db
from service.models import Adjustment, ExtensionGrant, Schedule, utcnow
from tests.service import test_dashboard as base
from tests.service.test_dashboard import (
    EXERCISE,
    ROSTER,
    AppFactory,
    add_instructor,
    add_submission,
    csrf_token_of,
    graded,
    table_ids,
    table_row,
    text_of,
)

# The dashboard tests' fixtures over tests/service/conftest.py's factory: CSRF off, the class of
# test_dashboard's roster, a logged-in instructor.
app_config, app, staff = base.app_config, base.app, base.staff

RULES = f"/dashboard/{EXERCISE}/rules"
UTC = dt.UTC


def schedule_form(**fields: str) -> dict[str, str]:
    """The schedule form as the page sends it, Tokyo time, with ``fields`` changed."""
    form = {"timezone": "Asia/Tokyo", "opens": "", "due": "2026-12-24T23:59",
            "late_until": "2026-12-26T23:59", "late_penalty": "10%/day", "counts": "last",
            "attempts_per_day": "3", "weight": "2", "release_score": "always",
            "release_feedback": "after_due", "release_test_accuracy": "always",
            "release_holdout_accuracy": "on_publish"}
    form.update(fields)
    return form


def schedule_row(app: Flask) -> tuple | None:
    with app.app_context():
        row = db.session.get(Schedule, EXERCISE)
        if row is None:
            return None
        return (row.opens_at, row.due_at, row.late_until, row.late_penalty, row.counts,
                row.attempts_per_day, row.timezone, row.weight, dict(row.release or {}),
                row.published_at, row.updated_by)


def count(app: Flask, model: type) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def iso(moment: dt.datetime) -> str:
    """A naive UTC time as ISO 8601 with its offset."""
    return moment.replace(tzinfo=UTC).isoformat()


def set_rules(app: Flask, **change: str) -> None:
    with app.app_context():
        schedules.set_schedule(db.session, EXERCISE, schedules.ScheduleChange(**change), "test")


# --- the schedule ------------------------------------------------------------------------------


def test_the_schedule_form_reads_local_times_in_its_zone_and_stores_utc(
        app: Flask, staff: FlaskClient):
    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    assert 'id="rules"' in page and "Course rules" in page and "no due time" in page
    saved = staff.post(RULES, data=schedule_form())
    assert saved.status_code == 303 and saved.location == f"/dashboard/{EXERCISE}#rules"
    (opens, due, late_until, penalty, counts, daily, zone, weight, release, published,
     author) = schedule_row(app)
    assert opens is None
    assert due == dt.datetime(2026, 12, 24, 14, 59)  # 23:59 in Tokyo is 14:59 UTC
    assert late_until == dt.datetime(2026, 12, 26, 14, 59)
    assert (penalty, counts, daily, zone, weight) == ("10%/day", "last", 3, "Asia/Tokyo", 2.0)
    assert release == {"score": "always", "feedback": "after_due", "test_accuracy": "always",
                       "holdout_accuracy": "on_publish"}
    assert (published, author) == (None, "teacher")

    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    assert "The course rules were saved." in page
    assert re.search(r'id="rules-due">2026-12-24 23:59 JST<', page)  # shown in its zone
    assert 'name="due" type="datetime-local" value="2026-12-24T23:59"' in page
    assert "<code>10%/day</code>" in page and "when published" in page

    # The same wall-clock time in another zone is another instant.
    assert staff.post(RULES, data=schedule_form(timezone="Europe/Paris")).status_code == 303
    assert schedule_row(app)[1] == dt.datetime(2026, 12, 24, 22, 59)
    # Emptied dates are removed.
    assert staff.post(RULES, data=schedule_form(due="", late_until="")).status_code == 303
    assert schedule_row(app)[1:3] == (None, None)


@pytest.mark.parametrize("fields, message", [
    ({"late_until": "2026-12-20T10:00"}, "late-until must not be before due"),
    ({"opens": "2026-12-25T00:00"}, "opens must be before due"),
    ({"late_penalty": "ten percent"}, "late penalty &#39;ten percent&#39; not understood"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"due": "24/12/2026 23:59"}, "not a date and time"),
    ({"attempts_per_day": "0"}, "attempts per day must be at least 1"),
    ({"weight": "-1"}, "weight must be between 0 and 1000"),
    ({"counts": "worst"}, "The form is incomplete"),
    ({"release_score": "sometimes"}, "The form is incomplete"),
])
def test_a_refused_schedule_changes_nothing_and_shows_the_form_again(
        app: Flask, staff: FlaskClient, fields: dict[str, str], message: str):
    assert staff.post(RULES, data=schedule_form()).status_code == 303
    before = schedule_row(app)
    refused = staff.post(RULES, data=schedule_form(**fields))
    page = text_of(refused)
    assert refused.status_code == 400
    assert "Nothing was changed:" in page and message.lower() in page.lower(), page[:3000]
    assert schedule_row(app) == before
    typed = next(iter(fields.items()))
    if typed[0] not in ("counts",) and not typed[0].startswith("release"):
        assert f'name="{typed[0]}"' in page and f'value="{typed[1]}"' in page  # as typed
    assert '<details class="rules-edit" open>' in page


def test_publish_and_unpublish(app: Flask, staff: FlaskClient):
    assert "not published" in text_of(staff.get(f"/dashboard/{EXERCISE}"))
    before = utcnow()
    published = staff.post(f"/dashboard/{EXERCISE}/publish", data={"published": "1"})
    assert published.status_code == 303
    moment = schedule_row(app)[9]
    assert moment is not None and before - dt.timedelta(seconds=1) <= moment <= utcnow()
    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    assert "The results were published." in page and "Unpublish" in page
    assert staff.post(f"/dashboard/{EXERCISE}/publish", data={"published": "0"}
                      ).status_code == 303
    assert schedule_row(app)[9] is None
    assert staff.post(f"/dashboard/{EXERCISE}/publish", data={"published": "yes"}
                      ).status_code == 400


# --- extensions --------------------------------------------------------------------------------


def test_an_extension_is_granted_in_the_schedules_zone_listed_and_revoked(
        app: Flask, staff: FlaskClient):
    set_rules(app, due="2026-12-24T23:59:00+09:00", timezone="Asia/Tokyo")
    granted = staff.post(f"/dashboard/{EXERCISE}/extensions", data={
        "student_id": "s002", "due": "2026-12-31T12:00", "late_until": "2027-01-02T12:00",
        "extra_attempts": "2", "comment": "illness (certificate seen)"})
    assert granted.status_code == 303
    with app.app_context():
        grant = db.session.execute(select(ExtensionGrant)).scalar_one()
        assert (grant.student.student_id, grant.due_at, grant.late_until, grant.extra_attempts,
                grant.comment, grant.granted_by) == (
            "s002", dt.datetime(2026, 12, 31, 3, 0), dt.datetime(2027, 1, 2, 3, 0), 2,
            "illness (certificate seen)", "teacher")
    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    listing = page[page.index('class="grid extensions-table"'):]
    assert "s002" in listing and "2026-12-31 12:00 JST" in listing
    assert "illness (certificate seen)" in listing
    assert 'class="badge badge-extended"' in table_row(page, "s002")
    assert "badge-extended" not in table_row(page, "s001")

    # Without its own late-until, the class's late window (two days) follows the own due time.
    set_rules(app, late_until="2026-12-26T23:59:00+09:00")
    assert staff.post(f"/dashboard/{EXERCISE}/extensions", data={
        "student_id": "s003", "due": "2026-12-28T09:00", "late_until": "",
        "extra_attempts": "0", "comment": ""}).status_code == 303
    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    listing = page[page.index('class="grid extensions-table"'):]
    s003 = listing[listing.index("s003</a>"):]
    assert "2026-12-30 09:00 JST <span" in s003[:s003.index("</tr>")]
    assert "the class's late window" in s003[:s003.index("</tr>")]
    assert staff.post(f"/dashboard/{EXERCISE}/extensions/s003/revoke").status_code == 303

    revoke = f"/dashboard/{EXERCISE}/extensions/s002/revoke"
    assert staff.post(revoke).status_code == 303
    assert count(app, ExtensionGrant) == 0
    assert staff.post(revoke).status_code == 404  # nothing left to revoke
    assert staff.post(f"/dashboard/{EXERCISE}/extensions/nobody/revoke").status_code == 404


@pytest.mark.parametrize("fields, message", [
    ({"student_id": "s999"}, "no student &#39;s999&#39; on the roster"),
    ({"late_until": "2026-12-30T00:00"}, "late-until must not be before due"),
    ({"due": ""}, "a student id and a due time are required"),
    ({"due": "tomorrow"}, "not a date and time"),
    ({"extra_attempts": "-1"}, "extra attempts must be a whole number"),
])
def test_a_refused_extension_stores_nothing(app: Flask, staff: FlaskClient,
                                            fields: dict[str, str], message: str):
    form = {"student_id": "s002", "due": "2026-12-31T12:00", "late_until": "",
            "extra_attempts": "0", "comment": ""}
    refused = staff.post(f"/dashboard/{EXERCISE}/extensions", data={**form, **fields})
    assert refused.status_code == 400
    page = text_of(refused)
    assert message in page and '<details class="ext-grant" open>' in page
    assert count(app, ExtensionGrant) == 0


def upload(client: FlaskClient, text: str):
    return client.post(f"/dashboard/{EXERCISE}/extensions/import",
                       data={"file": (io.BytesIO(text.encode("utf-8-sig")), "ext.csv")},
                       content_type="multipart/form-data")


def test_extensions_import_from_csv_all_or_nothing(app: Flask, staff: FlaskClient):
    header = "student_id,exercise,due,late_until,extra_attempts,comment\n"
    bad = (header + f"s001,{EXERCISE},2026-12-31T23:59:00+09:00,,1,ok\n"
           f"s002,{EXERCISE},2026-12-31T23:59:00,,0,no offset\n")
    refused = upload(staff, bad)
    assert refused.status_code == 400 and "line 3" in text_of(refused)
    assert count(app, ExtensionGrant) == 0  # the good first line was not kept either
    assert upload(staff, "name,when\nx,y\n").status_code == 400
    missing = staff.post(f"/dashboard/{EXERCISE}/extensions/import", data={},
                         content_type="multipart/form-data")
    assert missing.status_code == 400 and "choose a CSV file" in text_of(missing)

    good = (header + f"s001,{EXERCISE},2026-12-31T23:59:00+09:00,,1,ok\n"
            f"s003,{EXERCISE},2027-01-05T00:00:00Z,2027-01-06T00:00:00Z,0,\n")
    done = upload(staff, good)
    assert done.status_code == 303
    with app.app_context():
        rows = {(g.student.student_id, g.due_at, g.late_until) for g in
                db.session.execute(select(ExtensionGrant)).scalars()}
    assert rows == {("s001", dt.datetime(2026, 12, 31, 14, 59), None),
                    ("s003", dt.datetime(2027, 1, 5), dt.datetime(2027, 1, 6))}
    assert "2 extensions imported." in text_of(staff.get(f"/dashboard/{EXERCISE}"))


# --- the class table reads the gradebook --------------------------------------------------------


@pytest.fixture
def course(app: Flask) -> dict[str, int]:
    """Due 90 minutes ago, late work until an hour from now at 50%; s001 handed in 80 late;
    s002 handed in 70 at the same time but has an extension (on time); s003 handed in 50 on
    time; s004 nothing."""
    now = utcnow().replace(microsecond=0)
    set_rules(app, due=iso(now - dt.timedelta(minutes=90)),
              late_until=iso(now + dt.timedelta(hours=1)), late_penalty="50%",
              timezone="Asia/Tokyo")
    with app.app_context():
        schedules.grant_extension(db.session, "s002", EXERCISE,
                                  iso(now + dt.timedelta(days=2)), None, "test")
    return {"s001": add_submission(app, "s001", graded(80), minutes_ago=60),
            "s002": add_submission(app, "s002", graded(70), minutes_ago=60),
            "s003": add_submission(app, "s003", graded(50), minutes_ago=120)}


def test_the_class_table_shows_raw_penalty_adjustment_and_final(
        app: Flask, staff: FlaskClient, course: dict[str, int]):
    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    assert "Penalty" in page and "Raw" in page and ">Adjustment<" not in page  # none yet
    s001 = table_row(page, "s001")
    assert '<td class="num raw">80</td>' in s001 and '<td class="num penalty">−40</td>' in s001
    assert 'class="badge badge-late"' in s001 and f'{course["s001"]}">40</a>' in s001
    s002 = table_row(page, "s002")
    assert '<td class="num penalty">–</td>' in s002 and ">70</a>" in s002
    assert "badge-late" not in s002 and "badge-extended" in s002
    assert '<td class="num raw">–</td>' in table_row(page, "s004")

    with app.app_context():
        from service.domain.adjustments import AdjustMode, adjust
        adjust(db.session, "s003", EXERCISE, 100.0, [], AdjustMode.ADD, 5, "bonus", "t")
    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    s003 = table_row(page, "s003")
    assert '<td class="num adjustment">+5</td>' in s003 and ">55</a>" in s003
    assert '<td class="num adjustment">–</td>' in table_row(page, "s001")
    # sorting by the new columns (rows without a value last)
    by_penalty = text_of(staff.get(f"/dashboard/{EXERCISE}?sort=penalty&order=desc"))
    assert table_ids(by_penalty) == ["s001", "s002", "s003", "s004"]
    by_raw = text_of(staff.get(f"/dashboard/{EXERCISE}?sort=raw"))
    assert table_ids(by_raw) == ["s003", "s002", "s001", "s004"]
    by_final = text_of(staff.get(f"/dashboard/{EXERCISE}?sort=final"))
    assert table_ids(by_final) == ["s001", "s003", "s002", "s004"]
    below = text_of(staff.get(f"/dashboard/{EXERCISE}?below=50"))
    assert table_ids(below) == ["s001", "s004"]


def test_the_submissions_chart_draws_the_due_time(app: Flask, staff: FlaskClient,
                                                   course: dict[str, int]):
    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    chart = page[page.index('id="plot-submissions"'):]
    chart = chart[:chart.index("</figure>")]
    with app.app_context():
        due = db.session.get(Schedule, EXERCISE).due_at
    assert f"Deadline {due:%Y-%m-%d %H:%M}" in chart


def test_the_csv_of_the_exercise_exports_the_final(staff: FlaskClient, course: dict[str, int]):
    text = text_of(staff.get(f"/dashboard/{EXERCISE}/grades.csv")).lstrip("\ufeff")
    scores = {row["student_id"]: row["score"] for row in csv.DictReader(io.StringIO(text))}
    assert scores == {"s001": "40", "s002": "70", "s003": "50", "s004": ""}


# --- one student ---------------------------------------------------------------------------------


def test_the_student_page_shows_dates_figures_and_the_counted_submission(
        app: Flask, staff: FlaskClient, course: dict[str, int]):
    early = add_submission(app, "s001", graded(30), minutes_ago=100)  # on time, 30
    page = text_of(staff.get("/dashboard/students/s001"))
    section = page[page.index(f'id="exercise-{EXERCISE}"'):]
    assert "the class's" in section and "JST" in section
    assert '<td class="num raw">80</td>' in section and '<td class="num penalty">40</td>' in section
    assert '<td class="num strong final">40</td>' in section  # 80 late at 50% beats 30
    counted = section[section.index('<td class="counted">'):]
    assert f'#{course["s001"]}</a> <span class="badge badge-late">' in counted
    row = section[section.index(f'>#{course["s001"]}</a>'):]
    assert "badge-late" in row[:row.index("</th>")]
    row = section[section.index(f'>#{early}</a>'):]
    assert "badge-late" not in row[:row.index("</th>")]
    extended = text_of(staff.get("/dashboard/students/s002"))
    assert 'class="badge badge-extended"' in extended


def test_an_adjustment_from_the_student_page_is_stored_and_its_trail_shown(
        app: Flask, staff: FlaskClient, course: dict[str, int]):
    path = "/dashboard/students/s003/adjust"
    form = {"exercise": EXERCISE, "target": "", "mode": "add", "points": "7.5",
            "comment": "found a grader bug"}
    assert staff.post(path, data=form).status_code == 303
    assert staff.post(path, data={**form, "mode": "set", "points": "60",
                                  "comment": "regraded by hand"}).status_code == 303
    assert staff.post(path, data={**form, "target": "conv2", "points": "2",
                                  "comment": "partial credit"}).status_code == 303
    with app.app_context():
        trail = [(a.item_id, a.mode, a.points, a.before, a.after, a.author, a.comment)
                 for a in db.session.execute(select(Adjustment).order_by(Adjustment.id)).scalars()]
    assert trail == [
        (None, "add", 7.5, 50.0, 57.5, "teacher", "found a grader bug"),
        (None, "set", 60.0, 57.5, 60.0, "teacher", "regraded by hand"),
        ("conv2", "add", 2.0, 60.0, 60.0, "teacher", "partial credit"),  # the total set wins
    ]
    page = text_of(staff.get("/dashboard/students/s003"))
    assert '<td class="num strong final">60</td>' in page
    history = page[page.index('class="grid trail"'):]
    for text in ("found a grader bug", "regraded by hand", "partial credit", "teacher",
                 "50 → 57.5", "57.5 → 60", "60 → 60", "conv2"):
        assert text in history, text
    assert history.index("partial credit") < history.index("found a grader bug")  # newest first
    table = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    assert '<td class="num adjustment">+10</td>' in table_row(table, "s003")

    assert staff.post(path, data={**form, "target": "", "mode": "remove", "points": "",
                                  "comment": "back to the grader"}).status_code == 303
    with app.app_context():  # the item adjustment is in force again: 50 + 2
        last = db.session.execute(select(Adjustment).order_by(Adjustment.id.desc())).scalars()
        assert next(last).after == 52.0


@pytest.mark.parametrize("fields, message", [
    ({"comment": ""}, "an adjustment needs a comment"),
    ({"comment": "   "}, "an adjustment needs a comment"),
    ({"target": "conv99"}, "unknown item &#39;conv99&#39;"),
    ({"mode": "set", "points": "-3"}, "a score cannot be set below 0"),
    ({"points": "lots"}, "points must be a number"),
    ({"points": "nan"}, "points must be a number"),
    ({"mode": "double"}, "the form is incomplete"),
])
def test_a_refused_adjustment_stores_nothing(app: Flask, staff: FlaskClient,
                                             course: dict[str, int], fields: dict[str, str],
                                             message: str):
    form = {"exercise": EXERCISE, "target": "", "mode": "add", "points": "5",
            "comment": "bonus"}
    refused = staff.post("/dashboard/students/s003/adjust", data={**form, **fields})
    assert refused.status_code == 400
    page = text_of(refused)
    assert "The adjustment was not recorded:" in page and message in page
    assert count(app, Adjustment) == 0
    assert staff.post("/dashboard/students/s003/adjust",
                      data={**form, "exercise": "no_such"}).status_code == 404
    assert staff.post("/dashboard/students/nobody/adjust", data=form).status_code == 404


# --- the course gradebook -----------------------------------------------------------------------


def test_the_course_gradebook_has_a_column_per_exercise_the_weights_and_the_total(
        app: Flask, staff: FlaskClient, course: dict[str, int]):
    set_rules(app, weight="3")
    others = [e for e in app.config["GRADER"].exercise_ids() if e != EXERCISE]
    with app.app_context():  # the course's other exercises do not count (yet): weight 0
        for other in others:
            schedules.set_schedule(db.session, other, schedules.ScheduleChange(weight="0"), "t")
    index = text_of(staff.get("/dashboard/"))
    assert 'href="/dashboard/gradebook"' in index
    page = text_of(staff.get("/dashboard/gradebook"))
    assert "Course gradebook" in page and "weight 3, 100 points" in page
    head = page[page.index("<thead>"):page.index("</thead>")]
    assert all(exercise in head for exercise in [EXERCISE, *others])  # a column each
    assert head.count("weight 0,") == len(others)
    body = page[page.index("<tbody>"):]
    s001 = body[body.index("/students/s001"):]
    s001 = s001[:s001.index("</tr>")]
    assert '<td class="num">40 <span class="badge badge-late">' in s001
    assert '<td class="num strong total">40</td>' in s001  # the one counted exercise's share
    s004 = body[body.index("/students/s004"):]
    assert '<td class="num strong total">0</td>' in s004[:s004.index("</tr>")]
    for fmt in ("plain", "canvas"):
        assert f'href="/dashboard/gradebook.csv?format={fmt}"' in page
        response = staff.get(f"/dashboard/gradebook.csv?format={fmt}")
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        text = text_of(response)
        assert text.startswith("\ufeff") and "s001" in text and EXERCISE in text
    assert staff.get("/dashboard/gradebook.csv?format=xlsx").status_code == 404
    assert (text_of(staff.get("/dashboard/students/s001")).count('id="course-total">40<')
            == 1)


# --- who may, and the CSRF token ----------------------------------------------------------------


def test_every_form_needs_the_csrf_token(make_app: AppFactory):
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        import_roster(ROSTER)
    add_instructor(app)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    token = csrf_token_of(text_of(client.get("/dashboard/login")))
    assert client.post("/dashboard/login", data={
        "username": "teacher", "password": base.PASSWORD, "csrf_token": token}).status_code == 303
    posts = [
        (RULES, schedule_form()),
        (f"/dashboard/{EXERCISE}/publish", {"published": "1"}),
        (f"/dashboard/{EXERCISE}/extensions", {"student_id": "s001", "due": "2026-12-31T12:00"}),
        ("/dashboard/students/s001/adjust", {"exercise": EXERCISE, "mode": "set",
                                             "points": "1", "comment": "x"}),
    ]
    for path, data in posts:
        assert client.post(path, data=data).status_code == 400, path
    assert schedule_row(app) is None
    assert count(app, ExtensionGrant) == count(app, Adjustment) == 0
    page_token = csrf_token_of(text_of(client.get(f"/dashboard/{EXERCISE}")))
    for path, data in posts:
        assert client.post(path, data={**data, "csrf_token": page_token}).status_code == 303, path
    assert schedule_row(app) is not None
    assert count(app, ExtensionGrant) == count(app, Adjustment) == 1
    revoke = f"/dashboard/{EXERCISE}/extensions/s001/revoke"
    assert client.post(revoke).status_code == 400 and count(app, ExtensionGrant) == 1
    assert client.post(revoke, data={"csrf_token": page_token}).status_code == 303


def test_a_student_session_reaches_none_of_it(app: Flask, course: dict[str, int]):
    with app.app_context():
        issued, _ = import_roster("student_id,name,email\ns009,Eve,\n")
    student = app.test_client()
    student.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert student.post("/login", data={"token": issued[0].token}).status_code == 303
    for path in (RULES, "/dashboard/gradebook", "/dashboard/gradebook.csv",
                 "/dashboard/students/s001"):
        assert student.get(path).status_code == 403, path
    before = schedule_row(app)
    for path, data in [
            (RULES, schedule_form()), (f"/dashboard/{EXERCISE}/publish", {"published": "1"}),
            (f"/dashboard/{EXERCISE}/extensions", {"student_id": "s009",
                                                   "due": "2030-01-01T00:00"}),
            (f"/dashboard/{EXERCISE}/extensions/s002/revoke", {}),
            (f"/dashboard/{EXERCISE}/extensions/import", {}),
            ("/dashboard/students/s009/adjust", {"exercise": EXERCISE, "mode": "set",
                                                 "points": "100", "comment": "me"})]:
        assert student.post(path, data=data).status_code == 403, path
    assert schedule_row(app) == before
    assert count(app, ExtensionGrant) == 1 and count(app, Adjustment) == 0
    anonymous = app.test_client().post(RULES, data=schedule_form())
    assert anonymous.status_code == 302 and "/dashboard/login" in anonymous.location
    assert schedule_row(app) == before


def test_the_course_rules_speak_japanese(app: Flask, staff: FlaskClient,
                                         course: dict[str, int]):
    ja = {"Accept-Language": "ja"}
    page = text_of(staff.get(f"/dashboard/{EXERCISE}", headers=ja))
    for text in ("成績のルール", "個別の締切延長", "遅延減点", "延長", "結果を公開する", "締切の後"):
        assert text in page, text
    assert "Course rules" not in page and "Extensions" not in page
    student = text_of(staff.get("/dashboard/students/s001", headers=ja))
    assert "得点の調整" in student and "採用された提出" in student
    assert "成績一覧" in text_of(staff.get("/dashboard/gradebook", headers=ja))


def test_a_refusal_is_shown_in_the_instructors_language(app: Flask, staff: FlaskClient,
                                                        course: dict[str, int]):
    """The rules' refusals (``RulesError``) are shown in the page's language: the schedule, a
    CSV line (the line's reason inside it in Japanese too) and an adjustment."""
    assert staff.get(f"/dashboard/{EXERCISE}?lang=ja").status_code == 200  # remembered
    refused = staff.post(RULES, data=schedule_form(late_until="2026-12-20T10:00"))
    page = text_of(refused)
    assert refused.status_code == 400
    assert "遅延提出の受付終了を締切より前にはできません" in page
    assert "late-until must not be before due" not in page

    header = "student_id,exercise,due,late_until,extra_attempts,comment\n"
    csv_refused = text_of(upload(staff, header + "s001,chap99,2026-12-31T23:59:00Z,,0,\n"))
    assert "2 行目: 課題 &#39;chap99&#39; は存在しません" in csv_refused
    assert "unknown exercise" not in csv_refused

    adjusted = staff.post("/dashboard/students/s003/adjust", data={
        "exercise": EXERCISE, "target": "", "mode": "add", "points": "5", "comment": ""})
    assert adjusted.status_code == 400
    assert "得点の調整にはコメントが必要です" in text_of(adjusted)

    # Back in English, the same refusal is English again.
    assert staff.get(f"/dashboard/{EXERCISE}?lang=en").status_code == 200
    english = text_of(staff.post(RULES, data=schedule_form(late_until="2026-12-20T10:00")))
    assert "late-until must not be before due" in english and "締切より前" not in english


def test_the_exercise_page_lists_a_few_extensions_and_links_to_all(
        app: Flask, staff: FlaskClient, monkeypatch: pytest.MonkeyPatch):
    """Every extension listed carries a revoke form: the page lists the first few (by student
    id) and links to the whole list, so a class full of extensions keeps the page small."""
    from service.views.dashboard import pages

    monkeypatch.setattr(pages, "EXTENSIONS_SHOWN", 2)
    with app.app_context():
        for student_id in ("s001", "s002", "s003"):
            schedules.grant_extension(db.session, student_id, EXERCISE,
                                      "2027-01-05T00:00:00Z", None, "teacher")
    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    listing = page[page.index('class="grid extensions-table"'):page.index("</table>",
                   page.index('class="grid extensions-table"'))]
    assert listing.count('class="inline revoke"') == 2 and ">s003</a>" not in listing
    assert "Show all 3 extensions" in page
    everything = text_of(staff.get(f"/dashboard/{EXERCISE}?extensions=all"))
    listing = everything[everything.index('class="grid extensions-table"'):]
    assert listing.count('class="inline revoke"') == 3 and "Show all" not in everything
