"""The release rules as the student meets them (issue 18): every part hidden and shown, in the
JSON API (one submission, the list), the page's polling (``status.json``) and the pages
(submission, history, gradebook) alike; the held-out figure's digits never reach a student
before its time; the provisional score on the public images; release after late-until, after
publishing, moved by an extension for that student only; ``GET /api/gradebook`` against
figures computed by hand here. SQLite and PostgreSQL (``database_url``).

Graded runs are written as the worker writes them, with report items shaped like the grader's
(the accuracy item's details and feedback made by the grader's own arithmetic and messages).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from grader.comparators.accuracy import accuracy_fraction, counted_accuracy
from grader.messages import bilingual
from service.domain import schedules
from service.domain.adjustments import adjust
from service.domain.course_rules import Dates, Rules, parse_release
from service.domain.final_grade import AdjustMode
from service.domain.release import release
from service.domain.schedules import ScheduleChange
from service.extensions import db
from service.models import GradingRun, ItemScore, Student, Submission, utcnow
from tests.courses import course_config
from tests.service.service_support import bearer

EXERCISE = "chap06_cnn"
#: The held-out figures of the seeded runs: their digits must never reach a student early.
HOLDOUT, HOLDOUT_MOVED = 0.9137, 0.8629
TEST, TEST_MOVED = 0.9912, 0.9788
SECRET_DIGITS = ("9137", "8629")
POOL_FEEDBACK = "pool1: the stride is 1, expected 2"


@pytest.fixture
def app(make_app, tmp_path) -> Flask:
    """The service with the login form's CSRF check off (the tests post the token), in a
    course of one exercise (the totals below are that exercise's share)."""
    return make_app(WTF_CSRF_ENABLED=False, GRADER=course_config(tmp_path / "course", EXERCISE))


def _rule(app: Flask):
    return app.config["GRADER"].exercise(EXERCISE).accuracy


def accuracy_item(app: Flask, accuracies: dict[str, float]) -> dict[str, Any]:
    """The accuracy item as ``compare_accuracy`` reports it (24 points)."""
    rule = _rule(app)
    measured = counted_accuracy(accuracies, rule.moved_error_ratio)
    fraction = accuracy_fraction(measured, rule.threshold, rule.floor)
    feedback = []
    details: dict[str, Any] = {
        "measured_accuracy": measured, "threshold": rule.threshold, "floor": rule.floor,
        "claimed_accuracy": 0.99, "accuracies": dict(accuracies),
        "moved_error_ratio": rule.moved_error_ratio, "parameters": 120000}
    if fraction < 1:
        feedback.append(bilingual("accuracy.partial", measured=measured,
                                  threshold=rule.threshold, floor=rule.floor))
    test, held_out = accuracies.get("test"), accuracies.get("holdout")
    if test is not None and held_out is not None and test - held_out > 0.05:
        details["memorised"] = True
        feedback.append(bilingual("accuracy.memorised", test=test, held_out=held_out))
    if abs(0.99 - measured) > rule.claimed_tolerance:
        details["claimed_mismatch"] = True
        feedback.append(bilingual("accuracy.claimed_mismatch", claimed=0.99,
                                  measured=measured))
    status = "correct" if fraction >= 1 else "partial" if fraction > 0 else "incorrect"
    return {"id": "accuracy", "title": {"ja": "正解率", "en": "Accuracy"},
            "score": round(24.0 * fraction, 4), "max_score": 24.0, "status": status,
            "feedback": {"ja": "\n".join(t.ja for t in feedback),
                         "en": "\n".join(t.en for t in feedback)},
            "details": details, "cell_index": 20}


def report(app: Flask, conv1: float = 6.0, pool1: float = 3.0,
           accuracies: dict[str, float] | None = None) -> dict[str, Any]:
    accuracies = accuracies or {"test": TEST, "holdout": HOLDOUT, "test-moved": TEST_MOVED,
                                "holdout-moved": HOLDOUT_MOVED}
    items = [
        {"id": "conv1", "title": {"ja": "畳み込み 1", "en": "Convolution 1"}, "score": conv1,
         "max_score": 6.0, "status": "correct" if conv1 == 6 else "incorrect",
         "feedback": {"ja": "", "en": ""},
         "details": {"expected_shape": [1, 28, 28, 8], "submitted_shape": [1, 28, 28, 8]},
         "cell_index": 4},
        {"id": "pool1", "title": {"ja": "プーリング 1", "en": "Pooling 1"}, "score": pool1,
         "max_score": 6.0, "status": "partial",
         "feedback": {"ja": "pool1: ストライドが 1 です（2 のはず）", "en": POOL_FEEDBACK},
         "details": {"expected_shape": [1, 14, 14, 8], "submitted_shape": [1, 28, 28, 8]},
         "cell_index": 7},
        accuracy_item(app, accuracies)]
    measured = items[2]["details"]["measured_accuracy"]
    return {"exercise": EXERCISE, "outcome": "graded", "reason": None, "items": items,
            "score": round(sum(i["score"] for i in items), 4), "max_score": 100.0,
            "measured_accuracy": measured, "claimed_accuracy": 0.99,
            "notes": [{"ja": "セル 3 の !pip install を無効にしました。",
                       "en": "Cell 3: !pip install was neutralised."}],
            "timings": {"total": 171.0}, "diagnostics": {"log_tail": "Epoch 10/10\n"}}


def add_graded(app: Flask, student_id: str, created: dt.datetime,
               body: dict[str, Any]) -> int:
    """A submission acknowledged at ``created`` with one graded run of ``body``."""
    with app.app_context():
        student = db.session.execute(
            select(Student).where(Student.student_id == student_id)).scalar_one()
        submission = Submission(student=student, exercise=EXERCISE, filename="hw.ipynb",
                                notebook_sha256=f"{abs(hash((student_id, created))):064x}",
                                size=1000, created_at=created)
        run = GradingRun(submission=submission, state="graded", outcome="graded",
                         queued_at=created, started_at=created + dt.timedelta(seconds=5),
                         finished_at=created + dt.timedelta(seconds=150), attempts=1,
                         worker="embedded:test:0", report=body, score=body["score"],
                         max_score=100.0, measured_accuracy=body["measured_accuracy"],
                         claimed_accuracy=body["claimed_accuracy"])
        for position, item in enumerate(body["items"]):
            run.items.append(ItemScore(position=position, item_id=item["id"],
                                       score=item["score"], max_score=item["max_score"],
                                       status=item["status"]))
        db.session.add_all([submission, run])
        db.session.commit()
        return submission.id


def set_rules(app: Flask, **change: Any) -> None:
    with app.app_context():
        schedules.set_schedule(db.session, EXERCISE, ScheduleChange(**change), "teacher")


def iso(moment: dt.datetime) -> str:
    return moment.replace(microsecond=0).isoformat() + "Z"


def logged_in(app: Flask, token: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert client.post("/login", data={"token": token}).status_code == 303
    return client


def everything(app: Flask, token: str, submission_id: int) -> dict[str, Any]:
    """What the student can read of ``submission_id``, every way: the API's answer, the list,
    the polling JSON, the pages (submission, history, gradebook) and the gradebook JSON."""
    api = app.test_client()
    one = api.get(f"/api/submissions/{submission_id}", headers=bearer(token))
    assert one.status_code == 200
    listed = api.get("/api/submissions", headers=bearer(token)).get_json()
    book = api.get("/api/gradebook", headers=bearer(token))
    assert book.status_code == 200
    web = logged_in(app, token)
    status = web.get(f"/submissions/{submission_id}/status.json")
    page = web.get(f"/submissions/{submission_id}")
    assert status.status_code == page.status_code == 200
    return {"api": one.get_json(), "list": next(s for s in listed if s["id"] == submission_id),
            "status": status.get_json(), "page": page.get_data(as_text=True),
            "history": web.get("/submissions").get_data(as_text=True),
            "gradebook_page": web.get("/gradebook").get_data(as_text=True),
            "gradebook": book.get_json()}


def texts(seen: dict[str, Any]) -> dict[str, str]:
    return {name: value if isinstance(value, str) else json.dumps(value)
            for name, value in seen.items()}


def assert_nowhere(seen: dict[str, Any], *needles: str) -> None:
    for name, text in texts(seen).items():
        for needle in needles:
            assert needle not in text, f"{needle!r} readable in {name}"


# --- the held-out figure (the default) ---------------------------------------------------------


def test_the_held_out_figure_is_withheld_until_late_until_and_the_score_is_provisional(
        app: Flask, tokens: dict[str, str]):
    now = utcnow()
    due, late_until = now + dt.timedelta(days=1), now + dt.timedelta(days=2)
    set_rules(app, due=iso(due), late_until=iso(late_until), timezone="Asia/Tokyo")
    body = report(app)
    original_total = body["score"]
    sid = add_graded(app, "alice", now - dt.timedelta(hours=3), body)
    seen = everything(app, tokens["alice"], sid)

    # the API, the list and the polling JSON say the same
    api = seen["api"]
    assert api == seen["list"] == seen["status"]
    assert api["withheld"] == [{"part": "holdout_accuracy", "until": iso(late_until)}]
    accuracy = next(i for i in api["items"] if i["id"] == "accuracy")
    public = counted_accuracy({"test": TEST, "test-moved": TEST_MOVED},
                              _rule(app).moved_error_ratio)
    assert api["measured_accuracy"] == pytest.approx(public)
    assert accuracy["details"]["measured_accuracy"] == pytest.approx(public)
    assert set(accuracy["details"]["accuracies"]) == {"test", "test-moved"}
    assert not {"memorised", "claimed_mismatch", "collapsed"} & set(accuracy["details"])
    provisional = round(24 * accuracy_fraction(public, _rule(app).threshold, _rule(app).floor),
                        4)
    assert provisional == 24.0 and accuracy["score"] == provisional
    assert accuracy["status"] == "correct"
    assert api["score"] == pytest.approx(6.0 + 3.0 + provisional)
    assert api["score"] != pytest.approx(original_total)
    # the provisional text names the date in the schedule's zone; no held-out figure anywhere
    assert f"{late_until + dt.timedelta(hours=9):%Y-%m-%d %H:%M} JST" in accuracy[
        "feedback"]["en"]
    assert "暫定" in accuracy["feedback"]["ja"]
    assert "memorises" not in accuracy["feedback"]["en"]
    assert_nowhere(seen, *SECRET_DIGITS, f"{original_total:g}", f"{body['score']:.2f}")
    # what stays: the other items' feedback, notes, the claimed accuracy
    assert POOL_FEEDBACK in seen["page"] and "!pip install" in seen["page"]
    assert api["claimed_accuracy"] == 0.99
    assert "provisional" in seen["page"] and f"{api['score']:g}" in seen["page"]
    # the gradebook: provisional, counted submission not named
    row = seen["gradebook"]["exercises"][0]
    assert row["provisional"] is True and row["submission_id"] is None
    assert row["raw"] == pytest.approx(api["score"]) and row["final"] == pytest.approx(
        api["score"])
    assert seen["gradebook"]["total"] == pytest.approx(api["score"])  # max 100, one exercise
    assert seen["gradebook"]["provisional"] is True

    # after late-until: everything as graded
    set_rules(app, due=iso(now - dt.timedelta(hours=2)),
              late_until=iso(now - dt.timedelta(hours=1)))
    after = everything(app, tokens["alice"], sid)
    assert after["api"]["withheld"] == []
    assert after["api"]["score"] == pytest.approx(original_total)
    assert after["api"]["measured_accuracy"] == pytest.approx(body["measured_accuracy"])
    assert "9137" in after["page"] and "memorises" in after["page"]
    row = after["gradebook"]["exercises"][0]
    assert row["provisional"] is False and row["submission_id"] == sid
    assert row["final"] == pytest.approx(original_total)


def test_without_a_due_time_nothing_is_withheld(app: Flask, tokens: dict[str, str]):
    body = report(app)
    sid = add_graded(app, "alice", utcnow() - dt.timedelta(hours=1), body)
    seen = everything(app, tokens["alice"], sid)
    assert seen["api"]["withheld"] == [] and seen["api"]["score"] == body["score"]
    assert "9137" in seen["page"]


# --- each other part ------------------------------------------------------------------------------


def test_a_hidden_score_is_null_everywhere_and_left_out_of_the_total(
        app: Flask, tokens: dict[str, str]):
    now = utcnow()
    due = now + dt.timedelta(days=1)
    set_rules(app, due=iso(due), release=parse_release("score=after_due,holdout_accuracy=always"))
    body = report(app, conv1=6.0, pool1=1.5)
    sid = add_graded(app, "alice", now - dt.timedelta(hours=1), body)
    seen = everything(app, tokens["alice"], sid)
    api = seen["api"]
    assert api["withheld"] == [{"part": "score", "until": iso(due)}]
    assert api["score"] is None and api["max_score"] == 100.0
    assert all(item["score"] is None for item in api["items"])
    assert all(item["status"] is None for item in api["items"])  # correct/partial judge it
    assert all(item["max_score"] in (6.0, 24.0) for item in api["items"])
    assert POOL_FEEDBACK in seen["page"]  # feedback is its own part
    total = f"{body['score']:g}"
    assert_nowhere({k: v for k, v in seen.items()}, f"{total} / 100", f'"score": {total}')
    assert "badge-correct" not in seen["page"] and "1.5 / 6" not in seen["page"]
    book = seen["gradebook"]
    row = book["exercises"][0]
    assert row["score_hidden"] is True
    assert [row[k] for k in ("raw", "penalty", "adjustment", "final", "submission_id")] == [
        None] * 5
    assert book["total"] is None and book["hidden_from_total"] == [EXERCISE]
    assert "Exercises whose scores are not shown yet" in seen["gradebook_page"]

    set_rules(app, due=iso(now - dt.timedelta(minutes=1)))  # the due time passed
    api = everything(app, tokens["alice"], sid)["api"]
    assert api["withheld"] == [] and api["score"] == body["score"]


def test_hidden_feedback_empties_every_item_but_keeps_notes_and_scores(
        app: Flask, tokens: dict[str, str]):
    now = utcnow()
    set_rules(app, due=iso(now + dt.timedelta(days=1)),
              release=parse_release("feedback=after_due,holdout_accuracy=always"))
    body = report(app)
    sid = add_graded(app, "alice", now - dt.timedelta(hours=1), body)
    seen = everything(app, tokens["alice"], sid)
    api = seen["api"]
    assert [w["part"] for w in api["withheld"]] == ["feedback"]
    assert all(item["feedback"] == {"ja": "", "en": ""} for item in api["items"])
    assert all("details" not in item for item in api["items"])
    assert api["score"] == body["score"] and api["notes"] == body["notes"]
    assert_nowhere(seen, POOL_FEEDBACK, "stride", "memorises", "(1, 28, 28, 8)")
    assert "!pip install" in seen["page"]


def test_hidden_test_accuracy_removes_the_test_figures_only(app: Flask, tokens: dict[str, str]):
    now = utcnow()
    set_rules(app, due=iso(now + dt.timedelta(days=1)),
              release=parse_release("test_accuracy=after_due,holdout_accuracy=always"))
    body = report(app)
    sid = add_graded(app, "alice", now - dt.timedelta(hours=1), body)
    seen = everything(app, tokens["alice"], sid)
    accuracy = next(i for i in seen["api"]["items"] if i["id"] == "accuracy")
    assert set(accuracy["details"]["accuracies"]) == {"holdout", "holdout-moved"}
    assert accuracy["details"]["claimed_accuracy"] == 0.99
    assert_nowhere({k: seen[k] for k in ("api", "list", "status", "page")}, "9912", "9788")
    assert "9137" in seen["page"]


def test_both_accuracies_hidden_shows_no_figure_but_a_provisional_score(
        app: Flask, tokens: dict[str, str]):
    now = utcnow()
    set_rules(app, due=iso(now + dt.timedelta(days=1)),
              release=parse_release("test_accuracy=after_due,holdout_accuracy=on_publish"))
    sid = add_graded(app, "alice", now - dt.timedelta(hours=1), report(app))
    seen = everything(app, tokens["alice"], sid)
    api = seen["api"]
    assert {w["part"]: w["until"] for w in api["withheld"]} == {
        "test_accuracy": iso(now + dt.timedelta(days=1)), "holdout_accuracy": None}
    assert api["measured_accuracy"] is None
    accuracy = next(i for i in api["items"] if i["id"] == "accuracy")
    assert "measured_accuracy" not in accuracy["details"]
    assert accuracy["score"] == 24.0
    assert "when the instructor publishes" in accuracy["feedback"]["en"]
    assert_nowhere({k: seen[k] for k in ("api", "list", "status", "page")},
                   *SECRET_DIGITS, "9912", "9788")


# --- publishing, extensions, other students ----------------------------------------------------


def test_an_exam_hides_everything_until_published(app: Flask, tokens: dict[str, str]):
    now = utcnow()
    set_rules(app, due=iso(now + dt.timedelta(days=1)), release=parse_release("exam"))
    body = report(app)
    sid = add_graded(app, "alice", now - dt.timedelta(hours=1), body)
    seen = everything(app, tokens["alice"], sid)
    assert [w["part"] for w in seen["api"]["withheld"]] == [
        "score", "feedback", "test_accuracy", "holdout_accuracy"]
    assert all(w["until"] is None for w in seen["api"]["withheld"])
    assert seen["api"]["score"] is None and seen["api"]["measured_accuracy"] is None
    assert_nowhere({k: seen[k] for k in ("api", "list", "status", "page")},
                   *SECRET_DIGITS, "9912", POOL_FEEDBACK)
    with app.app_context():
        schedules.publish(db.session, EXERCISE, "teacher")
    after = everything(app, tokens["alice"], sid)
    assert after["api"]["withheld"] == [] and after["api"]["score"] == body["score"]
    assert after["gradebook"]["exercises"][0]["final"] == pytest.approx(body["score"])


def test_an_extension_moves_the_release_for_that_student_only(
        app: Flask, tokens: dict[str, str]):
    now = utcnow()
    set_rules(app, due=iso(now - dt.timedelta(hours=2)),
              late_until=iso(now - dt.timedelta(hours=1)))
    own_late = now + dt.timedelta(days=3)
    with app.app_context():
        schedules.grant_extension(db.session, "alice", EXERCISE,
                                  iso(now + dt.timedelta(days=2)), iso(own_late), "teacher")
    mine = add_graded(app, "alice", now - dt.timedelta(hours=3), report(app))
    theirs = add_graded(app, "bob", now - dt.timedelta(hours=3), report(app))
    alice = everything(app, tokens["alice"], mine)
    bob = everything(app, tokens["bob"], theirs)
    assert alice["api"]["withheld"] == [{"part": "holdout_accuracy", "until": iso(own_late)}]
    assert_nowhere(alice, *SECRET_DIGITS)
    assert bob["api"]["withheld"] == [] and "9137" in bob["page"]
    assert alice["gradebook"]["exercises"][0]["dates"]["extended"] is True
    assert alice["gradebook"]["exercises"][0]["dates"]["late_until"] == iso(own_late)
    assert bob["gradebook"]["exercises"][0]["dates"]["extended"] is False


def test_another_students_results_are_never_visible(app: Flask, tokens: dict[str, str]):
    now = utcnow()
    theirs = add_graded(app, "bob", now - dt.timedelta(hours=1), report(app, pool1=4.5))
    api = app.test_client()
    assert api.get(f"/api/submissions/{theirs}",
                   headers=bearer(tokens["alice"])).status_code == 404
    assert api.get("/api/submissions", headers=bearer(tokens["alice"])).get_json() == []
    book = api.get("/api/gradebook", headers=bearer(tokens["alice"])).get_json()
    assert book["student_id"] == "alice"
    assert book["exercises"][0]["raw"] is None and book["total"] == 0
    web = logged_in(app, tokens["alice"])
    assert web.get(f"/submissions/{theirs}").status_code == 404
    assert web.get(f"/submissions/{theirs}/status.json").status_code == 404
    assert "4.5" not in web.get("/gradebook").get_data(as_text=True)
    assert api.get("/api/gradebook").status_code == 401


# --- the gradebook ------------------------------------------------------------------------------


def test_the_gradebook_by_hand(app: Flask, tokens: dict[str, str]):
    """Due yesterday, 10%/day, best counts, the open release: an on-time run of about 19
    (accuracy 0.93) and a 33 handed in 25 hours late (two started days: 20% off, worth 26.4)
    -> the 33 counts: raw 33, penalty 6.6, then 2 points added: final 28.4, adjustment 2;
    the total is 28.4% (one exercise of 100 points)."""
    now = utcnow().replace(microsecond=0)
    due = now - dt.timedelta(days=1, hours=2)
    set_rules(app, due=iso(due), late_until=iso(now + dt.timedelta(days=5)),
              late_penalty="10%/day", counts="best", weight="2",
              release=parse_release("open"), timezone="Asia/Tokyo")
    on_time = add_graded(app, "alice", due - dt.timedelta(hours=1),
                         report(app, conv1=6.0, pool1=3.0,
                                accuracies={"test": 0.93, "holdout": 0.93}))
    late = add_graded(app, "alice", due + dt.timedelta(hours=25),
                      report(app, accuracies={"test": 0.99, "holdout": 0.99}))
    with app.app_context():
        scores = {submission: score for submission, score in db.session.execute(
            select(GradingRun.submission_id, GradingRun.score))}
        adjust(db.session, "alice", EXERCISE, 100.0, ["conv1", "pool1", "accuracy"],
               AdjustMode.ADD, 2.0, "the grader misread your pool layer", "teacher")
    raw = scores[late]
    assert raw == 33.0 and raw * 0.8 > scores[on_time]  # the late one is worth more, penalty and all
    book = app.test_client().get("/api/gradebook", headers=bearer(tokens["alice"])).get_json()
    row = book["exercises"][0]
    assert row["submission_id"] == late and row["late"] is True
    assert row["raw"] == pytest.approx(raw)
    assert row["penalty"] == pytest.approx(raw * 0.2)
    assert row["adjustment"] == pytest.approx(2.0)
    assert row["final"] == pytest.approx(raw * 0.8 + 2)
    assert row["counts"] == "best" and row["late_penalty"] == "10%/day"
    assert row["weight"] == 2.0 and row["max_score"] == 100.0
    assert row["dates"] == {"opens": None, "due": iso(due),
                            "late_until": iso(now + dt.timedelta(days=5)),
                            "timezone": "Asia/Tokyo", "extended": False}
    assert book["total"] == pytest.approx(raw * 0.8 + 2)
    assert row["adjustments"][0]["comment"] == "the grader misread your pool layer"
    assert row["adjustments"][0]["points"] == 2.0 and "author" not in row["adjustments"][0]
    assert "teacher" not in json.dumps(book)
    page = logged_in(app, tokens["alice"]).get("/gradebook").get_data(as_text=True)
    assert "the grader misread your pool layer" in page and "teacher" not in page
    assert f"{due + dt.timedelta(hours=9):%Y-%m-%d %H:%M} JST" in page
    assert "per started day" in page
    ja = logged_in(app, tokens["alice"]).get("/gradebook?lang=ja").get_data(as_text=True)
    assert "成績" in ja and "最高得点の提出を採用" in ja and "遅延" in ja


def test_the_provisional_gradebook_counts_public_scores_and_names_no_submission(
        app: Flask, tokens: dict[str, str]):
    """Two submissions: A memorised the test images (public 24/24, held-out poor), B is
    honest but weaker on the test images. Counted by the public scores A is best; by the
    graded ones B is. While provisional, the figures are A's public ones and no id is named."""
    now = utcnow()
    set_rules(app, due=iso(now + dt.timedelta(days=1)),
              late_until=iso(now + dt.timedelta(days=2)))
    memorised = report(app)  # public: 6 + 3 + 24 = 33
    honest = report(app, accuracies={"test": 0.95, "holdout": 0.95, "test-moved": 0.93,
                                     "holdout-moved": 0.93})
    first = add_graded(app, "alice", now - dt.timedelta(hours=2), memorised)
    second = add_graded(app, "alice", now - dt.timedelta(hours=1), honest)
    assert honest["score"] > memorised["score"]  # graded, the honest one is best
    public_honest = honest["score"]  # its held-out figure is no lower: public = graded
    assert 33.0 > public_honest
    book = app.test_client().get("/api/gradebook", headers=bearer(tokens["alice"])).get_json()
    row = book["exercises"][0]
    assert row["provisional"] is True and row["submission_id"] is None
    assert row["raw"] == pytest.approx(33.0) and row["final"] == pytest.approx(33.0)
    assert book["total"] == pytest.approx(33.0) and book["provisional"] is True
    page = logged_in(app, tokens["alice"]).get("/gradebook").get_data(as_text=True)
    assert f"/submissions/{first}" not in page and f"/submissions/{second}" not in page
    assert "provisional" in page
    set_rules(app, due=iso(now - dt.timedelta(minutes=30)),
              late_until=iso(now - dt.timedelta(minutes=10)))
    final = app.test_client().get("/api/gradebook",
                                  headers=bearer(tokens["alice"])).get_json()["exercises"][0]
    assert final["submission_id"] == second and final["final"] == pytest.approx(honest["score"])


def test_the_upload_page_shows_the_students_own_dates(app: Flask, tokens: dict[str, str]):
    now = utcnow()
    due = now + dt.timedelta(days=1)
    set_rules(app, due=iso(due), late_until=iso(now + dt.timedelta(days=2)),
              late_penalty="5%/hour", attempts_per_day="3", timezone="Asia/Tokyo")
    own_due = now + dt.timedelta(days=4)
    with app.app_context():
        schedules.grant_extension(db.session, "alice", EXERCISE, iso(own_due), None, "teacher",
                                  extra_attempts=1)
    add_graded(app, "alice", now - dt.timedelta(minutes=1), report(app))
    page = logged_in(app, tokens["alice"]).get("/").get_data(as_text=True)
    shown = f"{own_due.replace(microsecond=0) + dt.timedelta(hours=9):%Y-%m-%d %H:%M} JST"
    assert shown in page and "extended for you" in page
    assert "5% of the score per started hour late" in page
    # attempts: 3 + 1 extra, one used today (unless the day in Tokyo just turned)
    assert "3 of 4" in page or "4 of 4" in page
    ja = logged_in(app, tokens["alice"]).get("/?lang=ja").get_data(as_text=True)
    assert "得点の 5% " not in ja and "遅れた時間ごと（1 時間未満も 1 時間）に得点の 5%" in ja
    assert "あなたの延長" in ja
    bob = logged_in(app, tokens["bob"]).get("/").get_data(as_text=True)
    assert f"{due.replace(microsecond=0) + dt.timedelta(hours=9):%Y-%m-%d %H:%M} JST" in bob
    assert "extended for you" not in bob and "3 of 3" in bob
    assert "closed at" not in bob
    # once the class's late window is over, Bob is told before he tries; Alice's own dates run on
    set_rules(app, opens=iso(now - dt.timedelta(days=3)), due=iso(now - dt.timedelta(days=2)),
              late_until=iso(now - dt.timedelta(days=1)))
    bob = logged_in(app, tokens["bob"]).get("/").get_data(as_text=True)
    assert "Submissions for this exercise closed at" in bob
    assert "closed at" not in logged_in(app, tokens["alice"]).get("/").get_data(as_text=True)
    set_rules(app, opens=iso(now + dt.timedelta(hours=1)), due=iso(now + dt.timedelta(days=2)),
              late_until="")
    assert "opens for submission at" in logged_in(app, tokens["bob"]).get("/").get_data(
        as_text=True)


def test_the_openapi_document_publishes_the_gradebook_and_withheld(app: Flask):
    document = app.test_client().get("/api/openapi.json").get_json()
    assert document["paths"]["/api/gradebook"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"] == {"$ref": "#/components/schemas/Gradebook"}
    schemas_ = document["components"]["schemas"]
    assert "withheld" in schemas_["Submission"]["properties"]
    assert {"submission_id", "raw", "penalty", "adjustment", "final", "provisional"} <= set(
        schemas_["GradebookExercise"]["properties"])
    score = schemas_["Item"]["properties"]["score"]
    assert {"type": "null"} in score.get("anyOf", [])


def test_a_wrong_network_earns_nothing_provisionally_and_is_told_so(
        app: Flask, tokens: dict[str, str]):
    now = utcnow()
    set_rules(app, due=iso(now + dt.timedelta(days=1)))
    body = report(app)
    accuracy = body["items"][2]
    accuracy["details"]["structure_ok"] = False
    accuracy.update(score=0.0, status="incorrect")
    told = bilingual("accuracy.wrong_network")
    accuracy["feedback"] = {"ja": told.ja, "en": told.en}
    body["score"] = round(sum(i["score"] for i in body["items"]), 4)
    sid = add_graded(app, "alice", now - dt.timedelta(hours=1), body)
    api = everything(app, tokens["alice"], sid)["api"]
    item = next(i for i in api["items"] if i["id"] == "accuracy")
    assert item["score"] == 0.0 and item["status"] == "incorrect"
    assert "not the network this exercise asks for" in item["feedback"]["en"]
    assert api["score"] == pytest.approx(9.0)


def test_the_release_edges_are_the_schedules(app: Flask):
    """Shown after late-until, not at it; an exam's parts once published, at that moment."""
    late_until = dt.datetime(2026, 12, 26, 15, 0)
    rules = Rules(EXERCISE, Dates(due=late_until - dt.timedelta(days=2), late_until=late_until))
    with app.test_request_context():
        body = {"exercise": EXERCISE, "score": 1.0, "items": [], "measured_accuracy": 0.9}
        at = release(body, rules, rules.dates, late_until)
        assert [w.body() for w in at.withheld] == [
            {"part": "holdout_accuracy", "until": "2026-12-26T15:00:00Z"}]
        assert at.body["measured_accuracy"] is None and body["measured_accuracy"] == 0.9
        after = release(body, rules, rules.dates, late_until + dt.timedelta(seconds=1))
        assert after.withheld == [] and after.body["measured_accuracy"] == 0.9
        published = dt.datetime(2026, 12, 20)
        exam = Rules(EXERCISE, rules.dates, release=parse_release("exam"),
                     published_at=published)
        assert len(release(body, exam, exam.dates, published - dt.timedelta(seconds=1)
                           ).withheld) == 4
        assert release(body, exam, exam.dates, published).withheld == []


def test_without_a_public_figure_the_accuracy_score_waits_too(app: Flask):
    """An accuracy item measured on the held-out images alone: nothing public to judge on, so
    its score is withheld with the figure and the total is the other items'."""
    late_until = dt.datetime(2026, 12, 26, 15, 0)
    rules = Rules(EXERCISE, Dates(due=late_until - dt.timedelta(days=2), late_until=late_until))
    body = report(app, accuracies={"holdout": HOLDOUT})
    with app.test_request_context():
        shown = release(body, rules, rules.dates, late_until).body
    accuracy = next(i for i in shown["items"] if i["id"] == "accuracy")
    assert accuracy["score"] is None and accuracy["status"] is None
    assert accuracy["details"]["accuracies"] == {}
    assert shown["score"] == pytest.approx(9.0) and shown["measured_accuracy"] is None
    assert "9137" not in json.dumps(shown)
