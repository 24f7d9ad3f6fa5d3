"""Uploads under hostile load, on SQLite and PostgreSQL: bounded work before anything is
stored, the duplicate window and the rate limit under 30 simultaneous requests, and the
``Idempotency-Key`` of ``POST /api/submissions``.

Concurrency is real: 30 threads, each with its own test client (so its own app context and
database session), released together by a barrier against one app on a database file (SQLite)
or a database server (PostgreSQL). What is checked is the outcome (answers and rows), never
how long anything took.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from service import create_app
from service.extensions import db
from service.models import GradingRun, IdempotencyKey, Submission
from tests.hostile_notebooks import MiB, deeply_nested, many_cells
from tests.service.service_support import bearer, count, tiny_notebook, upload

THREADS = 30


def uploaded_blobs(app: Flask) -> list[Path]:
    root = Path(app.config["UPLOAD_DIR"])
    return sorted(p for p in root.rglob("*") if p.is_file())


def post(app: Flask, token: str, data: bytes, key: str | None = None, **form: Any):
    headers = bearer(token)
    if key is not None:
        headers["Idempotency-Key"] = key
    return app.test_client().post("/api/submissions", data=upload(data, **form),
                                  headers=headers, content_type="multipart/form-data")


def at_once(requests: list[Callable[[], Any]]) -> list[Any]:
    """Run every request in its own thread, all released together; their responses in order
    (an exception in a thread fails the test with it)."""
    barrier = threading.Barrier(len(requests))
    results: list[Any] = [None] * len(requests)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = requests[index]()
        except BaseException as exc:  # reported below, in the test's thread
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a request never answered"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


# --- bounded work before anything is stored ----------------------------------------------


def test_sixty_thousand_cells_in_19_mib_get_413_and_store_nothing(app, submit):
    """Finding: 543 s inside one request thread before its 400. Now refused by the cell or
    value count before the schema is checked (the measured time is in the report)."""
    data = many_cells(60_000, total_bytes=19 * MiB)

    response = submit(data)

    assert response.status_code == 413, response.get_json()
    body = response.get_json()
    assert body["error"] == "notebook_too_large"
    assert "JSON values" in body["message"] or "60000 cells" in body["message"]
    assert body["message_ja"].startswith("ノートブックが上限を超えています")
    assert count(app, Submission) == 0 and uploaded_blobs(app) == []


def test_deeply_nested_json_gets_400_not_500(app, submit):
    """Finding: ``[`` x 100,000 as a notebook was a 500 (RecursionError)."""
    response = submit(deeply_nested(100_000))

    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body["error"] == "invalid_notebook" and "nest more than 64 deep" in body["message"]
    assert body["message_ja"] and count(app, Submission) == 0


def test_an_invalid_last_cell_is_named(app, submit):
    response = submit(many_cells(1000, total_bytes=4 * MiB))

    assert response.status_code == 400
    body = response.get_json()
    assert "cell 1000 does not follow nbformat" in body["message"]
    assert "セル 1000" in body["message_ja"]
    assert count(app, Submission) == 0


@pytest.mark.parametrize("setting, value, data, words", [
    ("UPLOAD_MAX_CELLS", 5, many_cells(6, invalid_last=False), "6 cells; the limit is 5"),
    ("UPLOAD_MAX_CELL_BYTES", MiB // 4, many_cells(2, total_bytes=MiB, invalid_last=False),
     "the limit is 0.25 MiB per cell"),
    ("UPLOAD_MAX_VALUES", 100, many_cells(200, invalid_last=False), "more than 100 JSON values"),
    ("UPLOAD_CHECK_SECONDS", 1e-9, many_cells(3, invalid_last=False), "took more than"),
])
def test_upload_limits_come_from_the_settings(make_app, tokens, setting, value, data, words):
    app = make_app(**{setting: value})

    response = post(app, tokens["alice"], data)

    assert response.status_code == 413, response.get_json()
    assert words in response.get_json()["message"]
    assert count(app, Submission) == 0


def test_a_student_over_the_rate_limit_is_refused_before_the_notebook_is_read(make_app,
                                                                              tokens):
    """The rate limit comes before any expensive step: over it, even a hostile notebook gets
    429 (before, it was parsed and validated first, and got 400 after the work)."""
    app = make_app(RATE_LIMIT_COUNT=1)
    assert post(app, tokens["alice"], tiny_notebook(1)).status_code == 202

    response = post(app, tokens["alice"], deeply_nested(100_000))

    assert response.status_code == 429, response.get_json()
    assert count(app, Submission) == 1


# --- atomic duplicate window and rate limit ------------------------------------------------


def test_the_same_notebook_sent_30_times_at_once_is_one_submission(app, tokens):
    """Finding: up to 8 submissions (the duplicate window was look-then-insert)."""
    data = tiny_notebook("same")

    responses = at_once([lambda: post(app, tokens["alice"], data)] * THREADS)

    assert [r.status_code for r in responses] == [202] * THREADS
    bodies = [r.get_json() for r in responses]
    assert len({body["id"] for body in bodies}) == 1
    assert Counter(body["duplicate"] for body in bodies) == {True: THREADS - 1, False: 1}
    assert count(app, Submission) == 1 and count(app, GradingRun) == 1


def test_30_different_notebooks_at_once_respect_the_rate_limit(make_app, tokens):
    """Finding: 10 per 10 minutes let 14 to 16 of 30 simultaneous uploads through."""
    app = make_app(RATE_LIMIT_COUNT=10, RATE_LIMIT_WINDOW=600)
    notebooks = [tiny_notebook(n) for n in range(THREADS)]

    responses = at_once([lambda data=data: post(app, tokens["alice"], data)
                         for data in notebooks])

    assert Counter(r.status_code for r in responses) == {202: 10, 429: THREADS - 10}
    assert count(app, Submission) == 10 and count(app, GradingRun) == 10
    # Another student is not held up by alice's limit.
    assert post(app, tokens["bob"], notebooks[0]).status_code == 202


# --- Idempotency-Key -------------------------------------------------------------------------


def test_a_retry_with_the_same_key_gets_the_first_submission(app, tokens):
    data = tiny_notebook("retry")
    first = post(app, tokens["alice"], data, key="9b1f6a52-retry")

    again = post(app, tokens["alice"], data, key="9b1f6a52-retry")

    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count(app, Submission) == 1 and count(app, GradingRun) == 1
    # The key is the student's: bob's same key is his own first request.
    bobs = post(app, tokens["bob"], data, key="9b1f6a52-retry")
    assert bobs.status_code == 202 and bobs.get_json()["id"] != first.get_json()["id"]


def test_a_retry_with_the_same_key_after_the_duplicate_window_is_still_the_first(make_app,
                                                                                 tokens):
    app = make_app(DUPLICATE_WINDOW=0)
    data = tiny_notebook("late retry")
    first = post(app, tokens["alice"], data, key="late")

    again = post(app, tokens["alice"], data, key="late")
    no_key = post(app, tokens["alice"], data)

    assert again.get_json()["id"] == first.get_json()["id"]
    assert no_key.get_json()["id"] != first.get_json()["id"]  # without a key: a new one
    assert count(app, Submission) == 2


@pytest.mark.parametrize("change", [
    {"data": tiny_notebook("other")},
    {"filename": "renamed.ipynb"},
])
def test_a_key_reused_with_another_request_gets_422(app, tokens, change):
    first = post(app, tokens["alice"], tiny_notebook("first"), key="k-1")
    request = {"data": tiny_notebook("first"), **change}

    reused = post(app, tokens["alice"], request.pop("data"), key="k-1", **request)

    assert first.status_code == 202
    assert reused.status_code == 422, reused.get_json()
    body = reused.get_json()
    assert body["error"] == "idempotency_key_reused" and "Idempotency-Key" in body["message"]
    assert body["message_ja"]
    assert count(app, Submission) == 1


def test_a_key_with_a_duplicate_answer_is_replayed_as_a_duplicate(app, tokens):
    data = tiny_notebook("dup")
    original = post(app, tokens["alice"], data).get_json()

    keyed = post(app, tokens["alice"], data, key="after-dup")
    again = post(app, tokens["alice"], data, key="after-dup")

    assert keyed.get_json() == {**original, "duplicate": True}
    assert again.get_json() == keyed.get_json()
    assert count(app, Submission) == 1 and count(app, IdempotencyKey) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "日本語"])
def test_a_malformed_key_gets_400(app, tokens, key):
    response = app.test_client().post(
        "/api/submissions", data=upload(tiny_notebook()),
        headers={**bearer(tokens["alice"]), "Idempotency-Key": key.encode().decode("latin-1")})

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_idempotency_key"
    assert count(app, Submission) == 0


def test_30_retries_racing_with_one_key_store_one_submission(make_app, tokens):
    """With the duplicate window off, only the key keeps the racing retries together."""
    app = make_app(DUPLICATE_WINDOW=0)
    data = tiny_notebook("race")

    responses = at_once([lambda: post(app, tokens["alice"], data, key="race-1")] * THREADS)

    assert [r.status_code for r in responses] == [202] * THREADS
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == THREADS - 1
    assert count(app, Submission) == 1 and count(app, IdempotencyKey) == 1


def test_one_key_racing_with_different_notebooks_accepts_one(make_app, tokens):
    app = make_app(DUPLICATE_WINDOW=0)
    notebooks = [tiny_notebook(n) for n in range(THREADS)]

    responses = at_once([lambda data=data: post(app, tokens["alice"], data, key="shared")
                         for data in notebooks])

    assert Counter(r.status_code for r in responses) == {202: 1, 422: THREADS - 1}
    assert count(app, Submission) == 1


def test_openapi_documents_the_idempotency_key(client):
    post_op = client.get("/api/openapi.json").get_json()["paths"]["/api/submissions"]["post"]

    (parameter,) = post_op["parameters"]
    assert parameter["name"] == "Idempotency-Key" and parameter["in"] == "header"
    assert "422" in post_op["responses"]
    assert "Idempotent-Replayed" in post_op["responses"]["202"]["headers"]


def test_the_idempotency_migration_goes_both_ways(database_url, tmp_path):
    app = create_app({"TESTING": True, "SECRET_KEY": "x" * 32, "QUEUE": "embedded",
                      "SQLALCHEMY_DATABASE_URI": database_url,
                      "UPLOAD_DIR": str(tmp_path / "uploads")})
    try:
        with app.app_context():
            upgrade()
            inspector = inspect(db.engine)
            assert "idempotency_keys" in inspector.get_table_names()
            (unique,) = inspector.get_unique_constraints("idempotency_keys")
            assert unique["column_names"] == ["student_pk", "key"]
            db.session.remove()
            downgrade(revision="5e1f0a7d3b21")
            assert "idempotency_keys" not in inspect(db.engine).get_table_names()
            upgrade()
            assert "idempotency_keys" in inspect(db.engine).get_table_names()
    finally:
        with app.app_context():
            db.engine.dispose()
