"""The JSON API's words for a run (``service/states.py``): ``state`` and ``outcome``, and their
older names ``status`` and ``run_status`` sent with the same values and marked deprecated in the
OpenAPI document; a report stored before the rename (its outcome under ``"status"``) still
shows on the API, the student's page and the dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from grader.report import Outcome, stored_outcome
from grader.spec import Text
from service.extensions import db
from service.models import Submission
from tests.service.service_support import bearer, in_session
from tests.service.test_dashboard import add_instructor
from tests.service.test_dashboard import log_in as staff_log_in
from tests.service.test_web import graded_report, log_in, make_submission, store_report

ROSTER = "student_id,name,email\ns001,Aoi Tanaka,\n"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The API's words do not depend on the database: SQLite only."""
    return f"sqlite:///{tmp_path / 't.db'}"


@pytest.fixture
def app_config() -> dict[str, object]:
    return {"WTF_CSRF_ENABLED": False}


@pytest.fixture
def token(app: Flask) -> str:
    from service.domain.roster import import_roster

    with app.app_context():
        issued, _ = import_roster(ROSTER)
    return issued[0].token


def words(body: dict) -> tuple:
    return body["state"], body["outcome"], body["status"], body["run_status"]


def test_the_api_sends_state_and_outcome_and_their_old_names_alike(app: Flask, token: str):
    client = app.test_client()
    page = app.test_client()
    log_in(page, token)
    submission_id = make_submission(app)
    answer = client.get(f"/api/submissions/{submission_id}", headers=bearer(token)).get_json()
    assert words(answer) == ("queued", None, "queued", None)

    report = graded_report()
    report.outcome, report.reason = Outcome.TIMEOUT, Text(ja="時間切れ", en="timeout")
    store_report(app, submission_id, report)

    one = client.get(f"/api/submissions/{submission_id}", headers=bearer(token)).get_json()
    (listed,) = client.get("/api/submissions", headers=bearer(token)).get_json()
    polled = page.get(f"/submissions/{submission_id}/status.json").get_json()
    for body in (one, listed, polled):
        assert words(body) == ("graded", "timeout", "graded", "timeout"), body


def test_the_openapi_document_marks_the_old_names_deprecated(app: Flask):
    schemas = app.test_client().get("/api/openapi.json").get_json()["components"]["schemas"]
    fields = schemas["Submission"]["properties"]

    for old, new in (("status", "state"), ("run_status", "outcome")):
        assert fields[old].get("deprecated") is True, fields[old]
        assert f"alias of ``{new}``" in fields[old]["description"]
        assert "deprecated" not in fields[new], fields[new]
    assert fields["state"]["$ref"] == fields["status"]["$ref"] == "#/components/schemas/RunState"
    assert "Outcome" in schemas and "RunStatus" not in schemas


def test_a_report_stored_before_the_rename_is_read(app: Flask, token: str):
    submission_id = make_submission(app)
    report = graded_report()
    report.outcome, report.reason = Outcome.TIMEOUT, Text(ja="時間切れ", en="timeout")
    store_report(app, submission_id, report)
    with app.app_context():  # as a worker stored it until 2026-12: the outcome under "status"
        run = db.session.get(Submission, submission_id).latest_run
        old = dict(run.report)
        old["status"] = old.pop("outcome")
        run.report = old
        db.session.commit()
    stored = in_session(app, lambda s: s.get(Submission, submission_id).latest_run.report)
    assert "outcome" not in stored and stored_outcome(stored) is Outcome.TIMEOUT

    body = app.test_client().get(f"/api/submissions/{submission_id}",
                                 headers=bearer(token)).get_json()
    assert words(body) == ("graded", "timeout", "graded", "timeout")
    assert [item["id"] for item in body["items"]] == [item.id for item in report.items]
    student: FlaskClient = app.test_client()
    student.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    log_in(student, token)
    page = student.get(f"/submissions/{submission_id}").get_data(as_text=True)
    assert "badge-run-timeout" in page and 'id="item-conv1"' in page
    add_instructor(app)
    staff = app.test_client()
    staff.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert staff_log_in(staff).status_code == 303
    dashboard = staff.get(f"/dashboard/submissions/{submission_id}")
    assert dashboard.status_code == 200
    assert "Cell 3: !pip install was neutralised." in dashboard.get_data(as_text=True)
