"""An exercise's course rules on the dashboard: its schedule (dates, late penalty, which
submission counts, daily limit, weight, release rules), publishing its results, and students'
extensions (granted one by one, imported from a CSV, revoked).

The forms live on the exercise page (``dashboard/_rules.html``); each posts here and comes back
to that page. A change the rules refuse (``RulesError``: dates out of order, a penalty not
understood, an unknown student) shows the forms again on this module's page, with the message
in the page's language and what was typed, as a 400; nothing is changed then
(``service.domain.schedules`` writes all or nothing). Dates are typed as local date-times in the
schedule's time zone and sent to the domain as ISO 8601 times with that zone's offset.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from service.domain import schedules
from service.domain.course_rules import Part, RulesError
from service.domain.submissions import known_exercises
from service.extensions import db
from service.lti.passback import queue_after_change
from service.views.dashboard.blueprint import bp
from service.views.forms import (
    ExtensionForm,
    ExtensionsFileForm,
    PublishForm,
    RevokeForm,
    ScheduleForm,
    local_input,
    to_offset_time,
    zoned,
)
from service.views.frame import Page
from service.views.language import N_, localize

#: Labels the rules' template builds from values (``dash.release.part.<part>``, ...).
LABELS = (
    N_("dash.release.part.score"), N_("dash.release.part.feedback"),
    N_("dash.release.part.test_accuracy"), N_("dash.release.part.holdout_accuracy"),
    N_("dash.release.when.always"), N_("dash.release.when.after_due"),
    N_("dash.release.when.after_late_until"), N_("dash.release.when.on_publish"),
    N_("dash.release.when.never"),
    N_("dash.adjust.mode_add"), N_("dash.adjust.mode_set"), N_("dash.adjust.mode_remove"),
)
#: An extensions CSV larger than this is refused before it is read.
MAX_CSV_BYTES = 2 * 1024 * 1024


def rules_context(exercise_id: str) -> dict[str, Any]:
    """What ``dashboard/_rules.html`` shows of an exercise (the exercise page passes the same)."""
    return {"rules": schedules.load_rules(db.session, exercise_id),
            "source": schedules.load_rules_source(db.session, exercise_id),
            "grants": schedules.list_extensions(db.session, exercise_id),
            "parts": list(Part), "zoned": zoned, "local_input": local_input}


def _author() -> str:
    return str(current_user.username)


def _known(exercise_id: str) -> Any:
    if exercise_id not in known_exercises():
        abort(404)
    return current_app.config["GRADER"].exercise(exercise_id)


def _back(exercise_id: str) -> BaseResponse:
    return redirect(url_for("dashboard.exercise", exercise_id=exercise_id, _anchor="rules"), 303)


def _refused(exercise_id: str, which: str, error: str) -> Page:
    """The rules page with ``which`` form shown again as typed, and why it was refused."""
    db.session.rollback()
    return render_template("dashboard/rules.html", exercise=_known(exercise_id), error=error,
                           which=which, typed=request.form, **rules_context(exercise_id)), 400


@bp.get("/<exercise_id>/rules")
def rules_page(exercise_id: str) -> str:
    return render_template("dashboard/rules.html", exercise=_known(exercise_id), error=None,
                           which=None, typed=None, **rules_context(exercise_id))


@bp.post("/<exercise_id>/rules")
def set_rules(exercise_id: str) -> Page | BaseResponse:
    _known(exercise_id)
    form = ScheduleForm()
    if not form.validate_on_submit():
        return _refused(exercise_id, "schedule", _("dash.rules.error.form"))
    try:
        schedules.set_schedule(db.session, exercise_id, form.change(), author=_author())
    except RulesError as exc:
        return _refused(exercise_id, "schedule", localize(exc.text))
    queue_after_change(current_app, exercise_id)
    flash("dash.flash.rules_saved", "info")
    return _back(exercise_id)


@bp.post("/<exercise_id>/publish")
def publish(exercise_id: str) -> BaseResponse:
    _known(exercise_id)
    form = PublishForm()
    if not form.validate_on_submit():
        abort(400)
    published = form.published.data == "1"
    schedules.publish(db.session, exercise_id, _author(), published=published)
    queue_after_change(current_app, exercise_id)
    flash(N_("dash.flash.published") if published else N_("dash.flash.unpublished"), "info")
    return _back(exercise_id)


@bp.post("/<exercise_id>/extensions")
def grant(exercise_id: str) -> Page | BaseResponse:
    _known(exercise_id)
    form = ExtensionForm()
    if not form.validate_on_submit():
        return _refused(exercise_id, "extension", _("dash.ext.error.form"))
    zone_name = schedules.load_rules(db.session, exercise_id).timezone
    try:
        granted = schedules.grant_extension(
            db.session, form.student_id.data or "", exercise_id,
            to_offset_time(form.due.data or "", zone_name),
            to_offset_time(form.late_until.data or "", zone_name) or None, _author(),
            extra_attempts=form.extra(), comment=form.comment.data or "")
    except RulesError as exc:
        return _refused(exercise_id, "extension", localize(exc.text))
    queue_after_change(current_app, exercise_id, [granted.student_pk])
    flash(_("dash.flash.extension_granted", student=form.student_id.data), "info")
    return _back(exercise_id)


@bp.post("/<exercise_id>/extensions/import")
def import_csv(exercise_id: str) -> Page | BaseResponse:
    _known(exercise_id)
    form = ExtensionsFileForm()
    if not form.validate_on_submit():
        return _refused(exercise_id, "import", _("dash.ext.error.no_file"))
    data = form.file.data.read(MAX_CSV_BYTES + 1)
    try:
        if len(data) > MAX_CSV_BYTES:
            raise RulesError("rules.csv_too_large")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RulesError("rules.csv_not_utf8") from None
        count = schedules.import_extensions(db.session, text, known_exercises(), _author())
    except RulesError as exc:
        return _refused(exercise_id, "import", localize(exc.text))
    for known in known_exercises():  # the CSV may name any exercise
        queue_after_change(current_app, known)
    flash(_("dash.flash.extensions_imported", count=count), "info")
    return _back(exercise_id)


@bp.post("/<exercise_id>/extensions/<student_id>/revoke")
def revoke(exercise_id: str, student_id: str) -> BaseResponse:
    _known(exercise_id)
    if not RevokeForm().validate_on_submit():
        abort(400)
    try:
        student_pk = schedules.find_student(db.session, student_id).id
        gone = schedules.revoke_extension(db.session, student_id, exercise_id)
    except RulesError:
        abort(404)
    if not gone:
        abort(404)
    queue_after_change(current_app, exercise_id, [student_pk])
    flash(_("dash.flash.extension_revoked", student=student_id), "info")
    return _back(exercise_id)
