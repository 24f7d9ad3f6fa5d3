"""Student pages: log in with a token, upload a notebook, follow its grading, read the feedback.

Server-rendered Jinja with a little vanilla JavaScript from ``service/static`` (nothing from a
CDN). Every page works without JavaScript: the upload is a plain multipart form and a page
waiting for its grade refreshes itself with ``<meta http-equiv=refresh>``; with JavaScript the
drop zone accepts a dragged file and the page polls ``status.json`` every second. Forms carry
Flask-WTF's CSRF token (checked app-wide by ``CSRFProtect``) and are read through the classes of
``service.views.forms``. Texts come from the gettext catalogs (Flask-Babel); headers, error
pages and the template helpers from ``service.views.frame``.

The upload rules themselves (exercise, notebook validity, duplicates, rate limit) live in
``service.domain.submissions``, shared with the JSON API.
"""

from __future__ import annotations

import datetime as dt

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from grader import Text
from service.domain.course_rules import LatePenalty, local
from service.domain.release import StudentRelease
from service.domain.student_gradebook import likely_exercise, own_dates
from service.domain.submissions import Rejection, accept_submission, known_exercises
from service.domain.throttle import Throttle
from service.domain.tokens import check_token
from service.extensions import db
from service.metrics import upload_rejected
from service.models import Submission, utcnow
from service.queue.dispatch import enqueue
from service.states import LIVE
from service.views import frame, language, schemas
from service.views.forms import TokenLoginForm, UploadForm
from service.views.frame import Page, client_address, safe_next, upload_limit
from service.views.language import N_

bp = frame.page_blueprint("web", __name__)


@bp.before_request
def _students_only() -> BaseResponse | None:
    """An instructor's session is not a student's: the student pages send it to the dashboard
    (``current_user.id`` would otherwise be read as a student's)."""
    if frame.is_instructor() and request.endpoint != "web.logout":
        return redirect(url_for("dashboard.index"))
    return None


# --- logging in and out ---------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> Page | BaseResponse:
    target = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(target or url_for("web.upload"))
    if request.method == "GET":
        return render_template("login.html", next=target)
    form = TokenLoginForm()
    token = (form.token.data or "").strip()
    if not form.validate_on_submit() or not token:
        return render_template("login.html", next=target, error=_("login.empty")), 422
    student, wait = check_token(token, client_address(),
                                Throttle.for_tokens(current_app.config))
    if wait:
        page = current_app.make_response((render_template(
            "login.html", next=target, error=_("login.throttled", seconds=wait)), 429))
        page.headers["Retry-After"] = str(wait)
        return page
    if student is None:
        return render_template("login.html", next=target, error=_("login.bad_token")), 422
    login_user(student)
    return redirect(target or url_for("web.upload"), 303)


@bp.post("/logout")
def logout() -> BaseResponse:
    return frame.log_out("web.login")


# --- uploading ------------------------------------------------------------------------------


@bp.route("/", methods=["GET", "POST"])
@login_required
def upload() -> Page | BaseResponse:
    if request.method == "GET":
        return _upload_page(request.args.get("exercise"))
    form = UploadForm()
    exercise = form.exercise.data or ""
    if not form.validate_on_submit():
        return _upload_page(exercise, error=_("upload.no_file"), status=400)
    notebook = form.notebook.data
    try:
        accepted = accept_submission(
            current_user._get_current_object(), exercise, client_filename(notebook.filename),
            notebook.read())
    except Rejection as rejection:
        upload_rejected(rejection.code)
        message = rejection.message_ja if language.current_language() == "ja" else rejection.message
        return _upload_page(exercise, error=message, status=rejection.status)
    if accepted.run_id is not None:
        enqueue(accepted.run_id)
    flash(N_("flash.duplicate") if accepted.duplicate else N_("flash.submitted"), "info")
    return redirect(url_for("web.submission", submission_id=accepted.submission.id), 303)


def _upload_page(exercise: str | None, error: str | None = None, status: int = 200) -> Page:
    titles = exercise_titles()
    now = utcnow()
    owns = {exercise_id: own_dates(db.session, current_user.id, exercise_id, now)
            for exercise_id in titles}
    selected = exercise if exercise in titles else likely_exercise(owns)
    page = render_template("upload.html", exercises=titles, selected=selected, error=error,
                           max_bytes=current_app.config["MAX_CONTENT_LENGTH"],
                           limit=upload_limit(), owns=owns, zoned=zoned,
                           penalty_text=penalty_text)
    return page, status


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge) -> Page | BaseResponse | HTTPException:
    """Over the limit on the upload page: the form again, with the limit said; elsewhere the
    frame's error page."""
    if current_user.is_authenticated and request.endpoint == "web.upload":
        return _upload_page(None, error=_("upload.too_large", limit=upload_limit()), status=413)
    return frame.too_large(exc)


def exercise_titles() -> dict[str, Text]:
    """The course's exercises, by id, with their titles in both languages."""
    config = current_app.config["GRADER"]
    return {exercise_id: config.exercise(exercise_id).title for exercise_id in known_exercises()}


def client_filename(name: str) -> str:
    """The file's own name: some browsers send the whole client path (``C:\\Users\\…``)."""
    return name.replace("\\", "/").rsplit("/", 1)[-1] or "notebook.ipynb"


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
    released = StudentRelease(db.session, current_user.id)
    shown = {row.id: released(schemas.Submission.of(row).body()).body for row in submissions}
    return render_template("history.html", submissions=submissions, titles=titles, shown=shown)


@bp.get(f"/submissions/{schemas.SUBMISSION_ID}")
@login_required
def submission(submission_id: int) -> str:
    owned = own_submission(submission_id)
    run = owned.latest_run
    releaser = StudentRelease(db.session, current_user.id)
    shown = releaser(schemas.Submission.of(owned).body())
    rules, _dates = releaser.rules(owned.exercise)
    report = (run.report or {}) if run else {}
    return render_template(
        "submission.html", submission=owned, run=run, shown=shown.body,
        withheld=shown.withheld, provisional=shown.provisional, timezone=rules.timezone,
        zoned=zoned,
        reason=report.get("reason"), executed_omitted_info=report.get("executed_html_omitted"),
        title=exercise_titles().get(owned.exercise), live=shown.body["state"] in LIVE,
    )


@bp.get(f"/submissions/{schemas.SUBMISSION_ID}/status.json")
def submission_status(submission_id: int) -> BaseResponse:
    """The API's view of a submission, for the page's polling: session cookie, not a token."""
    if not current_user.is_authenticated:
        return frame.json_error(401, "unauthorized", "log in again")
    submission_row = db.session.get(Submission, submission_id)
    if submission_row is None or submission_row.student_pk != current_user.id:
        return frame.json_error(404, "not_found", f"no submission {submission_id}")
    shown = StudentRelease(db.session, current_user.id)(
        schemas.Submission.of(submission_row).body())
    response = jsonify(shown.body)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/gradebook")
@login_required
def gradebook() -> str:
    """The student's own gradebook: the same figures as ``GET /api/gradebook``."""
    book = schemas.gradebook_of(current_user._get_current_object())
    return render_template("gradebook.html", book=book, zoned=zoned,
                           penalty_text=lambda spec: penalty_text(LatePenalty.parse(spec)))


def penalty_text(penalty: LatePenalty) -> str:
    """The late penalty in words, in the page's language."""
    if penalty.percent == 0:
        return _("dates.penalty_none")
    percent = f"{penalty.percent:g}"
    if penalty.per == "day":
        return _("dates.penalty_per_day", percent=percent)
    if penalty.per == "hour":
        return _("dates.penalty_per_hour", percent=percent)
    return _("dates.penalty_once", percent=percent)


def zoned(moment: dt.datetime | None, timezone: str) -> str:
    """A naive UTC time as the course shows it: in the schedule's zone, named."""
    return "" if moment is None else f"{local(moment, timezone):%Y-%m-%d %H:%M %Z}"


@bp.get(f"/submissions/{schemas.SUBMISSION_ID}/notebook")
@login_required
def executed_notebook(submission_id: int) -> BaseResponse:
    return frame.executed_notebook(own_submission(submission_id).latest_run)


def own_submission(submission_id: int) -> Submission:
    """The current student's submission; 404 for a missing one and for anyone else's alike."""
    found = db.session.get(Submission, submission_id)
    if found is None or found.student_pk != current_user.id:
        abort(404)
    return found
