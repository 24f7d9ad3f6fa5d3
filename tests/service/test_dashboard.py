"""The instructors' dashboard through Flask's test client, on a real SQLite file and on a real
PostgreSQL database (``tests/service/conftest.py``), migrated by Alembic (once per session,
then copied: ``tests/migrated.py``). No grading worker runs: runs are written in the database
with the fields the worker writes, and the tests read back what the pages, the CSV and the queue
say about them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from grader.config import PROJECT_ROOT
from service.__main__ import first_instructor
from service.blobs import FolderBlobStore
from service.domain.gradebook import SubmissionGrade, exercise_rows, grade_submission
from service.domain.instructors import authenticate, change_password, create_instructor
from service.domain.roster import import_roster
from service.domain.stats import exercise_stats, submission_series
from service.domain.throttle import Throttle
from service.extensions import db
from service.models import (
    GradingRun,
    Instructor,
    ItemScore,
    LoginFailure,
    Student,
    Submission,
    Worker,
    utcnow,
)
from service.queue import heartbeats
from service.queue.embedded import EmbeddedWorkers
from service.queue.state import queue_state
from service.settings import load_settings
from service.views.frame import NOTEBOOK_CSP
from tests.catalogs import messages
from tests.service.service_support import TEST_PASSWORD_HASH

EXERCISE = "chap06_cnn"
ROSTER = ("student_id,name,email\n"
          "s001,Aoi Tanaka,aoi@example.org\ns002,Ben Carter,ben@example.org\n"
          "s003,Chie Sato,chie@example.org\ns004,Daiki Ito,\n")
PASSWORD = "correct horse battery"

AppFactory = Callable[..., Flask]


# --- databases and apps -------------------------------------------------------------------------


@pytest.fixture
def app_config() -> dict[str, Any]:
    """The dashboard's forms are posted without their CSRF token unless a test asks for it
    (``make_app(WTF_CSRF_ENABLED=True)``)."""
    return {"WTF_CSRF_ENABLED": False}


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    """The service (``tests/service/conftest.py``'s factory) with the class of :data:`ROSTER`."""
    app = make_app()
    with app.app_context():
        import_roster(ROSTER)
    return app


def add_instructor(app: Flask, username: str = "teacher", password: str = PASSWORD) -> None:
    """An instructor whose one-time password was already replaced by ``password``."""
    with app.app_context():
        instructor, once = create_instructor(username)
        change_password(instructor, once, password, password)


def log_in(client: FlaskClient, username: str = "teacher", password: str = PASSWORD,
           **kwargs: Any):
    return client.post("/dashboard/login", data={"username": username, "password": password},
                       **kwargs)


@pytest.fixture
def staff(app: Flask) -> FlaskClient:
    """An instructor, logged in, reading English."""
    add_instructor(app)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert log_in(client).status_code == 303
    return client


def text_of(response) -> str:
    return response.get_data(as_text=True)


def csrf_token_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


# --- rows written as the worker writes them ----------------------------------------------------


ITEMS = ("conv1", "conv2", "conv3", "pool1", "pool2", "pool3", "conv_layer", "pooling_layer",
         "dense_layer", "model", "accuracy")


def report_for(score_by_item: dict[str, tuple[float, str]]) -> dict[str, Any]:
    """A report dict shaped like ``GradeReport.to_dict()``, with timings and diagnostics."""
    items = [{"id": item_id, "title": {"ja": f"項目 {item_id}", "en": f"Item {item_id}"},
              "score": score, "max_score": 24.0 if item_id == "accuracy" else 6.0,
              "status": status,
              "feedback": {"ja": "" if status == "correct" else f"{item_id} の形が違います",
                           "en": "" if status == "correct" else f"{item_id}: wrong shape"},
              "details": {}, "cell_index": 3}
             for item_id, (score, status) in score_by_item.items()]
    return {
        "exercise": EXERCISE, "outcome": "graded", "reason": None, "items": items,
        "score": sum(i["score"] for i in items), "max_score": 100.0,
        "measured_accuracy": 0.9812, "claimed_accuracy": 0.98,
        "notes": [{"ja": "セル 3 の !pip install を無効にしました。",
                   "en": "Cell 3: !pip install was neutralised."}],
        "timings": {"sandbox": 170.0, "kernel_start": 2.5, "bootstrap": 7.5, "cells": 150.0,
                    "exports": 4.0, "cleanroom": 3.5, "scoring": 0.5, "total": 171.0},
        "diagnostics": {"bootstrap": ["tf.compat.v1 installed as tf"], "exit_code": 0,
                        "signal": None, "peak_memory_bytes": 3 * 1024 ** 3,
                        "located": {"conv1": "id"},
                        "log_tail": "Epoch 10/10\ntest accuracy: 0.9812\n"},
    }


def add_submission(app: Flask, student_id: str, *runs: dict[str, Any],
                   minutes_ago: float = 60, exercise: str = EXERCISE) -> int:
    """A submission with ``runs`` (oldest first), each a dict: ``state`` (graded, failed,
    queued, running), ``items`` ({item: (score, status)}, graded runs), ``outcome``,
    ``reason``. Runs are queued when the submission is made, start 30 s later and end 150 s
    after that."""
    created = utcnow() - dt.timedelta(minutes=minutes_ago)
    with app.app_context():
        student = db.session.execute(
            select(Student).where(Student.student_id == student_id)).scalar_one()
        submission = Submission(student=student, exercise=exercise, filename="hw.ipynb",
                                notebook_sha256=f"{len(student_id) + int(minutes_ago * 1000):064x}",
                                size=1000, created_at=created)
        db.session.add(submission)
        for n, spec in enumerate(runs):
            queued = created + dt.timedelta(minutes=n)
            run = GradingRun(submission=submission, state=spec["state"], queued_at=queued,
                             reason=spec.get("reason"), attempts=spec.get("attempts", 1))
            if spec["state"] != "queued":
                run.started_at = queued + dt.timedelta(seconds=30)
                run.worker = "embedded:test:0"
            if spec["state"] in ("graded", "failed"):
                run.finished_at = run.started_at + dt.timedelta(seconds=150)
            if spec["state"] == "graded":
                items = spec["items"]
                report = report_for(items)
                run.outcome = spec.get("outcome", "graded")
                run.report, run.score, run.max_score = report, report["score"], 100.0
                run.measured_accuracy = spec.get("accuracy", 0.9812)
                run.executed_html_sha256 = FolderBlobStore(app.config["UPLOAD_DIR"]).put(
                    b"<div class='cell'>executed output 42</div>")
                for position, (item_id, (score, status)) in enumerate(items.items()):
                    run.items.append(ItemScore(position=position, item_id=item_id, score=score,
                                               max_score=6.0, status=status))
            db.session.add(run)
        db.session.commit()
        return submission.id


def graded(total: float, **overrides: tuple[float, str]) -> dict[str, Any]:
    """A graded run scoring ``total``: the ``overrides`` items, and conv1 with the rest."""
    rest = total - sum(score for score, _ in overrides.values())
    items = {"conv1": (rest, "correct" if rest else "incorrect"), **overrides}
    return {"state": "graded", "items": items}


def runs_of(app: Flask, submission_id: int) -> list[tuple[int, str]]:
    with app.app_context():
        return [(r.id, r.state) for r in db.session.execute(
            select(GradingRun).where(GradingRun.submission_id == submission_id)
            .order_by(GradingRun.id)).scalars()]


def table_ids(page: str) -> list[str]:
    """Student ids in the order of the class table's rows."""
    body = page[page.index("<tbody>"):page.index("</tbody>")]
    return re.findall(r'<th scope="row"><a href="/dashboard/students/(\w+)"', body)


def table_row(page: str, student_id: str) -> str:
    body = page[page.index("<tbody>"):page.index("</tbody>")]
    start = body.index(f'href="/dashboard/students/{student_id}"')
    return body[start:body.index("</tr>", start)]


@pytest.fixture
def class_data(app: Flask) -> dict[str, int]:
    """s001: 80 then 40 (best 80, latest 40); s002: its only run failed; s003: 55 then a run
    that timed out with 20; s004: nothing. pool1 is right in s001's best run, half right in
    s003's."""
    first = add_submission(app, "s001", graded(80, pool1=(6.0, "correct")), minutes_ago=120)
    second = add_submission(app, "s001", graded(40), minutes_ago=30)
    failed = add_submission(app, "s002", {"state": "failed", "reason": "kernel vanished"},
                            minutes_ago=50)
    s003_ok = add_submission(app, "s003", graded(55, pool1=(3.0, "partial")), minutes_ago=90)
    timeout = add_submission(app, "s003", {**graded(20), "outcome": "timeout"},
                             minutes_ago=10)
    return {"first": first, "second": second, "failed": failed, "s003_ok": s003_ok,
            "timeout": timeout}


# --- accounts, login, throttle -----------------------------------------------------------------


def test_passwords_are_hashed_with_werkzeugs_scrypt_unless_the_app_says_otherwise(app: Flask):
    """The tests' apps hash with a cheap scrypt (``TEST_PASSWORD_HASH``); the service's own
    config has no ``PASSWORD_HASH_METHOD``, so its hashes are werkzeug's scrypt."""
    assert "PASSWORD_HASH_METHOD" not in load_settings({})
    with app.app_context():
        cheap, cheap_password = create_instructor("cheap")
        assert cheap.password_hash.startswith(f"{TEST_PASSWORD_HASH}$")
        del app.config["PASSWORD_HASH_METHOD"]
        strong, strong_password = create_instructor("strong")
        assert strong.password_hash.startswith("scrypt:32768:8:1$")
        assert authenticate("strong", strong_password) == strong
        assert authenticate("cheap", cheap_password) == cheap  # a stored hash names its method
        assert authenticate("strong", cheap_password) is None


def test_cli_creates_an_instructor_whose_one_time_password_must_be_replaced(app: Flask):
    runner = app.test_cli_runner()
    made = runner.invoke(args=["instructor", "create", " Alice "])
    assert made.exit_code == 0, made.output
    password = made.output.strip().splitlines()[-1]
    assert len(password) >= 16
    with app.app_context():
        alice = db.session.execute(select(Instructor)).scalar_one()
        assert (alice.username, alice.must_change_password) == ("alice", True)
        assert password not in alice.password_hash and alice.password_hash.startswith("scrypt")
    again = runner.invoke(args=["instructor", "create", "alice"])
    assert again.exit_code != 0 and "already exists" in again.output

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    response = log_in(client, "alice", password)
    assert response.status_code == 303 and response.location == "/dashboard/password"
    blocked = client.get(f"/dashboard/{EXERCISE}")
    assert blocked.status_code == 302 and blocked.location == "/dashboard/password"
    assert "You logged in with a one-time password" in text_of(client.get(blocked.location))
    short = client.post("/dashboard/password",
                        data={"current": password, "new": "short", "repeat": "short"})
    assert short.status_code == 422 and "A password has 10 to 256 characters." in text_of(short)
    changed = client.post("/dashboard/password",
                          data={"current": password, "new": PASSWORD, "repeat": PASSWORD})
    assert changed.status_code == 303
    assert client.get(f"/dashboard/{EXERCISE}").status_code == 200

    reset = runner.invoke(args=["instructor", "reset-password", "alice"])
    assert reset.exit_code == 0, reset.output
    fresh = reset.output.strip().splitlines()[-1]
    other = app.test_client()
    assert log_in(other, "alice", PASSWORD).status_code == 422  # the old one stopped working
    assert log_in(other, "alice", fresh).location == "/dashboard/password"
    listing = runner.invoke(args=["instructor", "list"])
    assert "alice" in listing.output and "must change password" in listing.output


def test_make_run_creates_admin_once_and_never_in_production(app: Flask, make_app: AppFactory,
                                                             capsys: pytest.CaptureFixture):
    first_instructor(make_app(PRODUCTION=True))
    assert "admin" not in capsys.readouterr().out
    first_instructor(app)
    printed = capsys.readouterr().out
    password = re.search(r"one-time password.*\n\s+(\S+)", printed).group(1)
    first_instructor(app)
    assert capsys.readouterr().out == ""  # an instructor exists: nothing more
    response = log_in(app.test_client(), "admin", password)
    assert response.status_code == 303 and response.location == "/dashboard/password"


def test_login_and_logout(app: Flask):
    add_instructor(app)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    anonymous = client.get(f"/dashboard/{EXERCISE}")
    assert anonymous.status_code == 302
    assert anonymous.location.startswith("/dashboard/login?next=")
    wrong = log_in(client, password="not the password")
    assert wrong.status_code == 422
    assert "The username or the password is wrong." in text_of(wrong)
    unknown = log_in(client, username="nobody")
    assert "The username or the password is wrong." in text_of(unknown)  # same words
    assert client.get("/dashboard/").status_code == 302

    response = log_in(client, query_string={"next": f"/dashboard/{EXERCISE}"})
    assert response.status_code == 303 and response.location == f"/dashboard/{EXERCISE}"
    page = text_of(client.get("/dashboard/"))
    assert "Lecture 6: implementing and training a convolutional neural network" in page
    assert "Signed in as teacher" in page
    assert client.get("/").location == "/dashboard/"  # not a student: no upload page
    client.post("/dashboard/logout")
    assert client.get("/dashboard/").status_code == 302


def _age_failures(app: Flask, seconds: float) -> None:
    """Move every recorded failure ``seconds`` into the past (time passing, without sleeping)."""
    with app.app_context():
        for failure in db.session.execute(select(LoginFailure)).scalars():
            failure.at -= dt.timedelta(seconds=seconds)
        db.session.commit()


def _failures(app: Flask) -> int:
    with app.app_context():
        return db.session.execute(select(func.count(LoginFailure.id))).scalar_one()


def from_address(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def test_failures_slow_that_address_on_that_username_only_with_growing_waits(
        app: Flask, make_app: AppFactory):
    add_instructor(app)
    stranger = from_address(app, "10.0.0.66")
    for _ in range(5):
        assert log_in(stranger, password="guess").status_code == 422
    refused = log_in(stranger)  # the right password, from the guessing address: wait
    assert refused.status_code == 429
    assert 25 <= int(refused.headers["Retry-After"]) <= 30
    assert "Too many failed logins. Try again in" in text_of(refused)
    # Another process of the service (another app on the same database) refuses too.
    assert log_in(from_address(make_app(), "10.0.0.66")).status_code == 429
    assert _failures(app) == 5  # refusals are not recorded: knocking does not lengthen the wait

    # The instructor, elsewhere, is not locked out by the stranger's guesses.
    assert log_in(from_address(app, "10.0.0.1")).status_code == 303
    # The stranger's address may still try other usernames (a pair is the key).
    assert log_in(stranger, username="someone-else").status_code == 422

    _age_failures(app, 31)  # the first wait is over: one more guess, then twice as long
    assert log_in(stranger, password="guess").status_code == 422
    again = log_in(stranger)
    assert again.status_code == 429 and 55 <= int(again.headers["Retry-After"]) <= 60
    _age_failures(app, 61)
    assert log_in(stranger).status_code == 303  # the right password, once the wait is over
    with app.app_context():  # a success forgets that pair's failures, not other pairs'
        left = db.session.execute(select(LoginFailure.username, LoginFailure.ip)).all()
    assert [tuple(row) for row in left] == [("someone-else", "10.0.0.66")]


def test_failures_past_the_window_are_forgotten_and_waits_are_capped(app: Flask):
    add_instructor(app)
    client = from_address(app, "10.0.0.66")
    for _ in range(5):
        assert log_in(client, password="guess").status_code == 422
    waits = []
    for _ in range(5):  # each wait sat out, then one more wrong guess: 30 s, 60 s, ...
        refused = log_in(client, password="guess")
        assert refused.status_code == 429
        waits.append(int(refused.headers["Retry-After"]))
        _age_failures(app, waits[-1])
        assert log_in(client, password="guess").status_code == 422
    assert waits == [30, 60, 120, 240, 480]
    # ... and never more than the window, when failures keep coming faster than they age out
    assert Throttle().delay(6) == Throttle().delay(60) == 15 * 60
    _age_failures(app, 15 * 60 + 1)
    assert log_in(client).status_code == 303


@pytest.mark.parametrize("spread", ["one-address", "many-addresses"])
def test_concurrent_guesses_are_checked_no_more_than_the_limit(app: Flask, spread: str,
                                                               monkeypatch: pytest.MonkeyPatch):
    """40 wrong passwords at once: the throttle counts before the password is checked, so at
    most the limit of them reach the password check (it used to be 12 of 40)."""
    add_instructor(app)
    from service.views.dashboard import access

    checked: list[str] = []
    real = access.authenticate

    def counting(username: str, password: str):
        checked.append(password)
        return real(username, password)

    monkeypatch.setattr(access, "authenticate", counting)
    barrier = threading.Barrier(40)
    statuses: list[int] = []

    def guess(n: int) -> None:
        address = "10.0.0.66" if spread == "one-address" else f"10.1.0.{n}"
        client = from_address(app, address)
        barrier.wait()
        statuses.append(log_in(client, password=f"guess {n}").status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # (a set: the lists' ``<=`` compared them in order and failed on a run where every guess
    # was refused before any reached the password check, all 429: a result the throttle may give)
    assert set(statuses) <= {422, 429} and len(statuses) == 40
    if spread == "one-address":
        assert len(checked) == statuses.count(422) <= 5
        assert statuses.count(429) >= 35
    else:  # one failure each: nobody waits yet
        assert len(checked) == 40
    assert _failures(app) == len(checked)
    # And the instructor, from an address that made no guess, logs in at once.
    assert log_in(from_address(app, "10.0.0.1")).status_code == 303


def test_guesses_that_all_write_before_any_counts_are_all_refused(
        app: Flask, monkeypatch: pytest.MonkeyPatch):
    """The interleaving the test above meets by chance on a loaded machine (under ``make test``
    it once saw every guess refused, which its list comparison took for a failure): every guess
    commits its row before any counts, and every one counts before any refused one deletes its
    row. Each then counts the others' nine rows, over the limit, so all are refused and nothing
    stays recorded; no password is checked. (A throttle that counted before writing would check
    all ten: the race the write-first order closes.) Ten guesses: the pool's fifteen connections
    hold every guess waiting at the barriers."""
    add_instructor(app)
    from service.views.dashboard import access

    checked: list[str] = []
    real_authenticate, real_retry_after = access.authenticate, Throttle.retry_after

    def counting(username: str, password: str):
        checked.append(password)
        return real_authenticate(username, password)

    guesses = 10
    written, counted = (threading.Barrier(guesses, timeout=60) for _ in range(2))

    def after_every_write(throttle: Throttle, *args: Any, **kwargs: Any) -> int:
        written.wait()  # every guess's row is committed before any guess counts
        wait = real_retry_after(throttle, *args, **kwargs)
        counted.wait()  # and every guess has counted before any refused one deletes its row
        return wait

    monkeypatch.setattr(access, "authenticate", counting)
    monkeypatch.setattr(Throttle, "retry_after", after_every_write)
    statuses: list[int] = []

    def guess(n: int) -> None:
        statuses.append(log_in(from_address(app, "10.0.0.66"), password=f"guess {n}").status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [429] * guesses and checked == []
    assert _failures(app) == 0
    # nothing recorded: the right password from the same address is checked at once
    monkeypatch.setattr(Throttle, "retry_after", real_retry_after)
    assert log_in(from_address(app, "10.0.0.66")).status_code == 303


def test_guesses_spread_over_many_addresses_leave_each_one_guess(app: Flask):
    """Past LOGIN_ACCOUNT_ATTEMPTS failures on an account from everywhere, an address that
    failed on it waits after one failure instead of five; a clean address still gets in."""
    add_instructor(app)
    for n in range(20):  # 20 addresses, one failure each: the account is under attack
        assert log_in(from_address(app, f"10.1.0.{n}"), password="guess").status_code == 422
    assert log_in(from_address(app, "10.1.0.3")).status_code == 429
    fresh = from_address(app, "10.2.0.1")
    assert log_in(fresh, password="guess").status_code == 422  # one guess, then a wait
    assert log_in(fresh, password="guess").status_code == 429
    assert log_in(from_address(app, "10.0.0.1")).status_code == 303


def test_one_address_trying_many_usernames_waits_on_all(app: Flask):
    add_instructor(app)
    client = from_address(app, "10.0.0.66")
    for n in range(20):
        assert log_in(client, username=f"user{n}", password="guess").status_code == 422
    assert log_in(client).status_code == 429  # even the right one, from there
    assert log_in(from_address(app, "10.0.0.1")).status_code == 303


def test_forms_need_the_csrf_token(make_app: AppFactory):
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        import_roster(ROSTER)
    add_instructor(app)
    submission_id = add_submission(app, "s001", graded(50))
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    refused = log_in(client)
    assert refused.status_code == 400 and "The form has expired" in text_of(refused)
    token = csrf_token_of(text_of(client.get("/dashboard/login")))
    assert client.post("/dashboard/login", data={"username": "teacher", "password": PASSWORD,
                                                 "csrf_token": token}).status_code == 303
    path = f"/dashboard/submissions/{submission_id}/regrade"
    assert client.post(path).status_code == 400
    assert client.post(f"/dashboard/{EXERCISE}/regrade", data={"scope": "all"}
                       ).status_code == 400
    assert len(runs_of(app, submission_id)) == 1
    page_token = csrf_token_of(text_of(client.get(f"/dashboard/submissions/{submission_id}")))
    assert client.post(path, data={"csrf_token": page_token}).status_code == 303
    assert [status for _, status in runs_of(app, submission_id)] == ["graded", "queued"]


def test_a_student_session_never_opens_instructor_pages(app: Flask, class_data: dict[str, int]):
    with app.app_context():
        issued, _ = import_roster("student_id,name,email\ns009,Eve,\n")
    student = app.test_client()
    student.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert student.post("/login", data={"token": issued[0].token}).status_code == 303
    submission_id = class_data["first"]
    for path in ("/dashboard/", f"/dashboard/{EXERCISE}", f"/dashboard/{EXERCISE}/grades.csv",
                 "/dashboard/queue", "/dashboard/students/s001",
                 f"/dashboard/submissions/{submission_id}",
                 f"/dashboard/submissions/{submission_id}/notebook", "/dashboard/password"):
        response = student.get(path)
        assert response.status_code == 403, path
        assert "For course staff only" in text_of(response), path
    assert student.post(f"/dashboard/submissions/{submission_id}/regrade").status_code == 403
    assert student.post(f"/dashboard/{EXERCISE}/regrade").status_code == 403
    assert len(runs_of(app, submission_id)) == 1
    # The API's bearer token opens nothing here either.
    anonymous = app.test_client()
    bearer = anonymous.get("/dashboard/", headers={"Authorization": f"Bearer {issued[0].token}"})
    assert bearer.status_code == 302 and bearer.location.startswith("/dashboard/login")


# --- the class table ---------------------------------------------------------------------------


def test_table_shows_every_roster_student_with_best_latest_and_items(
        app: Flask, staff: FlaskClient, class_data: dict[str, int]):
    page = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    assert table_ids(page) == ["s001", "s002", "s003", "s004"]
    s001 = table_row(page, "s001")
    best = f'<a href="/dashboard/submissions/{class_data["first"]}">80</a>'
    latest = f'<a href="/dashboard/submissions/{class_data["second"]}">40</a>'
    assert best in s001 and latest in s001
    assert ">2</td>" in s001  # attempts
    assert 'class="num item-cell item-correct" title="Convolution 1' in s001
    assert "Graded" in s001
    assert "Failed" in table_row(page, "s002")
    s003 = table_row(page, "s003")
    assert ">55</a>" in s003 and ">20</a>" in s003 and "Timed out" in s003
    assert "Not submitted" in table_row(page, "s004") and ">0</td>" in table_row(page, "s004")
    assert "Showing 4 of 4 students" in page
    with app.app_context():
        rows = {row.student.student_id: row for row in exercise_rows(db.session, EXERCISE)}
    assert (rows["s001"].final, rows["s001"].latest_score) == (80.0, 40.0)
    assert rows["s001"].items["pool1"].score == 6.0  # the best run's items
    assert rows["s002"].state == "failed" and rows["s002"].counted is None
    assert rows["s003"].stuck and not rows["s001"].stuck
    assert rows["s004"].state == "none" and rows["s004"].attempts == 0


def best_of(grades: list[SubmissionGrade]) -> SubmissionGrade | None:
    """The obvious rule with no schedule: the highest score, ties to the later submission."""
    best = None
    for grade in grades:  # oldest first
        if grade.score is not None and (best is None or grade.score >= (best.score or 0.0)):
            best = grade
    return best


def test_rows_from_column_facts_agree_with_the_rules_on_orm_objects(app: Flask):
    """The class table reads each submission's runs as narrow column facts in one query; a
    seeded random class (score ties, regrades that lower a score, failed and pending runs,
    submissions made in the same second) must give exactly what ``grade_submission`` and the
    plain best rule say on the ORM objects."""
    rng = random.Random(20261201)
    kinds = ("graded", "graded", "graded", "failed", "queued", "running")
    for student_id in ("s001", "s002", "s003"):
        for k in range(rng.randint(3, 9)):
            runs = []
            for _ in range(rng.randint(0, 3)):
                kind = rng.choice(kinds)
                runs.append(graded(rng.choice((20, 40, 40, 60))) if kind == "graded"
                            else {"state": kind})
            add_submission(app, student_id, *runs, minutes_ago=90 - k)
    moment = utcnow().replace(microsecond=0)
    with app.app_context():  # many submissions made in the very same second: ties on time
        for sub in db.session.execute(select(Submission)).scalars():
            sub.created_at = moment - dt.timedelta(seconds=rng.choice((0, 0, 1)))
        db.session.commit()
        rows = {row.student.student_id: row for row in exercise_rows(db.session, EXERCISE)}
        for student in db.session.execute(select(Student)).scalars():
            subs = db.session.execute(
                select(Submission).where(Submission.student_pk == student.id)
                .order_by(Submission.created_at, Submission.id)).scalars().all()
            grades = [grade_submission(sub) for sub in subs]
            best, row = best_of(grades), rows[student.student_id]
            assert row.attempts == len(grades)
            assert (row.counted.submission.id if row.counted else None) == (
                best.submission.id if best else None), student.student_id
            assert row.final == (best.score if best else None)
            assert (row.latest.submission.id if row.latest else None) == (
                grades[-1].submission.id if grades else None)
            if grades:
                assert row.latest.current.id == grades[-1].current.id if grades[
                    -1].current else row.latest.current is None
                assert row.latest_score == grades[-1].score
            assert row.live == sum(1 for g in grades if g.current and g.current.state.is_live)
            assert row.any_failed == any(g.current is not None and g.current.state == "failed"
                                         for g in grades)
            if best and best.counted:
                assert set(row.items) == {item.item_id for item in best.counted.items}
        # the hourly counts of the submissions chart, made in SQL (strftime / date_trunc)
        created = db.session.execute(select(Submission.created_at)).scalars().all()
        assert exercise_stats(EXERCISE)["submissions"] == submission_series(Counter(created))


def test_a_regrade_replaces_the_submissions_score_but_keeps_its_old_run(
        app: Flask, staff: FlaskClient):
    """After a reference change, the regraded score counts, even when it is lower."""
    submission_id = add_submission(app, "s001", graded(90), graded(60))
    with app.app_context():
        row = next(r for r in exercise_rows(db.session, EXERCISE)
                   if r.student.student_id == "s001")
    assert row.final == 60.0 and row.counted.counted.id == runs_of(app, submission_id)[1][0]
    page = text_of(staff.get(f"/dashboard/submissions/{submission_id}"))
    assert "60 / 100" in page and "Runs (regrade history)" in page
    assert page.count("embedded:test:0") == 2  # both runs listed


def test_filters_sort_and_search(staff: FlaskClient, class_data: dict[str, int]):
    def ids(query: str) -> list[str]:
        return table_ids(text_of(staff.get(f"/dashboard/{EXERCISE}?{query}")))

    assert ids("show=missing") == ["s004"]
    assert ids("show=failed") == ["s002", "s003"]
    assert ids("show=submitted") == ["s001", "s002", "s003"]
    assert ids("below=60") == ["s002", "s003", "s004"]  # no graded run counts as 0
    assert ids("below=60&show=submitted") == ["s002", "s003"]
    assert ids("sort=final&order=desc") == ["s001", "s003", "s002", "s004"]
    assert ids("sort=final") == ["s003", "s001", "s002", "s004"]  # no score: last either way
    assert ids("sort=latest") == ["s003", "s001", "s002", "s004"]
    assert ids("sort=attempts&order=desc") == ["s001", "s003", "s002", "s004"]
    assert ids("sort=name&order=desc") == ["s004", "s003", "s002", "s001"]
    assert ids("sort=item:pool1&order=desc") == ["s001", "s003", "s002", "s004"]
    assert ids("q=chie") == ["s003"]
    for nonsense in ("sort=nonsense&show=nonsense&below=abc", "sort=pool1", "sort=item:nope"):
        assert ids(nonsense) == ["s001", "s002", "s003", "s004"], nonsense
    page = text_of(staff.get(f"/dashboard/{EXERCISE}?sort=final&show=failed"))
    assert 'aria-sort="ascending"' in page and "Showing 2 of 4 students" in page
    # a header link flips the order and keeps the filter
    assert f'href="/dashboard/{EXERCISE}?show=failed&amp;sort=final&amp;order=desc#students"' in page


def test_unknown_exercise_student_and_submission_are_404(staff: FlaskClient):
    for path in ("/dashboard/chap99_nothing", "/dashboard/chap99_nothing/grades.csv",
                 "/dashboard/students/nobody", "/dashboard/submissions/999"):
        assert staff.get(path).status_code == 404, path


# --- CSV export ---------------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    raw = response.get_data()
    assert raw.startswith("\ufeff".encode())  # a BOM for Excel; Moodle and Canvas skip it
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def test_plain_csv_has_one_row_per_student_with_best_score_and_items(
        staff: FlaskClient, class_data: dict[str, int]):
    response = staff.get(f"/dashboard/{EXERCISE}/grades.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(rf'attachment; filename="{EXERCISE}-grades-\d{{8}}\.csv"',
                        response.headers["Content-Disposition"])
    rows = read_csv(response)
    assert rows[0] == ["student_id", "name", "email", "score", "raw", "penalty", "adjustment",
                       "late", *ITEMS]
    by_id = {row[0]: row for row in rows[1:]}
    assert list(by_id) == ["s001", "s002", "s003", "s004"]
    # no schedule: nothing late, no penalty, no adjustment; raw is the score
    assert by_id["s001"][:10] == ["s001", "Aoi Tanaka", "aoi@example.org", "80", "80", "0", "0",
                                  "", "74", ""]
    assert by_id["s001"][8 + ITEMS.index("pool1")] == "6"
    assert by_id["s002"][3:] == [""] * (5 + len(ITEMS))  # failed: no grade
    assert by_id["s003"][3:8] == ["55", "55", "0", "0", ""]
    assert by_id["s004"][2:4] == ["", ""]
    graded_only = read_csv(staff.get(f"/dashboard/{EXERCISE}/grades.csv?only=graded"))
    assert [row[0] for row in graded_only[1:]] == ["s001", "s003"]
    no_bom = staff.get(f"/dashboard/{EXERCISE}/grades.csv?bom=0").get_data()
    assert no_bom.startswith(b"student_id,name,email,score,raw,penalty,adjustment,late,conv1")
    assert b"\r\n" in no_bom


def test_canvas_csv_has_canvas_columns_and_points_possible(staff: FlaskClient,
                                                           class_data: dict[str, int]):
    response = staff.get(f"/dashboard/{EXERCISE}/grades.csv?format=canvas")
    assert "-canvas-" in response.headers["Content-Disposition"]
    rows = read_csv(response)
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", EXERCISE]
    assert rows[1] == ["Points Possible", "", "", "", "", "100"]
    assert rows[2] == ["Aoi Tanaka", "", "s001", "aoi@example.org", "", "80"]
    assert rows[3] == ["Ben Carter", "", "s002", "ben@example.org", "", ""]
    assert [row[2] for row in rows[2:]] == ["s001", "s002", "s003", "s004"]
    assert staff.get(f"/dashboard/{EXERCISE}/grades.csv?format=xlsx").status_code == 404


def test_a_name_a_spreadsheet_would_run_is_exported_as_text(
        app: Flask, staff: FlaskClient, class_data: dict[str, int]):
    """A student's name and email may come from the LMS (an LTI launch), where the student
    chose them: a formula there must reach the instructor's spreadsheet as text."""
    with app.app_context():
        student = db.session.execute(select(Student).where(Student.student_id == "s004")
                                     ).scalar_one()
        student.name, student.email = '=HYPERLINK("http://evil.example","click")', "+1+cmd|x"
        db.session.commit()
    for path in (f"/dashboard/{EXERCISE}/grades.csv", "/dashboard/gradebook.csv"):
        plain = {row[0]: row for row in read_csv(staff.get(path))[1:]}
        assert plain["s004"][1:3] == ['\'=HYPERLINK("http://evil.example","click")', "'+1+cmd|x"]
        assert plain["s001"][1] == "Aoi Tanaka"
        canvas = {row[2]: row for row in read_csv(staff.get(path + "?format=canvas"))[2:]}
        assert canvas["s004"][0].startswith("'=") and canvas["s004"][3] == "'+1+cmd|x"


# --- regrading ---------------------------------------------------------------------------------


def test_regrade_one_submission_adds_a_queued_run_and_keeps_the_old_one(
        app: Flask, staff: FlaskClient, class_data: dict[str, int]):
    submission_id = class_data["first"]
    (old_id, _), = runs_of(app, submission_id)
    response = staff.post(f"/dashboard/submissions/{submission_id}/regrade",
                          follow_redirects=True)
    runs = runs_of(app, submission_id)
    assert runs[0] == (old_id, "graded") and runs[1][1] == "queued" and len(runs) == 2
    assert f"Regrade queued (run #{runs[1][0]})." in text_of(response)
    again = staff.post(f"/dashboard/submissions/{submission_id}/regrade", follow_redirects=True)
    assert "already queued or being graded" in text_of(again)
    assert len(runs_of(app, submission_id)) == 2
    page = text_of(staff.get(f"/dashboard/submissions/{submission_id}"))
    assert "disabled" in page  # the button says so while a run is pending
    assert f"Run #{old_id}" in page  # the finished run stays on show, not the queued one


def test_regrade_all_queues_every_submission_not_already_pending(
        app: Flask, staff: FlaskClient, class_data: dict[str, int]):
    pending = add_submission(app, "s004", {"state": "queued"}, minutes_ago=5)
    response = staff.post(f"/dashboard/{EXERCISE}/regrade", data={"scope": "all"},
                          follow_redirects=True)
    assert "5 runs queued for regrading (1 skipped: already queued or running)." in text_of(
        response)
    for name in ("first", "second", "failed", "s003_ok", "timeout"):
        statuses = [status for _, status in runs_of(app, class_data[name])]
        assert len(statuses) == 2 and statuses[-1] == "queued", name
    assert len(runs_of(app, pending)) == 1
    with app.app_context():  # the table still counts the finished runs meanwhile
        rows = {r.student.student_id: r for r in exercise_rows(db.session, EXERCISE)}
    assert rows["s001"].final == 80.0 and rows["s001"].state == "queued"


def test_the_regrade_views_hand_each_new_run_to_the_queue(
        app: Flask, staff: FlaskClient, class_data: dict[str, int],
        monkeypatch: pytest.MonkeyPatch):
    """The domain commits a regrade's run as queued and never imports the queue: the view hands
    it over (``dispatch.enqueue``) after the commit, once per run."""
    from service.views.dashboard import pages

    handed: list[int] = []
    monkeypatch.setattr(pages, "enqueue", handed.append)
    staff.post(f"/dashboard/submissions/{class_data['first']}/regrade")
    assert handed == [runs_of(app, class_data["first"])[-1][0]]
    staff.post(f"/dashboard/{EXERCISE}/regrade", data={"scope": "all"})
    queued = sorted(run_id for name in ("second", "failed", "s003_ok", "timeout")
                    for run_id, status in runs_of(app, class_data[name]) if status == "queued")
    assert len(queued) == 4 and sorted(handed[1:]) == queued


def test_regrade_latest_only_takes_each_students_last_submission(
        app: Flask, staff: FlaskClient, class_data: dict[str, int]):
    response = staff.post(f"/dashboard/{EXERCISE}/regrade", data={"scope": "latest"},
                          follow_redirects=True)
    assert "3 runs queued for regrading (0 skipped" in text_of(response)
    assert len(runs_of(app, class_data["first"])) == 1
    assert len(runs_of(app, class_data["second"])) == 2
    assert len(runs_of(app, class_data["timeout"])) == 2
    assert staff.post(f"/dashboard/{EXERCISE}/regrade", data={"scope": "some"}
                      ).status_code == 400


# --- a submission, a student -----------------------------------------------------------------


def test_submission_page_shows_report_log_phases_and_notebook(app: Flask, staff: FlaskClient,
                                                              class_data: dict[str, int]):
    submission_id = class_data["first"]
    page = text_of(staff.get(f"/dashboard/submissions/{submission_id}"))
    assert "Aoi Tanaka" in page and "Score that counts" in page
    assert "conv1 の形が違います" not in page  # conv1 was right in this run
    assert "pool1" in page and "Cell 3: !pip install was neutralised." in page
    phases = re.findall(r'<th scope="row">([^<]+)</th>\s*<td class="num">([^<]+)</td>', page)
    assert phases == [
        ("Waiting in the queue", "30 s"), ("Sandbox start and overhead", "6 s"),
        ("Kernel start", "2.5 s"), ("Bootstrap (TF1 compatibility)", "7.5 s"),
        ("Running the cells", "2 min 30 s"), ("Exporting the answers", "4 s"),
        ("Measuring in the clean room", "3.5 s"), ("Scoring", "0.50 s"),
        ("Total (without the wait)", "2 min 51 s")]
    assert "Epoch 10/10\ntest accuracy: 0.9812" in page
    assert "3072 MiB" in page and "tf.compat.v1 installed as tf" in page
    (run_id, _), = runs_of(app, submission_id)
    src = f"/dashboard/submissions/{submission_id}/notebook?run={run_id}"
    assert f'<iframe sandbox src="{src}"' in page
    notebook = staff.get(src)
    assert notebook.headers["Content-Security-Policy"] == NOTEBOOK_CSP
    assert "executed output 42" in text_of(notebook)
    failed = text_of(staff.get(f"/dashboard/submissions/{class_data['failed']}"))
    assert "kernel vanished" in failed
    assert staff.get(f"/dashboard/submissions/{class_data['failed']}/notebook").status_code == 404
    s003 = text_of(staff.get(f"/dashboard/submissions/{class_data['s003_ok']}"))
    assert "conv1" in s003 and "55 / 100" in s003


def test_both_languages_of_the_feedback_are_shown(app: Flask, staff: FlaskClient):
    submission_id = add_submission(app, "s002", graded(0, conv2=(0.0, "incorrect")))
    page = text_of(staff.get(f"/dashboard/submissions/{submission_id}"))
    assert "conv2 の形が違います" in page and "conv2: wrong shape" in page
    japanese = text_of(staff.get(f"/dashboard/submissions/{submission_id}?lang=ja"))
    assert '<html lang="ja">' in japanese and "各段階の所要時間" in japanese


def test_student_page_lists_every_attempt_and_marks_the_best(staff: FlaskClient,
                                                             class_data: dict[str, int]):
    page = text_of(staff.get("/dashboard/students/s001"))
    assert "aoi@example.org" in page and 'Final: <span class="final">80</span>' in page
    listing = page[page.index('class="grid submissions"'):]
    assert (listing.index(f"#{class_data['second']}</a>")
            < listing.index(f"#{class_data['first']}</a>"))
    best_row = listing[listing.index('<tr class="best">'):]
    assert f"#{class_data['first']}</a>" in best_row[:best_row.index("</tr>")]
    assert "No submission for this exercise." in text_of(staff.get("/dashboard/students/s004"))


# --- the queue and the workers -----------------------------------------------------------------


def test_queue_page_counts_waits_and_failures(app: Flask, staff: FlaskClient,
                                              class_data: dict[str, int]):
    add_submission(app, "s004", {"state": "queued"}, minutes_ago=10)
    add_submission(app, "s004", {"state": "running"}, minutes_ago=3)
    with app.app_context():
        state = queue_state(db.session)
    assert state.counts == {"queued": 1, "running": 1, "graded": 4, "failed": 1}
    assert state.failed_last_day == 1 and state.graded_last_hour == 2
    assert 595 <= state.oldest_wait <= 610
    assert state.average_wait == pytest.approx(30.0)  # every started run waited 30 s
    assert state.average_grading == pytest.approx(150.0)
    assert state.alive == 0 and state.drain_estimate is None
    page = text_of(staff.get("/dashboard/queue"))
    assert "kernel vanished" in page
    assert "Runs are waiting but no worker is alive" in page
    assert 'http-equiv="refresh"' in page
    tiles = re.findall(r"<dt>([^<]+)</dt><dd>(\d+)", page)
    assert ("Queued", "1") in tiles and ("Running", "1") in tiles and ("Workers alive", "0") in tiles


def test_a_worker_is_alive_while_it_beats_and_not_after(app: Flask, staff: FlaskClient):
    with app.app_context():
        heartbeats.beat(db.session, "celery@gpu1:42", "celery", run_id=7)
        heartbeats.beat(db.session, "embedded:old:1", "embedded")
        db.session.execute(update(Worker).where(Worker.name == "embedded:old:1")
                           .values(last_seen=utcnow() - dt.timedelta(seconds=61)))
        db.session.commit()
        state = queue_state(db.session)
    alive = {worker.name: is_alive for worker, is_alive in state.workers}
    assert alive == {"celery@gpu1:42": True, "embedded:old:1": False}
    page = text_of(staff.get("/dashboard/queue"))
    assert "Grading run #7" in page and "Not seen" in page
    assert re.search(r"1 min 0[12] s ago", page)


def test_embedded_workers_beat_while_running_and_leave_when_stopped(app: Flask):
    workers = EmbeddedWorkers(app, 2, poll_seconds=0.1, heartbeat_seconds=0.2)

    def rows() -> list[tuple[str, str, dt.datetime]]:
        with app.app_context():
            try:
                return [(w.name, w.kind, w.last_seen) for w in
                        db.session.execute(select(Worker).order_by(Worker.name)).scalars()]
            finally:
                db.session.remove()

    workers.start()
    try:
        first = rows()
        assert len(first) == 2 and {kind for _, kind, _ in first} == {"embedded"}
        deadline = utcnow() + dt.timedelta(seconds=10)
        while rows()[0][2] == first[0][2]:  # the heartbeat thread renews last_seen
            assert utcnow() < deadline, "no heartbeat after the first"
            time.sleep(0.05)
        with app.app_context():
            assert queue_state(db.session).alive == 2
    finally:
        workers.stop()
    assert rows() == []  # a clean stop is not reported as two dead workers


def test_a_celery_task_beats_for_its_worker_process(app: Flask, monkeypatch: pytest.MonkeyPatch):
    """The task itself, run in this process (``apply``): it beats, with its process's
    heartbeat, before claiming, whatever it then finds (here a run that does not exist)."""
    from service.queue import celery_worker as tasks
    from service.queue.host import GradingHost
    from service.states import WorkerKind

    # the worker process's host, with its heartbeat
    with GradingHost(app, spare_renderer=False, heartbeat=WorkerKind.CELERY) as host:
        monkeypatch.setattr(tasks, "_child", tasks.CeleryChild(app, host))
        assert tasks.grade.apply(args=[424242]).get() == "skipped (missing)"
        with app.app_context():
            worker = db.session.execute(select(Worker)).scalar_one()
            assert worker.kind == "celery" and worker.name.endswith(f":{os.getpid()}")
            assert worker.run_id is None and heartbeats.is_alive(worker)


# --- languages ---------------------------------------------------------------------------------


def test_every_key_the_dashboard_uses_is_in_the_catalog():
    service = PROJECT_ROOT / "service"
    sources = [*service.joinpath("templates", "dashboard").glob("*.html"),
               *service.joinpath("views").rglob("*.py")]
    used = set()
    for source in sources:
        text = source.read_text(encoding="utf-8")
        used |= set(re.findall(r"""\b_\(\s*["']([\w.]+)["']""", text))
        used |= set(re.findall(r"""flash\(\s*["']([\w.]+)["']""", text))
        used |= set(re.findall(r"""["'](dash\.[\w.]+)["']""", text))
    used |= {f"dash.filter.show_{value}" for value in ("all", "missing", "failed", "submitted")}
    used |= {f"dash.password.error.{code}" for code in ("wrong_current", "mismatch", "length",
                                                         "unchanged")}
    used = {key for key in used if not key.endswith(("_", "."))}  # prefixes of built keys
    assert len(used) > 100
    for lang in ("ja", "en"):
        assert sorted(used - set(messages("messages", lang))) == []


def test_the_dashboard_speaks_japanese(staff: FlaskClient, class_data: dict[str, int]):
    page = text_of(staff.get(f"/dashboard/{EXERCISE}", headers={"Accept-Language": "ja"}))
    assert '<html lang="ja">' in page
    assert "学生ごとの結果" in page and "未提出" in page and "採点失敗" in page
    assert "Students" not in page
