"""The OpenAPI 3.1 document of the JSON API, served at ``/api/openapi.json``.

Its component schemas are derived from the pydantic models of ``service.views.schemas``, the
ones the handlers build their answers from; this module only adds the paths around them.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from service.domain.submissions import IDEMPOTENCY_KEY, known_exercises
from service.views.schemas import COMPONENTS, MAX_ID

REF = "#/components/schemas/{model}"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "invalid input (nothing queued)", 401: "missing or unknown token",
            403: "refused by the exercise's schedule, nothing stored: `not_open` (before it "
                 "opens) or `closed` (after the student's late-until, or after the due time "
                 "when there is no late window); `message` and `message_ja` say when",
            404: "not found (also someone else's: the answer is the same)",
            413: "upload too large, or the notebook over a limit (cells, sizes, check time)",
            422: "Idempotency-Key already used with another request",
            429: "rate limited, or too many wrong tokens from this address (see Retry-After)",
            507: "the upload store is full or unwritable: nothing stored, retry later"}
    return {str(c): json_body(ref("Error"), text[c]) for c in codes}


def component_schemas() -> dict[str, Any]:
    """Every model of ``COMPONENTS`` and the models they use, as they are serialized."""
    _, document = models_json_schema([(model, "serialization") for model in COMPONENTS],
                                     ref_template=REF)
    return document["$defs"]


IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Makes the request safe to retry: a request with a key this student already "
                   "sent gets the first answer again (same submission id, header "
                   "`Idempotent-Replayed: true`) and stores nothing new, even when both arrive "
                   "at once; the same key with another exercise, file name or notebook gets "
                   "422. Keys are kept as long as their submission.",
    "schema": {"type": "string", "pattern": f"^{IDEMPOTENCY_KEY.pattern}$"},
}


def openapi_document() -> dict[str, Any]:
    """The document, as strict as the handlers: the exercise is one of those open now, an id is
    within the databases' integer range (a larger one is answered 404, like a missing one)."""
    submission_list = {"type": "array", "items": ref("Submission")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Notebook grader API", "version": "1"},
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "the student's personal access token"}},
            "schemas": component_schemas(),
        },
        "security": [{"token": []}],
        "paths": {
            "/api/submissions": {
                "post": {
                    "summary": "Submit a notebook; answers once it is stored and queued",
                    "parameters": [IDEMPOTENCY_PARAMETER],
                    "requestBody": {"required": True, "content": {"multipart/form-data": {
                        "schema": {"type": "object", "required": ["exercise", "notebook"],
                                   "properties": {"exercise": {"type": "string", "minLength": 1,
                                                               "enum": known_exercises()},
                                                  "notebook": {"type": "string",
                                                               "format": "binary"}}}}}},
                    "responses": {
                        "202": {**json_body(ref("Accepted"), "stored and queued (or a "
                                            "duplicate of a submission made seconds ago, or the "
                                            "first answer to this Idempotency-Key, returned)"),
                                "headers": {"Idempotent-Replayed": {
                                    "description": "`true` when this is the first answer to "
                                                   "the request's Idempotency-Key, again",
                                    "schema": {"type": "string", "enum": ["true"]}}}},
                        **_errors(400, 401, 403, 404, 413, 422, 507),
                        "429": json_body(ref("Error"), (
                            "nothing stored: `rate_limited` (too many submissions in the "
                            "window), `daily_limit` (the exercise's attempts per day, the day "
                            "starting at midnight in the course's time zone; an extension may "
                            "add attempts), or `throttled` (too many wrong tokens from this "
                            "address, see Retry-After)")),
                    },
                },
                "get": {"summary": "The caller's submissions, newest first, a page at a time",
                        "parameters": [
                            {"name": "limit", "in": "query", "required": False,
                             "description": "submissions per page (default 50)",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                            {"name": "cursor", "in": "query", "required": False,
                             "description": "from the previous page's Link header",
                             "schema": {"type": "integer", "minimum": 1,
                                        "maximum": MAX_ID}}],
                        "responses": {"200": {**json_body(submission_list, "a page"), "headers": {
                            "Link": {"description": 'the next page: <url>; rel="next", absent '
                                     "on the last page", "schema": {"type": "string"}}}},
                                      **_errors(400, 401, 429)}},
            },
            "/api/submissions/{id}": {
                "get": {
                    "summary": "A submission's state, outcome, score and feedback, as the release "
                               "rules let the student see them (see `withheld`)",
                    "parameters": [{"name": "id", "in": "path", "required": True,
                                    "schema": {"type": "integer", "minimum": 0,
                                               "maximum": MAX_ID}}],
                    "responses": {"200": json_body(ref("Submission"), "the submission"),
                                  **_errors(401, 404, 429)},
                },
            },
            "/api/gradebook": {
                "get": {
                    "summary": "The caller's own gradebook: per exercise their dates, the "
                               "counted submission, raw, penalty, adjustment, final, and the "
                               "course total, as the release rules let them see it",
                    "responses": {"200": json_body(ref("Gradebook"), "the gradebook"),
                                  **_errors(401, 429)},
                },
            },
            "/api/exercises": {
                "get": {"summary": "Exercises open for submission", "security": [],
                        "responses": {"200": json_body({"type": "array",
                                                        "items": ref("Exercise")}, "list")}},
            },
        },
    }
