"""The OpenAPI 3.1 document of the JSON API, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from service.states import ItemStatus, RunState

ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "invalid input (nothing queued)", 401: "missing or unknown token",
            403: "not yours", 404: "not found", 413: "upload too large", 429: "rate limited"}
    return {str(c): {"description": text[c],
                     "content": {"application/json": {"schema": ERROR}}} for c in codes}


def openapi_document() -> dict[str, Any]:
    item = {
        "type": "object",
        "required": ["id", "score", "max_score", "status", "feedback"],
        "properties": {
            "id": {"type": "string"}, "score": {"type": "number"},
            "max_score": {"type": "number"},
            "status": {"enum": [status.value for status in ItemStatus]},
            "feedback": {"type": "object", "properties": {"ja": {"type": "string"},
                                                          "en": {"type": "string"}}},
            "title": {"type": "object"}, "details": {"type": "object"},
        },
    }
    submission = {
        "type": "object",
        "required": ["id", "exercise", "status", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "exercise": {"type": "string"},
            "status": {"enum": [state.value for state in RunState]},
            "run_status": {"type": ["string", "null"], "description":
                           "how the grading run ended: graded, timeout, out_of_memory, "
                           "kernel_died, sandbox_error"},
            "reason": {"type": ["string", "null"]},
            "score": {"type": ["number", "null"]},
            "max_score": {"type": ["number", "null"]},
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
            "measured_accuracy": {"type": ["number", "null"]},
            "claimed_accuracy": {"type": ["number", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "queue_position": {"type": ["integer", "null"]},
            "progress": {"type": ["object", "null"]},
            "executed_notebook_url": {"type": "string"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Notebook grader API", "version": "1"},
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "the student's personal access token"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"],
                          "properties": {"error": {"type": "string"},
                                         "message": {"type": "string"},
                                         "message_ja": {"type": "string"}}},
                "Item": item,
                "Submission": submission,
            },
        },
        "security": [{"token": []}],
        "paths": {
            "/api/submissions": {
                "post": {
                    "summary": "Submit a notebook; answers once it is stored and queued",
                    "requestBody": {"required": True, "content": {"multipart/form-data": {
                        "schema": {"type": "object", "required": ["exercise", "notebook"],
                                   "properties": {"exercise": {"type": "string"},
                                                  "notebook": {"type": "string",
                                                               "format": "binary"}}}}}},
                    "responses": {
                        "202": {"description": "stored and queued (or a duplicate of a "
                                "submission made seconds ago, which is returned)",
                                "content": {"application/json": {"schema": {
                                    "type": "object", "required": ["id", "status_url"],
                                    "properties": {"id": {"type": "integer"},
                                                   "status_url": {"type": "string"},
                                                   "duplicate": {"type": "boolean"}}}}}},
                        **_errors(400, 401, 404, 413, 429),
                    },
                },
                "get": {"summary": "The caller's submissions, newest first",
                        "responses": {"200": {"description": "list", "content": {
                            "application/json": {"schema": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Submission"}}}}},
                            **_errors(401)}},
            },
            "/api/submissions/{id}": {
                "get": {
                    "summary": "A submission's status, score and feedback",
                    "parameters": [{"name": "id", "in": "path", "required": True,
                                    "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "the submission", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/Submission"}}}},
                        **_errors(401, 403, 404)},
                },
            },
            "/api/exercises": {
                "get": {"summary": "Exercises open for submission", "security": [],
                        "responses": {"200": {"description": "list"}}},
            },
        },
    }
