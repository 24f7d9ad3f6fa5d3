"""An instructor sets the course's rules in a real browser against the real service, and the
gradebook CSV follows: a due time with a late penalty makes late work count less (or an earlier
on-time submission count instead), and an extension makes one student's late work on time again.

The class is written into the service's database the way the worker writes graded runs (as
``tests/browser/preview.py`` seeds its class), so no notebook is graded here; the service is one
of this module's own (``own_service``). Dates are typed into the page's ``datetime-local`` inputs
as local times of the course's zone (Asia/Tokyo), as an instructor in Tokyo would.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from service import create_app
from service.domain.roster import import_roster
from service.extensions import db
from service.models import GradingRun, ItemScore, Student, Submission, utcnow
from tests.browser.conftest import LiveService, run_service

pytestmark = pytest.mark.browser

EXERCISE = "chap06_cnn"
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_PASSWORD = "a new passphrase for the course"
ROSTER = "student_id,name,email\nb001,Aya Mori,aya@example.org\nb002,Ken Ueda,ken@example.org\n"


@pytest.fixture(scope="module")
def own_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A service of this module's own, in a course of one exercise (the course total below is
    that exercise's share)."""
    with run_service(tmp_path_factory.mktemp("own-service"), exercises=(EXERCISE,)) as service:
        yield service


def service_app(service: LiveService) -> Flask:
    """An app of this process on the live service's database (its SQLite file)."""
    root = service.log.parent
    return create_app({"TESTING": True, "SECRET_KEY": "browser-seed",
                       "SQLALCHEMY_DATABASE_URI": f"sqlite:///{root / 'g.db'}",
                       "UPLOAD_DIR": str(root / "up")})


def graded_submission(student: Student, created: dt.datetime, score: float) -> Submission:
    """A submission and its graded run, as the worker leaves them: ``score`` on conv1."""
    submission = Submission(student=student, exercise=EXERCISE, filename="hw.ipynb", size=1000,
                            notebook_sha256=hashlib.sha256(
                                f"{student.student_id}{created}".encode()).hexdigest(),
                            created_at=created)
    GradingRun(submission=submission, state="graded", outcome="graded", score=score,
               max_score=100.0, measured_accuracy=0.98, queued_at=created,
               started_at=created + dt.timedelta(seconds=20),
               finished_at=created + dt.timedelta(minutes=3),
               items=[ItemScore(position=0, item_id="conv1", score=score, max_score=100.0,
                                status="correct")])
    return submission


def seed(service: LiveService, now: dt.datetime) -> None:
    """b001: 60 three hours ago, 90 an hour ago; b002: 80 an hour ago."""
    app = service_app(service)
    with app.app_context():
        import_roster(ROSTER)
        students = {s.student_id: s for s in db.session.query(Student)}
        db.session.add_all([
            graded_submission(students["b001"], now - dt.timedelta(hours=3), 60.0),
            graded_submission(students["b001"], now - dt.timedelta(hours=1), 90.0),
            graded_submission(students["b002"], now - dt.timedelta(hours=1), 80.0)])
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def local_input(moment: dt.datetime) -> str:
    """A naive UTC time as a ``datetime-local`` value in Tokyo."""
    return moment.replace(tzinfo=dt.UTC).astimezone(TOKYO).strftime("%Y-%m-%dT%H:%M")


def download_scores(staff: Page) -> dict[str, str]:
    """The exercise's CSV through the page's link: student id -> score."""
    with staff.expect_download() as caught:
        staff.locator(".exports a").first.click()
    raw = Path(caught.value.path()).read_bytes()
    assert raw.startswith("\ufeff".encode())
    rows = csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
    return {row["student_id"]: row["score"] for row in rows}


def log_in_as_admin(staff: Page, service: LiveService) -> None:
    staff.goto(f"{service.url}/dashboard/login")
    staff.fill("#username", "admin")
    staff.fill("#password", service.admin_password)
    staff.click("main form button[type=submit]")
    expect(staff).to_have_url(re.compile(r"/dashboard/password$"))
    staff.fill("#current", service.admin_password)
    staff.fill("#new", NEW_PASSWORD)
    staff.fill("#repeat", NEW_PASSWORD)
    staff.click("main form button[type=submit]")
    expect(staff).to_have_url(re.compile(r"/dashboard/$"))


@pytest.mark.timeout(120)
def test_a_deadline_and_an_extension_change_the_csv(own_service: LiveService, new_page,
                                                    screenshots: Path):
    now = utcnow().replace(microsecond=0)
    seed(own_service, now)
    staff = new_page()
    log_in_as_admin(staff, own_service)
    staff.goto(f"{own_service.url}/dashboard/{EXERCISE}")
    # No rules yet: each student's best counts.
    assert download_scores(staff) == {"demo": "", "b001": "90", "b002": "80"}

    # The due time two hours ago, late work until tomorrow at half the points.
    rules = staff.locator("#rules")
    rules.locator("details.rules-edit summary").click()
    expect(staff.locator("#rules-timezone")).to_have_value("Asia/Tokyo")
    due = now - dt.timedelta(hours=2)
    staff.fill("#rules-due-at", local_input(due))
    staff.fill("#rules-late-until", local_input(now + dt.timedelta(days=1)))
    staff.fill("#rules-late-penalty", "50%")
    staff.screenshot(path=screenshots / "r01-rules-form.png", full_page=True)
    rules.locator("form.rules-form button[type=submit]").click()
    expect(staff).to_have_url(re.compile(rf"/dashboard/{EXERCISE}#rules$"))
    expect(staff.locator(".flash")).to_have_count(1)
    shown = due.replace(tzinfo=dt.UTC).astimezone(TOKYO)
    expect(staff.locator("#rules-due")).to_have_text(f"{shown:%Y-%m-%d %H:%M} JST")
    expect(staff.locator("#rules-penalty")).to_have_text("50%")
    b002 = staff.locator("table.class-table tbody tr", has=staff.locator("th", has_text="b002"))
    expect(b002.locator(".badge-late")).to_have_count(1)
    expect(b002.locator("td.penalty")).to_have_text("−40")
    staff.screenshot(path=screenshots / "r02-rules-saved.png", full_page=True)
    # b001's on-time 60 now beats 90 handed in late (45); b002's late 80 is worth 40.
    assert download_scores(staff) == {"demo": "", "b001": "60", "b002": "40"}

    # b002 gets a day more: their submission is on time again.
    extensions = staff.locator("#extensions")
    extensions.locator("details.ext-grant summary").click()
    staff.fill("#ext-student", "b002")
    staff.fill("#ext-due", local_input(now + dt.timedelta(days=1)))
    staff.fill("#ext-comment", "illness")
    extensions.locator("form.extension-form button[type=submit]").click()
    expect(staff).to_have_url(re.compile(rf"/dashboard/{EXERCISE}#rules$"))
    expect(staff.locator("table.extensions-table tbody tr")).to_have_count(1)
    expect(b002.locator(".badge-extended")).to_have_count(1)
    expect(b002.locator(".badge-late")).to_have_count(0)
    staff.screenshot(path=screenshots / "r03-extension.png", full_page=True)
    assert download_scores(staff) == {"demo": "", "b001": "60", "b002": "80"}

    # Revoked, the deadline holds for b002 again.
    staff.locator("form.revoke button[type=submit]").click()
    expect(staff.locator("table.extensions-table")).to_have_count(0)
    assert download_scores(staff) == {"demo": "", "b001": "60", "b002": "40"}

    # An adjustment on b001's page: five points for a grader bug, with the trail below.
    staff.locator("table.class-table tbody th a", has_text="b001").click()
    expect(staff).to_have_url(re.compile(r"/dashboard/students/b001$"))
    section = staff.locator(f"#exercise-{EXERCISE}")
    expect(section.locator("td.final")).to_have_text("60")
    section.locator("select[name=mode]").select_option("add")
    section.locator("input[name=points]").fill("5")
    section.locator("input[name=comment]").fill("grader bug in conv1")
    section.locator("form.adjust-form button[type=submit]").click()
    expect(staff).to_have_url(re.compile(rf"/dashboard/students/b001#exercise-{EXERCISE}$"))
    expect(section.locator("td.final")).to_have_text("65")
    trail = section.locator("table.trail tbody tr")
    expect(trail).to_have_count(1)
    expect(trail.first).to_contain_text("grader bug in conv1")
    expect(trail.first).to_contain_text("60 → 65")
    staff.screenshot(path=screenshots / "r04-student.png", full_page=True)

    # The course gradebook: one exercise of weight 1, so the total is b001's share in %.
    staff.locator("header nav a[href$='/dashboard/gradebook']").click()
    b001 = staff.locator("table.gradebook tbody tr", has=staff.locator("th", has_text="b001"))
    expect(b001.locator("td.total")).to_have_text("65")
    staff.screenshot(path=screenshots / "r05-gradebook.png", full_page=True)
    staff.goto(f"{own_service.url}/dashboard/{EXERCISE}")
    assert download_scores(staff) == {"demo": "", "b001": "65", "b002": "40"}

    assert staff.console_errors == [], staff.console_errors
    assert staff.failed_responses == [], staff.failed_responses
