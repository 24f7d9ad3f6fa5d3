"""The JSON API: submit a notebook, follow it, list exercises. Errors are ``{error, message}``.

Answers are built from the models of ``service.views.schemas`` (the same ones the OpenAPI
document at ``/api/openapi.json`` publishes); werkzeug's HTTP errors under ``/api/`` are turned
into JSON by ``service.views.frame``. A student is named by ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from service.domain.release import StudentRelease
from service.domain.submission_pages import DEFAULT_LIMIT, MAX_LIMIT, submissions_page
from service.domain.submissions import Rejection, accept_submission, known_exercises
from service.domain.throttle import Throttle
from service.domain.tokens import check_token
from service.extensions import csrf, db
from service.metrics import upload_rejected
from service.models import Student, Submission
from service.queue.dispatch import enqueue
from service.views import schemas
from service.views.forms import UploadForm
from service.views.frame import client_address, json_error
from service.views.openapi import openapi_document

#: The request header that makes ``POST /api/submissions`` safe to retry.
IDEMPOTENCY_HEADER = "Idempotency-Key"

bp = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(bp)  # bearer tokens, no cookies: CSRF does not apply


def bearer_student() -> Student | None:
    """The student named by ``Authorization: Bearer <token>``, or None. Wrong tokens are
    throttled per address (``service.domain.tokens.check_token``): past the limit the answer is
    429 with ``Retry-After``, whatever the token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    student, wait = check_token(token, client_address(), Throttle.for_tokens(current_app.config))
    if wait:
        raise _Throttled(wait)
    return student


def _require_student() -> Student:
    student = bearer_student()
    if student is None:
        raise _Unauthorized()
    return student


class _Unauthorized(Exception):
    pass


class _Throttled(Exception):
    def __init__(self, wait: int):
        super().__init__(wait)
        self.wait = wait


@bp.errorhandler(_Unauthorized)
def unauthorized(_: _Unauthorized) -> Response:
    response = json_error(401, "unauthorized",
                          "send your personal access token as 'Authorization: Bearer <token>'")
    response.headers["WWW-Authenticate"] = 'Bearer realm="grader"'
    return response


@bp.errorhandler(_Throttled)
def throttled(exc: _Throttled) -> Response:
    response = json_error(429, "throttled", f"too many wrong tokens from this address; try "
                          f"again in {exc.wait} seconds")
    response.headers["Retry-After"] = str(exc.wait)
    return response


@bp.errorhandler(Rejection)
def rejected(exc: Rejection) -> Response:
    upload_rejected(exc.code)
    return json_error(exc.status, exc.code, exc.message, message_ja=exc.message_ja)


@bp.post("/submissions")
def create_submission() -> Response | tuple[Response, int]:
    """Accept a notebook (202). With ``Idempotency-Key``, a retry of the same request gets the
    first answer again (``Idempotent-Replayed: true``), whenever it comes."""
    student = _require_student()
    form = UploadForm(meta={"csrf": False})
    valid = form.validate_on_submit()
    exercise = form.exercise.data or ""
    if not exercise:
        return json_error(400, "missing_exercise", "the form field 'exercise' is required")
    if not valid:
        return json_error(400, "missing_notebook", "the file field 'notebook' is required")
    upload = form.notebook.data
    accepted = accept_submission(student, exercise, upload.filename, upload.read(),
                                 idempotency_key=request.headers.get(IDEMPOTENCY_HEADER))
    if accepted.run_id is not None:
        enqueue(accepted.run_id)
    submission = accepted.submission
    body = schemas.Accepted(
        id=submission.id, duplicate=accepted.duplicate,
        status_url=url_for("api.get_submission", submission_id=submission.id, _external=True))
    response = jsonify(body.model_dump(mode="json"))
    if accepted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202


@bp.get(f"/submissions/{schemas.SUBMISSION_ID}")
def get_submission(submission_id: int) -> Response:
    student = _require_student()
    submission = db.session.get(Submission, submission_id)
    if submission is None or submission.student_pk != student.id:
        # Someone else's is answered as a missing one, word for word: ids say nothing.
        return json_error(404, "not_found", f"no submission {submission_id}")
    shown = StudentRelease(db.session, student.id)(schemas.Submission.of(submission).body())
    return jsonify(shown.body)


@bp.get("/submissions")
def list_submissions() -> Response:
    """A page of the caller's submissions, newest first; ``Link: <...>; rel="next"`` names the
    next page (``?limit=`` up to 100, ``?cursor=`` from that link)."""
    student = _require_student()
    limit = request.args.get("limit", DEFAULT_LIMIT, type=int)
    cursor = request.args.get("cursor", None, type=int)
    unreadable = any(key in request.args and request.args.get(key, type=int) is None
                     for key in ("limit", "cursor"))
    if unreadable or not 1 <= limit <= MAX_LIMIT or (
            cursor is not None and not 1 <= cursor <= schemas.MAX_ID):
        return json_error(400, "bad_page", f"limit is 1 to {MAX_LIMIT}; cursor is the "
                          "number from the previous answer's Link header")
    rows, after = submissions_page(db.session, student.id, limit, cursor)
    released = StudentRelease(db.session, student.id)
    response = jsonify([released(schemas.Submission.of(row).body()).body for row in rows])
    if after is not None:
        next_url = url_for("api.list_submissions", limit=limit, cursor=after, _external=True)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@bp.get("/gradebook")
def gradebook() -> Response:
    """The caller's own gradebook: per exercise their dates, the rules, the counted submission,
    raw, penalty, adjustment, final (as the release rules let them see them), and the course
    total."""
    student = _require_student()
    return jsonify(schemas.gradebook_of(student).model_dump(mode="json"))


@bp.get("/exercises")
def list_exercises_api() -> Response:
    config = current_app.config["GRADER"]
    exercises = [schemas.Exercise.of(config.exercise(exercise_id))
                 for exercise_id in known_exercises()]
    return jsonify([exercise.model_dump(mode="json") for exercise in exercises])


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())
