"""One student on the dashboard: per exercise their dates (their own with an extension, else the
class's), their submissions with the one that counts and the late ones marked, the gradebook's
figures (raw, penalty, adjustment, final), the course total, the form to adjust a score and the
adjustments' audit trail (``service.domain.adjustments``: every change with its author, time,
comment and the final score before and after).

An adjustment the rules refuse (no comment, an unknown item, a negative set) shows the page
again with the message and what was typed, as a 400; nothing is stored then.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response as BaseResponse

from service.domain import adjustments
from service.domain.course_rules import RulesError
from service.domain.final_grade import AdjustMode
from service.domain.gradebook import SubmissionGrade, course_gradebook, grade_submission
from service.domain.schedules import adjustment_history
from service.domain.submissions import known_exercises
from service.extensions import db
from service.lti.passback import queue_after_change
from service.models import Adjustment, Student, Submission
from service.views.dashboard.blueprint import bp
from service.views.forms import AdjustForm, zoned
from service.views.frame import Page
from service.views.language import localize


def _student(student_id: str) -> Student:
    found = db.session.execute(
        select(Student).where(Student.student_id == student_id)).scalar_one_or_none()
    if found is None:
        abort(404)
    return found


def _page(found: Student, error: str | None = None, typed: Any = None,
          status: int = 200) -> Page:
    grader = current_app.config["GRADER"]
    specs = {exercise_id: grader.exercise(exercise_id) for exercise_id in known_exercises()}
    submissions = db.session.execute(
        select(Submission).where(Submission.student_pk == found.id)
        .options(selectinload(Submission.runs))
        .order_by(Submission.created_at, Submission.id)
    ).scalars().all()
    by_exercise: dict[str, list[SubmissionGrade]] = {}
    for submission in submissions:
        by_exercise.setdefault(submission.exercise, []).append(grade_submission(submission))
    book = course_gradebook(db.session, [(i, spec.max_score) for i, spec in specs.items()],
                            student_pk=found.id, items=True)
    row = book.rows[0] if book.rows else None
    trail: dict[str, list[Adjustment]] = {}
    for adjustment in adjustment_history(db.session, found.id):
        trail.setdefault(adjustment.exercise, []).append(adjustment)
    exercises = []
    for column in book.columns:
        exercises.append({"id": column.id, "spec": specs[column.id], "rules": column.rules,
                          "grade": row.exercises[column.id] if row else None,
                          "submissions": by_exercise.get(column.id, []),
                          "trail": trail.get(column.id, [])})
    others = sorted(set(by_exercise) - set(specs))  # handed in for an exercise since removed
    return render_template(
        "dashboard/student.html", student=found, exercises=exercises, total=row.total if row
        else None, others=[(exercise_id, by_exercise[exercise_id]) for exercise_id in others],
        columns=book.columns, zoned=zoned, modes=list(AdjustMode), error=error, typed=typed,
    ), status


@bp.get("/students/<student_id>")
def student(student_id: str) -> Page:
    return _page(_student(student_id))


@bp.post("/students/<student_id>/adjust")
def adjust(student_id: str) -> Page | BaseResponse:
    found = _student(student_id)
    form = AdjustForm()
    exercise_id = form.exercise.data or ""
    if exercise_id not in known_exercises():
        abort(404)
    if not form.validate_on_submit():
        return _page(found, _("dash.adjust.error.form"), request.form, 400)
    spec = current_app.config["GRADER"].exercise(exercise_id)
    try:
        adjusted = adjustments.adjust(
            db.session, found.student_id, exercise_id, spec.max_score,
            [item.id for item in spec.items], AdjustMode(form.mode.data), form.number(),
            form.comment.data or "", author=str(current_user.username),
            item_id=form.target.data or None)
    except RulesError as exc:
        db.session.rollback()
        return _page(found, localize(exc.text), request.form, 400)
    queue_after_change(current_app, exercise_id, [adjusted.student_pk])
    flash("dash.flash.adjusted", "info")
    return redirect(url_for("dashboard.student", student_id=found.student_id,
                            _anchor=f"exercise-{exercise_id}"), 303)
