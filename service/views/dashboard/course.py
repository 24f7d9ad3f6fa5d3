"""The course's gradebook: one row per roster student, each exercise's final score under its
rules and the course total (the weighted mean of each exercise's share of its points,
``service.domain.final_grade.course_total``), with the weights in the header; and the same
gradebook as one CSV for Moodle or Canvas (``service.domain.csv_export.gradebook_csv``)."""

from __future__ import annotations

from flask import Response, abort, current_app, render_template, request

from service.domain.csv_export import FORMATS, gradebook_csv
from service.domain.gradebook import Gradebook, course_gradebook
from service.domain.submissions import known_exercises
from service.extensions import db
from service.views import frame
from service.views.dashboard.blueprint import bp


def _book() -> tuple[Gradebook, dict]:
    grader = current_app.config["GRADER"]
    specs = {exercise_id: grader.exercise(exercise_id) for exercise_id in known_exercises()}
    book = course_gradebook(db.session, [(i, spec.max_score) for i, spec in specs.items()])
    return book, specs


@bp.get("/gradebook")
def gradebook() -> str:
    book, specs = _book()
    return render_template("dashboard/gradebook.html", book=book, specs=specs, formats=FORMATS)


@bp.get("/gradebook.csv")
def gradebook_file() -> Response:
    fmt = request.args.get("format", "plain")
    if fmt not in FORMATS:
        abort(404)
    book, _specs = _book()
    text = gradebook_csv(book, fmt, bom=request.args.get("bom") != "0")
    return frame.csv_download(text, "gradebook-canvas" if fmt == "canvas" else "gradebook")
