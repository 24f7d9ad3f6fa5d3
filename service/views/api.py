"""The JSON API: submit a notebook, follow it, list exercises. Errors are ``{error, message}``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from service.domain.submissions import Rejection, accept_submission, known_exercises
from service.domain.tokens import bearer_student
from service.extensions import csrf, db
from service.models import GradingRun, Student, Submission
from service.queue import claims as jobs
from service.states import RunState
from service.views.openapi import openapi_document

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)  # bearer tokens, no cookies: CSRF does not apply


def error(status: int, code: str, message: str, **extra: Any):
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    return response


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    codes = {413: "too_large", 404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
    message = exc.description or exc.name
    if exc.code == 413:
        message = f"the upload is larger than {_size(current_app.config['MAX_CONTENT_LENGTH'])}"
    return error(exc.code or 500, codes.get(exc.code or 500, "error"), message)


def _size(n: int) -> str:
    """``20 MiB``, ``4 KiB``, ``500 bytes``: a limit as people write it (never ``0 MiB``)."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n} bytes"


def _require_student() -> Student:
    student = bearer_student()
    if student is None:
        raise _Unauthorized()
    return student


class _Unauthorized(Exception):
    pass


@bp.errorhandler(_Unauthorized)
def unauthorized(_: _Unauthorized):
    response = error(401, "unauthorized",
                     "send your personal access token as 'Authorization: Bearer <token>'")
    response.headers["WWW-Authenticate"] = 'Bearer realm="grader"'
    return response


@bp.errorhandler(Rejection)
def rejected(exc: Rejection):
    return error(exc.status, exc.code, exc.message, message_ja=exc.message_ja)


@bp.post("/submissions")
def create_submission():
    student = _require_student()
    exercise = request.form.get("exercise", "")
    upload = request.files.get("notebook")
    if not exercise:
        return error(400, "missing_exercise", "the form field 'exercise' is required")
    if upload is None:
        return error(400, "missing_notebook", "the file field 'notebook' is required")
    filename = upload.filename or "notebook.ipynb"
    submission, duplicate = accept_submission(student, exercise, filename, upload.read())
    body = {
        "id": submission.id,
        "status_url": url_for("api.get_submission", submission_id=submission.id, _external=True),
        "duplicate": duplicate,
    }
    return jsonify(body), 202


def submission_json(submission: Submission) -> dict[str, Any]:
    run: GradingRun | None = submission.latest_run
    report = (run.report or {}) if run else {}
    body: dict[str, Any] = {
        "id": submission.id,
        "exercise": submission.exercise,
        "filename": submission.filename,
        "status": run.state if run else RunState.QUEUED,
        "run_status": run.outcome if run else None,
        "reason": run.reason if run else None,
        "score": run.score if run else None,
        "max_score": run.max_score if run else None,
        "items": report.get("items", []),
        "measured_accuracy": run.measured_accuracy if run else None,
        "claimed_accuracy": run.claimed_accuracy if run else None,
        "notes": report.get("notes", []),
        "created_at": _iso(submission.created_at),
        "started_at": _iso(run.started_at) if run else None,
        "finished_at": _iso(run.finished_at) if run else None,
        "attempt": run.attempts if run else 0,
        "runs": len(submission.runs),
        "queue_position": jobs.queue_position(db.session, run.id) if run else None,
        "progress": run.progress if run and run.state == RunState.RUNNING else None,
    }
    if run and run.executed_html_sha256:
        body["executed_notebook_url"] = url_for("web.executed_notebook",
                                                submission_id=submission.id, _external=True)
    return body


def _iso(value) -> str | None:
    return None if value is None else value.isoformat() + "Z"


@bp.get("/submissions/<int:submission_id>")
def get_submission(submission_id: int):
    student = _require_student()
    submission = db.session.get(Submission, submission_id)
    if submission is None:
        return error(404, "not_found", f"no submission {submission_id}")
    if submission.student_pk != student.id:
        return error(403, "forbidden", "this submission belongs to another student")
    return jsonify(submission_json(submission))


@bp.get("/submissions")
def list_submissions():
    student = _require_student()
    rows = sorted(student.submissions, key=lambda s: s.id, reverse=True)
    return jsonify([submission_json(s) for s in rows])


@bp.get("/exercises")
def list_exercises_api():
    config = current_app.config["GRADER"]
    rows = []
    for exercise_id in known_exercises():
        exercise = config.exercise(exercise_id)
        rows.append({
            "id": exercise.id,
            "title": {"ja": exercise.title.ja, "en": exercise.title.en},
            "max_score": exercise.max_score,
            "items": [{"id": i.id, "points": i.points,
                       "title": {"ja": i.title.ja, "en": i.title.en}} for i in exercise.items],
        })
    return jsonify(rows)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
