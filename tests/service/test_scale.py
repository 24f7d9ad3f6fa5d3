# ruff: noqa: F811  -- the dashboard tests' fixtures are imported by name and then requested
"""The service at course scale and in operation (issue 9d): the class table in pages and read
without reports, ``GET /api/submissions`` in pages with a bounded number of SQL statements,
``/readyz``, the Prometheus metrics and the JSON logs. On SQLite and PostgreSQL, with the
dashboard tests' fixtures. Speed itself is measured by ``make bench-service``, not here.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event

from service import create_app
from service.domain.roster import import_roster
from service.extensions import db
from service.logs import JsonFormatter, RunIdFilter, run_context
from service.views.dashboard.pages import PER_PAGE
from tests.service.test_dashboard import (  # noqa: F401  (fixtures)
    EXERCISE,
    AppFactory,
    add_submission,
    app,
    app_config,
    graded,
    staff,
    table_ids,
    text_of,
)


@contextlib.contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """The SQL statements run meanwhile on ``app``'s engine (SQLAlchemy's event hook)."""
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def roster(count: int) -> str:
    return "student_id,name,email\n" + "".join(f"t{k:04d},Student {k},\n" for k in range(count))


# --- the class table ---------------------------------------------------------------------------


def test_the_class_table_comes_in_pages_over_the_whole_sorted_class(app: Flask, staff):
    with app.app_context():
        import_roster(roster(PER_PAGE + 10))  # beside s001..s004 of the fixture
    first = text_of(staff.get(f"/dashboard/{EXERCISE}"))
    assert len(table_ids(first)) == PER_PAGE
    assert f"Showing {PER_PAGE + 14} of {PER_PAGE + 14} students" in first
    assert "Page 1 of 2" in first and 'rel="next"' in first
    second = text_of(staff.get(f"/dashboard/{EXERCISE}?page=2"))
    assert len(table_ids(second)) == 14 and 'rel="prev"' in second
    assert set(table_ids(first)).isdisjoint(table_ids(second))
    # sorted over the whole class, not page by page: the last ids come first in descending order
    descending = text_of(staff.get(f"/dashboard/{EXERCISE}?sort=student&order=desc"))
    assert table_ids(descending)[0] == f"t{PER_PAGE + 9:04d}"
    assert len(table_ids(text_of(staff.get(f"/dashboard/{EXERCISE}?page=99")))) == 14


def test_the_table_and_the_csv_never_read_reports_or_feedback(app: Flask, staff):
    for minutes in (30, 60, 90):
        add_submission(app, "s001", graded(70, pool1=(6.0, "correct")), minutes_ago=minutes)
    with statements(app) as seen:
        assert staff.get(f"/dashboard/{EXERCISE}").status_code == 200
        assert staff.get(f"/dashboard/{EXERCISE}/grades.csv").status_code == 200
    loaded = " ".join(seen)
    assert "grading_runs.report" not in loaded and "grading_runs.progress" not in loaded
    assert "item_scores.feedback" not in loaded and "item_scores.details" not in loaded


def test_the_dashboard_reads_as_many_statements_for_many_submissions_as_for_few(
        app: Flask, staff):
    add_submission(app, "s001", graded(50), minutes_ago=10)
    with statements(app) as few:
        staff.get(f"/dashboard/{EXERCISE}")
    for k, student in enumerate(("s001", "s002", "s003", "s004") * 3):
        add_submission(app, student, graded(10 + k), minutes_ago=20 + k)
    with statements(app) as many:
        staff.get(f"/dashboard/{EXERCISE}")
    assert len(many) == len(few)


# --- GET /api/submissions ----------------------------------------------------------------------


@pytest.fixture
def api_app(make_app: AppFactory) -> tuple[Flask, str]:
    app = make_app()
    with app.app_context():
        issued, _ = import_roster("student_id,name,email\ns001,Aoi,\n")
    return app, issued[0].token


def test_the_submission_list_is_paged_by_cursor_and_covers_every_submission_once(api_app):
    app, token = api_app
    made = [add_submission(app, "s001", graded(k), minutes_ago=100 - k) for k in range(7)]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[int] = []
    url: str | None = "/api/submissions?limit=3"
    pages = 0
    while url:
        answer = client.get(url, headers=headers)
        assert answer.status_code == 200
        seen += [row["id"] for row in answer.get_json()]
        link = answer.headers.get("Link")
        url = re.match(r'<http://[^/]+(/[^>]+)>; rel="next"', link).group(1) if link else None
        pages += 1
    assert seen == sorted(made, reverse=True) and pages == 3
    assert len(client.get("/api/submissions", headers=headers).get_json()) == 7
    for bad in ("limit=0", "limit=101", "limit=x", "cursor=x", "cursor=0"):
        answer = client.get(f"/api/submissions?{bad}", headers=headers)
        assert answer.status_code == 400 and answer.get_json()["error"] == "bad_page", bad


def test_the_submission_list_runs_as_many_statements_for_many_submissions_as_for_few(api_app):
    app, token = api_app
    headers = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    add_submission(app, "s001", graded(10), minutes_ago=200)
    with statements(app) as few:
        client.get("/api/submissions", headers=headers)
    for k in range(10):
        add_submission(app, "s001", graded(k), minutes_ago=100 - k)
    with statements(app) as many:
        assert len(client.get("/api/submissions", headers=headers).get_json()) == 11
    assert len(many) == len(few), many


def test_the_openapi_document_describes_the_pages(api_app):
    app, _ = api_app
    operation = app.test_client().get("/api/openapi.json").get_json()[
        "paths"]["/api/submissions"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"limit", "cursor"}
    assert "Link" in operation["responses"]["200"]["headers"]


# --- operations --------------------------------------------------------------------------------


def test_readyz_says_ready_on_a_migrated_database(api_app):
    app, _ = api_app
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 200 and answer.get_json()["status"] == "ok"


def test_readyz_fails_when_the_database_is_gone_or_not_migrated(tmp_path: Path):
    gone = create_app({"TESTING": True, "UPLOAD_DIR": str(tmp_path / "u"),
                       "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    answer = gone.test_client().get("/readyz")
    assert answer.status_code == 503
    assert "database unreachable" in answer.get_json()["problems"][0]
    assert gone.test_client().get("/healthz").status_code == 200  # alive, not ready
    fresh = create_app({"TESTING": True, "UPLOAD_DIR": str(tmp_path / "u"),
                        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'fresh.db'}"})
    answer = fresh.test_client().get("/readyz")
    assert answer.status_code == 503 and "flask db upgrade" in answer.get_json()["problems"][0]


def test_readyz_fails_when_the_celery_broker_is_gone(api_app):
    app, _ = api_app
    app.config.update(QUEUE="celery", CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert any("broker unreachable" in p for p in answer.get_json()["problems"])


def _metric(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_an_upload_rejection_moves_its_metric_and_queue_depth_is_exported(api_app):
    app, token = api_app
    client = app.test_client()
    before = _metric(client.get("/metrics").get_data(as_text=True),
                     "grader_upload_rejections_total", 'code="empty_file"')
    answer = client.post("/api/submissions", headers={"Authorization": f"Bearer {token}"},
                         data={"exercise": EXERCISE, "notebook": (io.BytesIO(b""), "a.ipynb")})
    assert answer.status_code == 400 and answer.get_json()["error"] == "empty_file"
    add_submission(app, "s001", {"state": "queued"}, minutes_ago=5)
    add_submission(app, "s001", {**graded(20), "outcome": "timeout"}, minutes_ago=50)
    text = client.get("/metrics").get_data(as_text=True)
    assert _metric(text, "grader_upload_rejections_total", 'code="empty_file"') == before + 1
    assert _metric(text, "grader_queue_runs", 'state="queued"') == 1
    assert _metric(text, "grader_runs_finished", 'outcome="timeout"') == 1


def test_metrics_with_a_token_answer_only_the_scraper_that_sends_it(api_app):
    app, student_token = api_app
    client = app.test_client()
    assert client.get("/metrics").status_code == 200  # no METRICS_TOKEN: open, as documented
    app.config["METRICS_TOKEN"] = "scrape-secret-0123456789"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {student_token}"},
                    {"Authorization": "Basic scrape-secret-0123456789"}):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == 401, headers
        assert "grader_queue_runs" not in answer.get_data(as_text=True)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-0123456789"})
    assert answer.status_code == 200 and "grader_queue_runs" in answer.get_data(as_text=True)


def test_a_log_record_made_while_grading_carries_the_run_id_as_json():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RunIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("grader.test_scale")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with run_context(42):
            logger.warning("lease lost")
        logger.warning("between runs")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["run_id"] == 42 and first["message"] == "lease lost"
    assert first["level"] == "WARNING" and "time" in first
    assert "run_id" not in second
