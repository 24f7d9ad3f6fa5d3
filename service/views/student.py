"""Student pages: log in with a token, upload a notebook, follow its grading, read the feedback.

Server-rendered Jinja with a little vanilla JavaScript from ``service/static`` (nothing from a
CDN). Every page works without JavaScript: the upload is a plain multipart form and a page
waiting for its grade refreshes itself with ``<meta http-equiv=refresh>``; with JavaScript the
drop zone accepts a dragged file and the page polls ``status.json`` every 2 s. Forms carry
Flask-WTF's CSRF token (checked app-wide by ``CSRFProtect``). Texts come from the gettext catalogs
(``service.views.language``).

The upload rules themselves (exercise, notebook validity, duplicates, rate limit) live in
``service.domain.submissions``, shared with the JSON API.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import NotFound, RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from grader.spec import Text
from service.domain.submissions import Rejection, accept_submission, known_exercises
from service.domain.tokens import student_for_token
from service.extensions import db, login_manager
from service.models import Submission
from service.storage import BlobStore
from service.views import language
from service.views.api import submission_json
from service.views.language import N_
from service.views.numbers import format_accuracy, format_number

bp = Blueprint("web", __name__)
bp.before_request(language.remember_language)
bp.context_processor(language.template_helpers)

#: The executed notebook holds the student's outputs: no scripts, no requests, an opaque origin.
NOTEBOOK_CSP = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                "font-src data:")
#: Our own pages: only what the app serves (scripts and styles from /static, no inline code).
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'self'")
#: Styles inlined into the executed notebook (its CSP allows inline styles only).
NOTEBOOK_CSS = Path(__file__).resolve().parents[1] / "static" / "notebook.css"
LIVE = ("queued", "running")

Page = str | tuple[str, int]


@bp.record_once
def _login_messages(_state: BlueprintSetupState) -> None:
    # Flask-Login flashes this when a page needs a login; a catalog key, translated when shown.
    login_manager.login_message = N_("flash.login_required")
    login_manager.login_message_category = "info"


@bp.before_request
def _students_only() -> BaseResponse | None:
    """An instructor's session is not a student's: the student pages send it to the dashboard
    (``current_user.id`` would otherwise be read as a student's)."""
    if getattr(current_user, "is_instructor", False) and request.endpoint != "web.logout":
        return redirect(url_for("dashboard.index"))
    return None


@bp.after_request
def _page_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.vary.update(("Accept-Language", "Cookie"))
    return response


# --- logging in and out ---------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> Page | BaseResponse:
    target = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(target or url_for("web.upload"))
    if request.method == "GET":
        return render_template("login.html", next=target)
    token = request.form.get("token", "").strip()
    student = student_for_token(token) if token else None
    if student is None:
        error = _("login.bad_token") if token else _("login.empty")
        return render_template("login.html", next=target, error=error), 422
    login_user(student)
    return redirect(target or url_for("web.upload"), 303)


@bp.post("/logout")
def logout() -> BaseResponse:
    logout_user()
    flash("flash.logged_out", "info")
    return redirect(url_for("web.login"), 303)


def safe_next(target: str | None) -> str | None:
    """A ``next`` address only when it stays on this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


# --- uploading ------------------------------------------------------------------------------


@bp.route("/", methods=["GET", "POST"])
@login_required
def upload() -> Page | BaseResponse:
    if request.method == "GET":
        return _upload_page(request.args.get("exercise"))
    exercise = request.form.get("exercise", "")
    notebook = request.files.get("notebook")
    if notebook is None or not notebook.filename:
        return _upload_page(exercise, error=_("upload.no_file"), status=400)
    try:
        submission, duplicate = accept_submission(
            current_user._get_current_object(), exercise, client_filename(notebook.filename),
            notebook.read())
    except Rejection as rejection:
        message = rejection.message_ja if language.current_language() == "ja" else rejection.message
        return _upload_page(exercise, error=message, status=rejection.status)
    flash(N_("flash.duplicate") if duplicate else N_("flash.submitted"), "info")
    return redirect(url_for("web.submission", submission_id=submission.id), 303)


def _upload_page(exercise: str | None, error: str | None = None, status: int = 200) -> Page:
    titles = exercise_titles()
    selected = exercise if exercise in titles else next(iter(titles), None)
    page = render_template("upload.html", exercises=titles, selected=selected, error=error,
                           max_bytes=current_app.config["MAX_CONTENT_LENGTH"],
                           limit=upload_limit())
    return page, status


def exercise_titles() -> dict[str, Text]:
    """The exercises open for submission, by id, with their titles in both languages."""
    config = current_app.config["GRADER"]
    return {exercise_id: config.exercise(exercise_id).title for exercise_id in known_exercises()}


def client_filename(name: str) -> str:
    """The file's own name: some browsers send the whole client path (``C:\\Users\\…``)."""
    return name.replace("\\", "/").rsplit("/", 1)[-1] or "notebook.ipynb"


def upload_limit() -> str:
    """``20 MiB``, ``4 KiB``, ``500 bytes``: the upload limit as people write it."""
    size = current_app.config["MAX_CONTENT_LENGTH"]
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


# --- following a submission -----------------------------------------------------------------


@bp.get("/submissions")
@login_required
def history() -> str:
    submissions = db.session.execute(
        select(Submission).where(Submission.student_pk == current_user.id)
        .options(selectinload(Submission.runs))
        .order_by(Submission.created_at.desc(), Submission.id.desc())
    ).scalars().all()
    titles = exercise_titles()
    return render_template("history.html", submissions=submissions, titles=titles)


@bp.get("/submissions/<int:submission_id>")
@login_required
def submission(submission_id: int) -> str:
    owned = own_submission(submission_id)
    run = owned.latest_run
    state = submission_json(owned)
    return render_template(
        "submission.html", submission=owned, run=run, state=state,
        report=(run.report or {}) if run else {},
        title=exercise_titles().get(owned.exercise), live=state["status"] in LIVE,
    )


@bp.get("/submissions/<int:submission_id>/status.json")
def submission_status(submission_id: int) -> BaseResponse:
    """The API's view of a submission, for the page's polling: session cookie, not a token."""
    if not current_user.is_authenticated:
        response = jsonify({"error": "unauthorized", "message": "log in again"})
        response.status_code = 401
        return response
    submission_row = db.session.get(Submission, submission_id)
    if submission_row is None or submission_row.student_pk != current_user.id:
        response = jsonify({"error": "not_found", "message": f"no submission {submission_id}"})
        response.status_code = 404
        return response
    response = jsonify(submission_json(submission_row))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/submissions/<int:submission_id>/notebook")
@login_required
def executed_notebook(submission_id: int) -> Response:
    owned = own_submission(submission_id)
    run = owned.latest_run
    if run is None or not run.executed_html_sha256:
        abort(404)
    html = BlobStore(current_app.config["UPLOAD_DIR"]).get(run.executed_html_sha256)
    response = Response(notebook_document(html.decode("utf-8"), language.current_language()),
                        mimetype="text/html")
    response.headers["Content-Security-Policy"] = NOTEBOOK_CSP
    return response


def own_submission(submission_id: int) -> Submission:
    """The current student's submission; 404 for a missing one and for anyone else's alike."""
    found = db.session.get(Submission, submission_id)
    if found is None or found.student_pk != current_user.id:
        abort(404)
    return found


def notebook_document(body: str, lang: str) -> str:
    """A whole HTML document around nbconvert's ``basic`` fragment, with its style inline."""
    if body.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        return body
    css = NOTEBOOK_CSS.read_text(encoding="utf-8")
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f"<style>{css}</style></head><body>{body}</body></html>")


# --- formatting for the templates -----------------------------------------------------------


@bp.context_processor
def _formatters() -> dict[str, object]:
    return {"num": format_number, "shape": format_shape, "accuracy": format_accuracy}


def format_shape(shape: list[int] | tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


# --- error pages ----------------------------------------------------------------------------


@bp.errorhandler(NotFound)
def not_found(_unused: NotFound) -> Page:
    return render_template("error.html", heading=_("error.not_found"),
                           message=_("error.not_found_body")), 404


@bp.errorhandler(RequestEntityTooLarge)
def too_large(_unused: RequestEntityTooLarge) -> Page:
    message = _("upload.too_large", limit=upload_limit())
    if current_user.is_authenticated and request.endpoint == "web.upload":
        return _upload_page(None, error=message, status=413)
    return render_template("error.html", heading=_("error.too_large"), message=message), 413


@bp.errorhandler(CSRFError)
def csrf_failed(_unused: CSRFError) -> Page:
    return render_template("error.html", heading=_("error.csrf"),
                           message=_("error.csrf_body")), 400

