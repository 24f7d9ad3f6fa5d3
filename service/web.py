"""Student pages (minimal: being built)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app
from flask_login import current_user, login_required

from service.extensions import db
from service.models import Submission
from service.storage import BlobStore

bp = Blueprint("web", __name__)

NOTEBOOK_CSP = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                "font-src data:")


@bp.get("/login")
def login() -> str:
    return "login"


@bp.get("/submissions/<int:submission_id>/notebook")
@login_required
def executed_notebook(submission_id: int) -> Response:
    submission = db.session.get(Submission, submission_id)
    if submission is None or submission.student_pk != current_user.id:
        abort(404)
    run = submission.latest_run
    if run is None or not run.executed_html_sha256:
        abort(404)
    html = BlobStore(current_app.config["UPLOAD_DIR"]).get(run.executed_html_sha256)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = NOTEBOOK_CSP
    return response
