"""The JSON API on SQLite and PostgreSQL: what it answers, and what it stored when it did."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from service.blobs import FolderBlobStore
from service.models import GradingRun, Submission
from tests.service.service_support import (
    EXERCISE,
    bearer,
    count,
    in_session,
    only_run,
    tiny_notebook,
    upload,
)


def uploaded_blobs(app) -> list[Path]:
    root = Path(app.config["UPLOAD_DIR"])
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_202_comes_after_the_row_and_the_file_exist(app, client, submit):
    data = tiny_notebook("hello")
    response = submit(data, filename="mine.ipynb")

    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["duplicate"] is False
    assert body["status_url"].endswith(f"/api/submissions/{body['id']}")
    # Right after the answer, with no worker around: the row, its queued run and the bytes.
    row = in_session(app, lambda s: s.get(Submission, body["id"]))
    assert (row.exercise, row.filename, row.size) == (EXERCISE, "mine.ipynb", len(data))
    assert FolderBlobStore(app.config["UPLOAD_DIR"]).get(row.notebook_sha256) == data
    run = only_run(app, body["id"])
    assert run["state"] == "queued" and run["attempts"] == 0 and run["worker"] is None


def test_status_of_a_queued_submission(client, submit, tokens):
    first = submit(tiny_notebook(1)).get_json()["id"]
    second = submit(tiny_notebook(2), student="bob").get_json()["id"]

    body = client.get(f"/api/submissions/{second}", headers=bearer(tokens["bob"])).get_json()
    assert body["id"] == second and body["state"] == "queued"
    assert body["queue_position"] == 2 and body["attempt"] == 0 and body["runs"] == 1
    assert body["score"] is None and body["items"] == [] and body["progress"] is None
    listed = client.get("/api/submissions", headers=bearer(tokens["alice"])).get_json()
    assert [s["id"] for s in listed] == [first]


@pytest.mark.parametrize("data, code", [
    (b"", "empty_file"),
    (b"this is not json", "invalid_notebook"),
    (b'{"cells": "nope", "nbformat": 4}', "invalid_notebook"),
])
def test_400_for_an_invalid_notebook_stores_nothing(app, submit, data, code):
    response = submit(data)

    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == code and body["message"] and body["message_ja"]
    assert count(app, Submission) == 0 and count(app, GradingRun) == 0
    assert uploaded_blobs(app) == []


def test_400_for_missing_form_fields(app, client, tokens):
    headers = bearer(tokens["alice"])
    no_exercise = client.post("/api/submissions", headers=headers,
                              data={"notebook": upload(tiny_notebook())["notebook"]})
    no_file = client.post("/api/submissions", headers=headers, data={"exercise": EXERCISE})

    assert (no_exercise.status_code, no_exercise.get_json()["error"]) == (400, "missing_exercise")
    assert (no_file.status_code, no_file.get_json()["error"]) == (400, "missing_notebook")
    assert count(app, Submission) == 0


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer gt_not-a-real-token"},
    {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    {"Authorization": "Bearer "},
], ids=["no-header", "unknown-token", "basic-scheme", "empty-token"])
def test_401_without_a_valid_token(app, client, submit, tokens, headers):
    existing = submit(tiny_notebook()).get_json()["id"]

    post = client.post("/api/submissions", headers=headers, data=upload(tiny_notebook("x")))
    get = client.get(f"/api/submissions/{existing}", headers=headers)
    listing = client.get("/api/submissions", headers=headers)

    for response in (post, get, listing):
        assert response.status_code == 401
        assert response.get_json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert count(app, Submission) == 1


def _without_id(response, submission_id: int) -> str:
    """The body with the id asked for (in a message, in a link back to the page) taken out."""
    return (response.get_data(as_text=True).replace(f"submissions/{submission_id}", "ID")
            .replace(f"submission {submission_id}", "ID"))


def test_someone_elses_submission_is_answered_as_a_missing_one(app, client, submit, tokens):
    """No id oracle: the API, status.json, the page and the executed notebook answer another
    student's submission exactly as one that does not exist."""
    alices = submit(tiny_notebook()).get_json()["id"]
    missing = alices + 1000

    def same(path: str, headers: dict[str, str], via) -> None:
        theirs, nothing = via.get(path.format(alices), headers=headers), via.get(
            path.format(missing), headers=headers)
        assert theirs.status_code == nothing.status_code == 404, path
        assert _without_id(theirs, alices) == _without_id(nothing, missing), path

    same("/api/submissions/{}", bearer(tokens["bob"]), client)


def test_a_huge_id_is_a_json_404_not_a_500(client, tokens):
    for huge in (2**31, 2**63, 10**30):
        response = client.get(f"/api/submissions/{huge}", headers=bearer(tokens["alice"]))
        assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_wrong_tokens_from_one_address_are_throttled_and_only_there(make_app, tokens):
    app = make_app(TOKEN_ATTEMPTS=3)
    here, there = app.test_client(), app.test_client()
    here.environ_base["REMOTE_ADDR"] = "10.0.0.66"
    there.environ_base["REMOTE_ADDR"] = "10.0.0.1"
    for n in range(3):
        assert here.get("/api/submissions", headers=bearer(f"gt_guess{n}")).status_code == 401
    refused = here.get("/api/submissions", headers=bearer("gt_guess9"))
    assert refused.status_code == 429 and refused.get_json()["error"] == "throttled"
    assert 25 <= int(refused.headers["Retry-After"]) <= 30
    # a right token from the guessing address waits too (else the answer tells right from wrong)
    assert here.get("/api/submissions", headers=bearer(tokens["alice"])).status_code == 429
    assert there.get("/api/submissions", headers=bearer(tokens["alice"])).status_code == 200


def test_concurrent_wrong_tokens_get_no_more_than_the_limit_answered(make_app, tokens):
    app = make_app(TOKEN_ATTEMPTS=5)
    barrier = threading.Barrier(40)
    statuses: list[int] = []

    def guess(n: int) -> None:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = "10.0.0.66"
        barrier.wait()
        statuses.append(client.get("/api/submissions", headers=bearer(f"gt_{n}")).status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 40 and set(statuses) <= {401, 429}
    assert statuses.count(401) <= 5


def test_the_token_login_form_is_throttled_per_address(make_app, tokens):
    app = make_app(TOKEN_ATTEMPTS=2, WTF_CSRF_ENABLED=False)
    here = app.test_client()
    here.environ_base["REMOTE_ADDR"] = "10.0.0.66"
    here.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    for n in range(2):
        assert here.post("/login", data={"token": f"gt_guess{n}"}).status_code == 422
    refused = here.post("/login", data={"token": tokens["alice"]})
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert "Too many wrong tokens" in refused.get_data(as_text=True)
    there = app.test_client()
    there.environ_base["REMOTE_ADDR"] = "10.0.0.1"
    assert there.post("/login", data={"token": tokens["alice"]}).status_code == 303


def test_student_pages_answer_someone_elses_submission_as_a_missing_one(make_app, tokens):
    app = make_app(WTF_CSRF_ENABLED=False)
    alices = app.test_client().post(
        "/api/submissions", data=upload(tiny_notebook()), headers=bearer(tokens["alice"]),
        content_type="multipart/form-data").get_json()["id"]
    missing = alices + 1000
    bob = app.test_client()
    bob.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert bob.post("/login", data={"token": tokens["bob"]}).status_code == 303
    for path in ("/submissions/{}", "/submissions/{}/status.json", "/submissions/{}/notebook"):
        theirs, nothing = bob.get(path.format(alices)), bob.get(path.format(missing))
        assert theirs.status_code == nothing.status_code == 404, path
        assert _without_id(theirs, alices) == _without_id(nothing, missing), path
    for huge in (2**31, 10**30):
        assert bob.get(f"/submissions/{huge}").status_code == 404
        assert bob.get(f"/submissions/{huge}/status.json").status_code == 404


def test_404_for_an_unknown_exercise_or_submission(app, client, submit, tokens):
    unknown_exercise = submit(tiny_notebook(), exercise="chap99_nothing")
    unknown_id = client.get("/api/submissions/4242", headers=bearer(tokens["alice"]))

    assert unknown_exercise.status_code == 404
    assert unknown_exercise.get_json()["error"] == "unknown_exercise"
    assert unknown_id.status_code == 404 and unknown_id.get_json()["error"] == "not_found"
    assert count(app, Submission) == 0 and uploaded_blobs(app) == []


def test_413_for_an_upload_over_the_limit(make_app, tokens):
    app = make_app(MAX_CONTENT_LENGTH=4096)
    client = app.test_client()
    too_big = tiny_notebook("x" * 8000)
    fits = tiny_notebook("small")

    response = client.post("/api/submissions", headers=bearer(tokens["alice"]),
                           data=upload(too_big))
    accepted = client.post("/api/submissions", headers=bearer(tokens["alice"]),
                           data=upload(fits))

    assert response.status_code == 413
    body = response.get_json()
    assert body["error"] == "too_large"
    assert "4 KiB" in body["message"], body["message"]
    assert accepted.status_code == 202
    assert count(app, Submission) == 1 and len(uploaded_blobs(app)) == 1


def test_429_after_the_rate_limit(make_app, tokens):
    app = make_app(RATE_LIMIT_COUNT=2, RATE_LIMIT_WINDOW=600)
    client = app.test_client()

    def post(marker, student="alice"):
        return client.post("/api/submissions", headers=bearer(tokens[student]),
                           data=upload(tiny_notebook(marker)))

    first, second, third = post(1), post(2), post(3)

    assert [first.status_code, second.status_code, third.status_code] == [202, 202, 429]
    body = third.get_json()
    assert body["error"] == "rate_limited" and "2 submissions per 10 minutes" in body["message"]
    assert body["message_ja"]
    assert count(app, Submission) == 2 and count(app, GradingRun) == 2
    # The limit is per student, and re-sending a notebook just accepted is not a new submission.
    bobs = post(3, student="bob")
    assert bobs.status_code == 202, bobs.get_json()
    again = post(2)
    assert again.status_code == 202 and again.get_json()["id"] == second.get_json()["id"]


def test_the_same_upload_twice_is_one_submission_and_one_run(app, submit):
    data = tiny_notebook("twice")

    first = submit(data)
    second = submit(data)
    someone_else = submit(data, student="bob")

    assert first.status_code == second.status_code == someone_else.status_code == 202
    assert second.get_json() == {**first.get_json(), "duplicate": True}
    assert someone_else.get_json()["id"] != first.get_json()["id"]
    assert count(app, Submission) == 2 and count(app, GradingRun) == 2
    only_run(app, first.get_json()["id"])  # exactly one run
    assert len(uploaded_blobs(app)) == 1  # content-addressed: stored once


def test_the_same_notebook_after_the_duplicate_window_is_a_new_submission(make_app, tokens):
    app = make_app(DUPLICATE_WINDOW=0)
    client = app.test_client()
    data = tiny_notebook("again")

    ids = [client.post("/api/submissions", headers=bearer(tokens["alice"]),
                       data=upload(data)).get_json()["id"] for _ in range(2)]

    assert ids[0] != ids[1] and count(app, GradingRun) == 2


def test_exercises_are_listed_without_a_token(client):
    response = client.get("/api/exercises")

    assert response.status_code == 200
    listed = response.get_json()
    assert [e["id"] for e in listed] == client.application.config["GRADER"].exercise_ids()
    (exercise,) = [e for e in listed if e["id"] == EXERCISE]
    assert exercise["max_score"] == 100
    items = exercise["items"]
    assert [i["id"] for i in items][:3] == ["conv1", "conv2", "conv3"]
    assert sum(i["points"] for i in items) == 100
    assert all(i["title"]["ja"] and i["title"]["en"] for i in items)


# --- the OpenAPI document -----------------------------------------------------------------

def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(document: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _schema_validator(document: dict, schema: dict) -> Draft202012Validator:
    """A validator for ``schema`` whose ``#/components/...`` references resolve in the document."""
    return Draft202012Validator({**schema, "components": document["components"]})


def _flask_path(openapi_path: str) -> str:
    return re.sub(r"\{[^}]+\}", "<>", openapi_path)


def test_openapi_document_describes_the_routes(app, client):
    document = client.get("/api/openapi.json").get_json()

    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] and document["info"]["version"]
    documented = {(_flask_path(path), method.upper())
                  for path, operations in document["paths"].items() for method in operations}
    served = {(re.sub(r"<[^>]+>", "<>", rule.rule), method)
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")
              and rule.rule != "/api/openapi.json"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == served
    for operations in document["paths"].values():
        for operation in operations.values():
            assert operation["summary"] and operation["responses"]
    for ref in set(_refs(document)):
        _resolve(document, ref)  # raises KeyError when dangling
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert set(document["components"]["securitySchemes"]) == {
        name for requirement in document["security"] for name in requirement}


def test_api_answers_match_the_openapi_document(app, client, submit, tokens):
    document = client.get("/api/openapi.json").get_json()
    post = document["paths"]["/api/submissions"]["post"]["responses"]
    get = document["paths"]["/api/submissions/{id}"]["get"]["responses"]

    def check(response, responses):
        declared = responses[str(response.status_code)]
        schema = declared["content"]["application/json"]["schema"]
        errors = list(_schema_validator(document, schema).iter_errors(response.get_json()))
        assert not errors, [e.message for e in errors]

    accepted = submit(tiny_notebook())
    check(accepted, post)
    check(submit(b"junk"), post)
    check(submit(tiny_notebook(2), exercise="nope"), post)
    sub_id = accepted.get_json()["id"]
    check(client.get(f"/api/submissions/{sub_id}", headers=bearer(tokens["alice"])), get)
    check(client.get(f"/api/submissions/{sub_id}", headers=bearer(tokens["bob"])), get)
    check(client.get(f"/api/submissions/{sub_id}"), get)
    check(client.get("/api/submissions/999", headers=bearer(tokens["alice"])), get)
