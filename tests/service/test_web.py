"""The student pages, through Flask's test client, on a real SQLite file migrated by Alembic
(``tests/service/conftest.py``'s app factory).

No grading worker runs here (``create_app`` starts none and ``enqueue`` only wakes workers that
exist): runs stay queued, or are moved to running/graded/failed by hand with the fields the
worker writes, and reports are built from the grader's own ``GradeReport`` so their shape is the
one the worker stores.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from grader.config import PROJECT_ROOT
from grader.report import GradeReport, ItemResult, ItemStatus, Outcome
from grader.spec import Text
from service.blobs import FolderBlobStore
from service.domain.roster import import_roster
from service.extensions import db
from service.models import GradingRun, Student, Submission, utcnow
from service.views.frame import NOTEBOOK_CSP, safe_next
from service.views.language import LANGUAGES, choose_language
from tests.catalogs import messages, placeholders

EXERCISE = "chap06_cnn"
SOLUTION = PROJECT_ROOT / "reference" / EXERCISE / "solution.ipynb"
ROSTER = "student_id,name,email\ns001,Aoi Tanaka,\ns002,Ben Carter,\n"

AppFactory = Callable[..., Flask]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The student pages on a SQLite file only (the database's behaviour is tested on both
    SQLite and PostgreSQL by the other modules here)."""
    return f"sqlite:///{tmp_path / 't.db'}"


@pytest.fixture
def app_config() -> dict[str, object]:
    """The forms are posted without their CSRF token unless a test asks for it."""
    return {"WTF_CSRF_ENABLED": False}


@pytest.fixture
def tokens(app: Flask) -> dict[str, str]:
    with app.app_context():
        issued, _ = import_roster(ROSTER)
    return {row.student_id: row.token for row in issued}


def log_in(client: FlaskClient, token: str) -> None:
    response = client.post("/login", data={"token": token})
    assert response.status_code == 303, response.get_data(as_text=True)


@pytest.fixture
def client(app: Flask, tokens: dict[str, str]) -> FlaskClient:
    """Student s001, logged in, reading English."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    log_in(client, tokens["s001"])
    return client


def other_client(app: Flask, tokens: dict[str, str]) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    log_in(client, tokens["s002"])
    return client


def post_notebook(client: FlaskClient, data: bytes, exercise: str = EXERCISE,
                  filename: str = "homework.ipynb", **kwargs: object):
    return client.post("/", data={"exercise": exercise,
                                  "notebook": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data", **kwargs)


def count_submissions(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Submission.id)))


def stored_files(app: Flask) -> list[Path]:
    return [p for p in Path(app.config["UPLOAD_DIR"]).rglob("*") if p.is_file()]


def make_submission(app: Flask, student_id: str = "s001", *, state: str = "queued",
                    **run_fields: object) -> int:
    """A submission of the solution with one run in ``state``; returns the submission id."""
    with app.app_context():
        student = db.session.execute(
            select(Student).where(Student.student_id == student_id)).scalar_one()
        sha = FolderBlobStore(app.config["UPLOAD_DIR"]).put(SOLUTION.read_bytes())
        submission = Submission(student=student, exercise=EXERCISE, filename="hw.ipynb",
                                notebook_sha256=sha, size=SOLUTION.stat().st_size)
        run = GradingRun(submission=submission, state=state, **run_fields)
        db.session.add_all([submission, run])
        db.session.commit()
        return submission.id


def graded_report() -> GradeReport:
    return GradeReport(
        exercise=EXERCISE,
        outcome=Outcome.GRADED,
        max_score=32.0,
        items=[
            ItemResult(
                "conv1", Text(ja="畳み込み1 (ストライド1, パディングなし)",
                              en="Convolution 1 (stride 1, VALID)"),
                0.0, 6.0, ItemStatus.INCORRECT,
                feedback=[Text(ja="出力の形が違います: 5x5 になるはずが 3x3 です。",
                               en="Wrong output shape: expected 5x5, got 3x3."),
                          Text(ja="セルでエラーが起きました: ValueError",
                               en="The cell raised ValueError")],
                details={"expected_shape": [1, 5, 5, 1], "submitted_shape": [1, 3, 3, 1]},
            ),
            ItemResult(
                "pool1", Text(ja="プーリング1", en="Pooling 1"), 6.0, 6.0, ItemStatus.CORRECT,
                details={"expected_shape": [1, 3, 3, 1], "submitted_shape": [1, 3, 3, 1]},
            ),
            ItemResult(
                "accuracy", Text(ja="テスト精度", en="Test accuracy"), 10.24, 20.0,
                ItemStatus.PARTIAL,
                feedback=[Text(ja="テスト精度は 0.9512 でした。", en="Measured test accuracy 0.9512."),
                          Text(ja="ノートブックには精度 0.990 と表示されています",
                               en="The notebook printed accuracy 0.990")],
                details={"measured_accuracy": 0.9512, "threshold": 0.975, "floor": 0.9,
                         "claimed_accuracy": 0.99, "claimed_mismatch": True,
                         "accuracies": {"test": 0.9611, "holdout": 0.9512}},
            ),
        ],
        measured_accuracy=0.9512,
        claimed_accuracy=0.99,
        notes=[Text(ja="セル 3 の !pip install を無効にしました。",
                    en="Cell 3: !pip install was neutralised.")],
    )


def store_report(app: Flask, submission_id: int, report: GradeReport,
                 html: str | None = "<div class='cell'>executed output 42</div>") -> None:
    """Write a finished run the way ``service.queue.grading`` does."""
    with app.app_context():
        run = db.session.get(Submission, submission_id).latest_run
        run.state, run.outcome = "graded", report.outcome
        run.reason = report.reason.en if report.reason else None
        run.score, run.max_score = report.score, report.max_score
        run.measured_accuracy, run.claimed_accuracy = (report.measured_accuracy,
                                                       report.claimed_accuracy)
        run.report = report.to_dict()
        if html is not None:
            run.executed_html_sha256 = FolderBlobStore(app.config["UPLOAD_DIR"]).put(html.encode())
        run.finished_at = utcnow()
        db.session.commit()


def text_of(response) -> str:
    return response.get_data(as_text=True)


# --- logging in ------------------------------------------------------------------------------


def test_pages_need_a_login(app: Flask, tokens: dict[str, str]):
    submission_id = make_submission(app)
    anonymous = app.test_client()
    for path in ("/", "/submissions", f"/submissions/{submission_id}",
                 f"/submissions/{submission_id}/notebook"):
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert response.location.startswith("/login?next="), response.location
    status = anonymous.get(f"/submissions/{submission_id}/status.json")
    assert status.status_code == 401 and status.get_json()["error"] == "unauthorized"
    login_page = anonymous.get("/login", headers={"Accept-Language": "en"})
    assert "Please log in to see this page." in text_of(login_page)


def test_a_wrong_token_is_refused_with_a_clear_message(app: Flask, tokens: dict[str, str]):
    client = app.test_client()
    response = client.post("/login", data={"token": "gt_not-a-real-token"},
                           headers={"Accept-Language": "en"})
    assert response.status_code == 422
    assert "This token is not registered" in text_of(response)
    assert client.get("/").status_code == 302  # still logged out
    empty = client.post("/login", data={"token": "  "}, headers={"Accept-Language": "ja"})
    assert empty.status_code == 422 and "トークンを入力してください" in text_of(empty)


def test_login_follows_next_within_the_site_and_logout_ends_the_session(
        app: Flask, tokens: dict[str, str]):
    client = app.test_client()
    response = client.post("/login?next=/submissions", data={"token": f" {tokens['s001']}\n"})
    assert response.status_code == 303 and response.location == "/submissions"
    assert "Aoi Tanaka" in text_of(client.get("/"))
    client.post("/logout")
    assert client.get("/").status_code == 302
    evil = client.post("/login?next=//evil.example/x", data={"token": tokens["s001"]})
    assert evil.location == "/"


@pytest.mark.parametrize(("target", "safe"), [
    ("/submissions/3", "/submissions/3"), ("/?lang=en", "/?lang=en"), (None, None),
    ("//evil.example", None), ("https://evil.example/", None), ("/\\evil.example", None),
    ("submissions", None),
])
def test_safe_next_keeps_only_local_paths(target: str | None, safe: str | None):
    assert safe_next(target) == safe


def test_forms_without_the_csrf_token_are_rejected(make_app: AppFactory):
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        issued, _ = import_roster(ROSTER)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    refused = client.post("/login", data={"token": issued[0].token})
    assert refused.status_code == 400 and "The form has expired" in text_of(refused)
    assert client.get("/").status_code == 302
    csrf = csrf_token_of(text_of(client.get("/login")))
    accepted = client.post("/login", data={"token": issued[0].token, "csrf_token": csrf})
    assert accepted.status_code == 303
    upload = post_notebook(client, SOLUTION.read_bytes())  # logged in, but no token in the form
    assert upload.status_code == 400 and count_submissions(app) == 0


# --- uploading -------------------------------------------------------------------------------


def test_upload_page_lists_the_exercise_with_a_drop_zone(client: FlaskClient):
    page = text_of(client.get("/"))
    assert 'value="chap06_cnn"' in page
    assert "Lecture 6: implementing and training a convolutional neural network" in page
    assert 'enctype="multipart/form-data"' in page and 'type="file"' in page
    assert "data-dropzone" in page and "/static/app.js" in page
    assert "Files up to 20 MiB." in page


def test_an_invalid_notebook_shows_the_reason_and_stores_nothing(app: Flask,
                                                                  client: FlaskClient):
    response = post_notebook(client, b'{"cells": "not a list"}')
    assert response.status_code == 400
    page = text_of(response)
    assert "The notebook was not accepted" in page and "not a valid notebook" in page
    assert count_submissions(app) == 0 and stored_files(app) == []
    japanese = post_notebook(client, b"not json at all", headers={"Accept-Language": "ja"})
    assert japanese.status_code == 400
    assert "ノートブックとして読み込めません" in text_of(japanese)
    assert count_submissions(app) == 0 and stored_files(app) == []


def test_missing_file_and_unknown_exercise_are_refused(app: Flask, client: FlaskClient):
    no_file = client.post("/", data={"exercise": EXERCISE}, content_type="multipart/form-data")
    assert no_file.status_code == 400 and "Choose the notebook to submit." in text_of(no_file)
    unknown = post_notebook(client, SOLUTION.read_bytes(), exercise="chap99_nothing")
    assert unknown.status_code == 404 and "unknown exercise" in text_of(unknown)
    assert count_submissions(app) == 0


def test_a_valid_notebook_is_queued_and_a_duplicate_leads_to_it(app: Flask, client: FlaskClient,
                                                                 monkeypatch: pytest.MonkeyPatch):
    from service.views import student

    handed: list[int] = []  # the view hands the committed run to the queue, the domain does not
    monkeypatch.setattr(student, "enqueue", handed.append)
    response = post_notebook(client, SOLUTION.read_bytes(), filename="/home/aoi/hw6.ipynb")
    assert response.status_code == 303
    match = re.fullmatch(r"/submissions/(\d+)", response.location)
    assert match, response.location
    with app.app_context():
        submission = db.session.get(Submission, int(match.group(1)))
        assert (submission.exercise, submission.filename) == (EXERCISE, "hw6.ipynb")
        assert submission.student.student_id == "s001"
        assert [run.state for run in submission.runs] == ["queued"]
        assert handed == [submission.runs[0].id]
    page = text_of(client.get(response.location))
    assert "Your notebook was received" in page
    assert "Position in the queue: 1" in page
    assert '<meta http-equiv="refresh"' in page and "/static/progress.js" in page

    again = post_notebook(client, SOLUTION.read_bytes())
    assert again.status_code == 303 and again.location == response.location
    assert "You submitted this same notebook a moment ago" in text_of(client.get(again.location))
    assert count_submissions(app) == 1 and len(handed) == 1  # a duplicate queues nothing


def test_the_rate_limit_is_shown_with_429(make_app: AppFactory):
    app = make_app(RATE_LIMIT_COUNT=1)
    with app.app_context():
        issued, _ = import_roster(ROSTER)
    client = app.test_client()
    log_in(client, issued[0].token)
    assert post_notebook(client, SOLUTION.read_bytes()).status_code == 303
    notebook = json.loads(SOLUTION.read_bytes())
    notebook["cells"][0]["source"] += "\n(second attempt)"
    changed = json.dumps(notebook).encode()
    refused = post_notebook(client, changed, headers={"Accept-Language": "ja"})
    assert refused.status_code == 429 and "提出は" in text_of(refused)
    assert count_submissions(app) == 1


def csrf_token_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_a_file_over_the_limit_gets_a_friendly_413(make_app: AppFactory):
    # CSRF on, as in production: the body is refused while CSRFProtect reads the form, before
    # any view runs, and the page is still the friendly one.
    app = make_app(MAX_CONTENT_LENGTH=4096, WTF_CSRF_ENABLED=True)
    with app.app_context():
        issued, _ = import_roster(ROSTER)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    token = csrf_token_of(text_of(client.get("/login")))
    assert client.post("/login", data={"token": issued[0].token, "csrf_token": token}
                       ).status_code == 303
    response = client.post("/", data={"exercise": EXERCISE, "csrf_token": token,
                                      "notebook": (io.BytesIO(SOLUTION.read_bytes()), "hw.ipynb")},
                           content_type="multipart/form-data")
    assert response.status_code == 413
    page = text_of(response)
    assert "The file is larger than the 4 KiB limit." in page
    assert 'type="file"' in page  # the form is back, ready for another file
    assert count_submissions(app) == 0 and stored_files(app) == []


# --- following a submission ------------------------------------------------------------------


def test_another_students_submission_is_not_found(app: Flask, tokens: dict[str, str]):
    submission_id = make_submission(app, "s001")
    store_report(app, submission_id, graded_report())
    intruder = other_client(app, tokens)
    for path in (f"/submissions/{submission_id}", f"/submissions/{submission_id}/notebook",
                 f"/submissions/{submission_id}/status.json", "/submissions/999"):
        assert intruder.get(path).status_code == 404, path
    assert "There is no such submission among yours." in text_of(
        intruder.get(f"/submissions/{submission_id}"))
    assert f"/submissions/{submission_id}" not in text_of(intruder.get("/submissions"))


def test_status_json_follows_the_run(app: Flask, client: FlaskClient):
    first = make_submission(app)
    second = make_submission(app)
    queued = client.get(f"/submissions/{second}/status.json")
    assert queued.status_code == 200 and queued.headers["Cache-Control"] == "no-store"
    body = queued.get_json()
    assert (body["id"], body["state"], body["queue_position"]) == (second, "queued", 2)
    with app.app_context():
        run = db.session.get(Submission, first).latest_run
        run.state, run.started_at = "running", utcnow()
        run.progress = {"cell": 40, "position": 23, "count": 31, "elapsed": 75.4,
                        "text": "epoch 3, accuracy: 0.9712"}
        db.session.commit()
    running = client.get(f"/submissions/{first}/status.json").get_json()
    assert running["state"] == "running" and running["progress"]["position"] == 23
    assert client.get(f"/submissions/{second}/status.json").get_json()["queue_position"] == 1

    page = text_of(client.get(f"/submissions/{first}"))
    assert "Running cell 23 of 31" in page and "Elapsed: 75 s" in page
    assert "epoch 3, accuracy: 0.9712" in page
    assert f'data-status-url="/submissions/{first}/status.json"' in page


def test_feedback_page_shows_score_items_shapes_accuracy_and_notebook(app: Flask,
                                                                        client: FlaskClient):
    submission_id = make_submission(app)
    store_report(app, submission_id, graded_report())
    page = text_of(client.get(f"/submissions/{submission_id}"))
    assert 'http-equiv="refresh"' not in page and "progress.js" not in page
    assert re.search(r'class="big">16\.24</span> / 32<', page)
    assert "Ran to the end" in page
    assert "Cell 3: !pip install was neutralised." in page
    assert "Convolution 1 (stride 1, VALID)" in page and "0 / 6 points" in page
    assert "Wrong output shape: expected 5x5, got 3x3.\nThe cell raised ValueError" in page
    assert "(1, 5, 5, 1)" in page and '<code class="differs">(1, 3, 3, 1)</code>' in page
    assert "Correct" in page and "6 / 6 points" in page
    assert "10.24 / 20 points" in page
    assert "<code>0.9512</code>" in page and '<code class="differs">0.9900</code>' in page
    assert "on the 10,000 test images</dt><dd><code>0.9611</code>" in page
    assert "on images your notebook never saw</dt><dd><code>0.9512</code>" in page
    assert "The accuracy your notebook printed is far from the one the grader measured." in page
    assert f'<iframe sandbox src="/submissions/{submission_id}/notebook"' in page
    assert "出力の形が違います" not in page  # English page: the English feedback only

    japanese = text_of(client.get(f"/submissions/{submission_id}",
                                  headers={"Accept-Language": "ja"}))
    assert "出力の形が違います: 5x5 になるはずが 3x3 です。" in japanese
    assert "セル 3 の !pip install を無効にしました。" in japanese
    assert "Wrong output shape" not in japanese


def test_a_run_stopped_by_a_timeout_says_why(app: Flask, client: FlaskClient):
    report = graded_report()
    report.outcome = Outcome.TIMEOUT
    report.reason = Text(ja="セルの制限時間を超えました（セル 40）。",
                         en="A cell ran past its time limit (cell 40).")
    submission_id = make_submission(app)
    store_report(app, submission_id, report, html=None)
    page = text_of(client.get(f"/submissions/{submission_id}"))
    assert "Timed out" in page and "A cell ran past its time limit (cell 40)." in page
    assert "Items reached before it stopped keep their scores." in page
    assert "<iframe" not in page
    japanese = text_of(client.get(f"/submissions/{submission_id}?lang=ja"))
    assert "セルの制限時間を超えました（セル 40）。" in japanese


def test_a_failed_run_shows_the_reason_and_that_nothing_is_lost(app: Flask,
                                                                 client: FlaskClient):
    submission_id = make_submission(
        app, state="failed", reason="the worker running it stopped 3 times (crash or kill)")
    page = text_of(client.get(f"/submissions/{submission_id}"))
    assert "Grading could not be completed" in page
    assert "Your notebook is stored: nothing is lost." in page
    assert "the worker running it stopped 3 times (crash or kill)" in page
    assert 'http-equiv="refresh"' not in page


def test_history_lists_own_submissions_newest_first(app: Flask, tokens: dict[str, str],
                                                    client: FlaskClient):
    older = make_submission(app)
    newer = make_submission(app)
    store_report(app, older, graded_report())
    theirs = make_submission(app, "s002")
    page = text_of(client.get("/submissions"))
    assert page.index(f"View #{newer}") < page.index(f"View #{older}")
    assert f"View #{theirs}" not in page
    assert "16.24 / 32" in page and "Graded" in page and "Queued" in page
    empty = text_of(other_client(app, tokens).get("/submissions?lang=en"))
    assert f"View #{theirs}" in empty


def test_executed_notebook_is_served_with_a_sandboxing_csp(app: Flask, tokens: dict[str, str],
                                                           client: FlaskClient):
    submission_id = make_submission(app)
    not_yet = client.get(f"/submissions/{submission_id}/notebook")
    assert not_yet.status_code == 404
    store_report(app, submission_id, graded_report())
    response = client.get(f"/submissions/{submission_id}/notebook")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == NOTEBOOK_CSP
    assert NOTEBOOK_CSP.startswith("sandbox;") and "script-src" not in NOTEBOOK_CSP
    html = text_of(response)
    assert html.startswith("<!doctype html>") and "executed output 42" in html
    assert "<style>" in html
    page = client.get(f"/submissions/{submission_id}")
    assert "frame-ancestors 'self'" in page.headers["Content-Security-Policy"]
    assert other_client(app, tokens).get(
        f"/submissions/{submission_id}/notebook").status_code == 404


# --- languages -------------------------------------------------------------------------------


def test_language_follows_accept_language_then_the_switch(app: Flask, tokens: dict[str, str]):
    client = app.test_client()
    japanese = text_of(client.get("/login", headers={"Accept-Language": "ja-JP,ja;q=0.9"}))
    assert '<html lang="ja">' in japanese and "アクセストークン" in japanese
    english = text_of(client.get("/login", headers={"Accept-Language": "en-US,en;q=0.8"}))
    assert '<html lang="en">' in english and "Access token" in english
    assert "アクセストークン" not in english
    assert '<html lang="ja">' in text_of(client.get("/login"))  # no preference: the course's

    switched = text_of(client.get("/login?lang=en", headers={"Accept-Language": "ja"}))
    assert '<html lang="en">' in switched
    remembered = text_of(client.get("/login", headers={"Accept-Language": "ja"}))
    assert '<html lang="en">' in remembered and 'href="/login?lang=ja"' in remembered
    log_in(client, tokens["s001"])
    assert '<html lang="en">' in text_of(client.get("/", headers={"Accept-Language": "ja"}))
    back = text_of(client.get("/?lang=ja"))
    assert '<html lang="ja">' in back and "ノートブックの提出" in back


def test_a_switch_beats_the_remembered_language_which_beats_the_browser():
    browser_en = parse_accept_header("en-US,en;q=0.9", LanguageAccept)
    assert choose_language("ja", "en", browser_en) == "ja"
    assert choose_language(None, "ja", browser_en) == "ja"
    assert choose_language("fr", None, browser_en) == "en"
    assert choose_language(None, None, parse_accept_header("fr", LanguageAccept)) == "ja"


def test_every_catalog_entry_has_both_languages_with_the_same_fields():
    catalogs = {lang: messages("messages", lang) for lang in LANGUAGES}
    keys = set(catalogs["ja"])
    assert all(set(texts) == keys for texts in catalogs.values())
    for key in keys:
        assert all(texts[key] for texts in catalogs.values()), key
        assert placeholders(catalogs["ja"][key]) == placeholders(catalogs["en"][key]), key


def test_every_key_the_pages_use_is_in_the_catalog():
    service = PROJECT_ROOT / "service"
    sources = [*service.joinpath("templates").glob("*.html"), service / "views" / "student.py"]
    used = set()
    for source in sources:
        text = source.read_text(encoding="utf-8")
        used |= set(re.findall(r"""\b_\(\s*["']([\w.]+)["']""", text))
        used |= set(re.findall(r"""flash\(\s*["']([\w.]+)["']""", text))
    assert len(used) > 40  # the scan found the keys (a broken pattern would find none)
    for lang in LANGUAGES:
        assert sorted(used - set(messages("messages", lang))) == []
