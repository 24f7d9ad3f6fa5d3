"""The dashboard's pages about grades: the exercises, one exercise's class table (with its plots,
regrade-all, CSV export and its course rules' section, whose forms ``rules`` handles), one
submission (with its runs, log and timings)."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from grader import Exercise
from service.blobs import BlobMissing, blob_store
from service.domain.course_rules import Part
from service.domain.csv_export import FORMATS, grades_csv
from service.domain.gradebook import (
    GradeRow,
    TableQuery,
    exercise_rows,
    grade_submission,
    summarize,
)
from service.domain.regrades import is_pending, regrade_exercise, regrade_submission
from service.domain.schedules import list_extensions, load_rules, load_rules_source
from service.domain.submissions import known_exercises
from service.extensions import db
from service.models import GradingRun, Submission
from service.queue.dispatch import enqueue
from service.queue.state import queue_counts
from service.views import frame, schemas
from service.views.dashboard.blueprint import bp
from service.views.forms import RegradeAllForm, RegradeForm, local_input, zoned


def load_known_exercise(exercise_id: str) -> Exercise:
    if exercise_id not in known_exercises():
        abort(404)
    return current_app.config["GRADER"].exercise(exercise_id)


def exercise_stats(exercise_id: str, rows: list[GradeRow], deadline: dt.datetime | None = None
                   ) -> dict[str, Any] | None:
    """The plots' numbers (``service.domain.stats``) from the table's ``rows``, with the due time
    for the submissions chart, or None while that module or the chart helpers are not
    installed: the page then goes without its plots."""
    try:
        from service.domain.stats import exercise_stats as compute
    except ImportError:
        return None
    if "plot_histogram" not in current_app.jinja_env.globals:
        return None
    return dict(compute(exercise_id, deadline=deadline, rows=rows))


# --- the exercises ----------------------------------------------------------------------------


@bp.get("/")
def index() -> str:
    exercises = []
    for exercise_id in known_exercises():
        exercise = load_known_exercise(exercise_id)
        exercises.append((exercise, summarize(exercise_rows(db.session, exercise_id))))
    return render_template("dashboard/index.html", exercises=exercises,
                           queue=queue_counts(db.session))


@bp.get("/<exercise_id>")
def exercise(exercise_id: str) -> str:
    spec = load_known_exercise(exercise_id)
    item_ids = tuple(item.id for item in spec.items)
    query = TableQuery.from_args(request.args, item_ids)
    rules = load_rules(db.session, exercise_id)
    rows = exercise_rows(db.session, exercise_id, rules)
    shown = query.apply(rows)
    pages = max(1, math.ceil(len(shown) / PER_PAGE))
    page = min(max(1, request.args.get("page", 1, type=int) or 1), pages)
    pending = sum(row.live for row in rows)
    grants = list_extensions(db.session, exercise_id)
    return render_template(
        "dashboard/exercise.html", exercise=spec,
        rows=shown[(page - 1) * PER_PAGE:page * PER_PAGE], matched=len(shown), total=len(rows),
        page=page, pages=pages, page_url=_page_url,
        summary=summarize(rows), query=query, pending=pending,
        submissions=sum(row.attempts for row in rows),
        latest_count=sum(1 for row in rows if row.attempts),
        stats=exercise_stats(exercise_id, rows, rules.dates.due), sort_url=_sort_url(query),
        formats=FORMATS, columns=grade_columns(rows),
        # the course rules' section (``rules`` owns its forms)
        rules=rules, source=load_rules_source(db.session, exercise_id), parts=list(Part),
        grants_total=len(grants),
        grants=grants if request.args.get("extensions") == "all" else grants[:EXTENSIONS_SHOWN],
        zoned=zoned, local_input=local_input, which=None, typed=None, error=None,
    )


#: Extensions listed on the exercise page; ``?extensions=all`` lists every one (a class where
#: one student in five has one would otherwise add a form per student to every page load).
EXTENSIONS_SHOWN = 10


def grade_columns(rows: list[GradeRow]) -> dict[str, bool]:
    """Which of the gradebook's columns the class table shows: the penalty only when someone
    lost points to one, the adjustment only when someone has one, the raw score with either
    (otherwise it equals the final)."""
    penalty = any(row.grade is not None and row.grade.penalty > 0 for row in rows)
    adjustment = any(row.grade is not None and abs(row.grade.adjustment) > 1e-9 for row in rows)
    return {"raw": penalty or adjustment, "penalty": penalty, "adjustment": adjustment}


#: Students per page of the class table: a thousand rows are 2.5 MB of HTML; a page of them
#: stays small while sorting and filtering still run over the whole class.
PER_PAGE = 100


def _page_url(page: int) -> str:
    """This table (same sort and filters) at ``page``."""
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k not in ("page", "lang")}
    return url_for("dashboard.exercise", exercise_id=(request.view_args or {})["exercise_id"],
                   page=page, _anchor="students", **args)


def _sort_url(query: TableQuery):
    """``sort_url(key)``: this table sorted by ``key``, ascending, or flipped when it already
    is; the filters are kept."""

    def build(key: str) -> str:
        args: dict[str, Any] = {
            k: v for k, v in request.args.items() if k not in ("sort", "order", "lang")
        }
        args["sort"] = key
        args.pop("page", None)  # a new order starts at its first page
        if query.sort == key and not query.descending:
            args["order"] = "desc"
        return url_for("dashboard.exercise", exercise_id=(request.view_args or {})["exercise_id"],
                       _anchor="students", **args)

    return build


@bp.get("/<exercise_id>/grades.csv")
def grades(exercise_id: str) -> Response:
    spec = load_known_exercise(exercise_id)
    fmt = request.args.get("format", "plain")
    if fmt not in FORMATS:
        abort(404)
    rows = exercise_rows(db.session, exercise_id)
    if request.args.get("only") == "graded":
        rows = [row for row in rows if row.final is not None]
    text = grades_csv(spec, rows, fmt, bom=request.args.get("bom") != "0")
    suffix = "-canvas" if fmt == "canvas" else ""
    return frame.csv_download(text, f"{exercise_id}-grades{suffix}")


@bp.post("/<exercise_id>/regrade")
def regrade_all(exercise_id: str) -> BaseResponse:
    load_known_exercise(exercise_id)
    form = RegradeAllForm()
    if not form.validate_on_submit():
        abort(400)
    result = regrade_exercise(exercise_id, form.scope.data)
    for run in result.queued:
        enqueue(run.id)
    flash(_("dash.flash.regraded_all", queued=len(result.queued), skipped=result.skipped),
          "info")
    return redirect(url_for("dashboard.exercise", exercise_id=exercise_id), 303)


# --- one student: ``students`` ------------------------------------------------------------------


def _titles() -> dict[str, Any]:
    return {exercise_id: load_known_exercise(exercise_id).title
            for exercise_id in known_exercises()}


# --- one submission ---------------------------------------------------------------------------


def find_submission(submission_id: int) -> Submission:
    found = db.session.get(Submission, submission_id)
    if found is None:
        abort(404)
    return found


def chosen_run(submission: Submission) -> GradingRun | None:
    """The run named by ``?run=``, else the latest finished one (a pending regrade has nothing
    to show yet), else the latest."""
    wanted = request.args.get("run", type=int)
    if wanted is None:
        finished = [run for run in submission.runs if run.state.is_finished]
        return finished[-1] if finished else submission.latest_run
    run = next((run for run in submission.runs if run.id == wanted), None)
    if run is None:
        abort(404)
    return run


@bp.get(f"/submissions/{schemas.SUBMISSION_ID}")
def submission(submission_id: int) -> str:
    found = find_submission(submission_id)
    run = chosen_run(found)
    grade = grade_submission(found)
    report = (run.report or {}) if run else {}
    return render_template(
        "dashboard/submission.html", submission=found, run=run, grade=grade, report=report,
        diagnostics=report.get("diagnostics") or {}, phases=phase_timings(run, report),
        pending=is_pending(found), title=_titles().get(found.exercise),
    )


#: The grader's timings (``report["timings"]``) in the order a run goes through them.
PHASES = (("kernel_start", "dash.phase.kernel_start"), ("bootstrap", "dash.phase.bootstrap"),
          ("cells", "dash.phase.cells"), ("exports", "dash.phase.exports"),
          ("cleanroom", "dash.phase.cleanroom"), ("scoring", "dash.phase.scoring"))
#: Phases inside the notebook's sandboxes (the clean room runs after them).
INSIDE = ("kernel_start", "bootstrap", "cells", "exports")


def phase_timings(run: GradingRun | None, report: dict[str, Any]) -> list[tuple[str, float]]:
    """(catalog key, seconds) for each phase the run went through: waiting in the queue, then
    the sandboxes' start (their wall time less what ran inside), kernel start, bootstrap, the
    cells, the exports, the clean room's measurements and scoring; the grader's total last."""
    if run is None:
        return []
    phases: list[tuple[str, float]] = []
    if run.started_at is not None:
        phases.append(("dash.phase.queued", (run.started_at - run.queued_at).total_seconds()))
    timings = report.get("timings") or {}
    inside = sum(timings.get(key, 0.0) for key in INSIDE)
    if "sandbox" in timings:
        phases.append(("dash.phase.sandbox", max(0.0, timings["sandbox"] - inside)))
    phases += [(label, timings[key]) for key, label in PHASES if key in timings]
    if "total" in timings:
        phases.append(("dash.phase.total", timings["total"]))
    return phases


@bp.post(f"/submissions/{schemas.SUBMISSION_ID}/regrade")
def regrade_one(submission_id: int) -> BaseResponse:
    found = find_submission(submission_id)
    if not RegradeForm().validate_on_submit():
        abort(400)
    run = regrade_submission(found)
    if run is not None:
        enqueue(run.id)
    flash(_("dash.flash.regraded_one", run=run.id) if run else _("dash.flash.already_pending"),
          "info")
    return redirect(url_for("dashboard.submission", submission_id=submission_id), 303)


@bp.get(f"/submissions/{schemas.SUBMISSION_ID}/notebook")
def executed_notebook(submission_id: int) -> Response:
    """A run's executed notebook: the student's outputs, served with the notebook CSP (no
    scripts, opaque origin) as on the student's page."""
    return frame.executed_notebook(chosen_run(find_submission(submission_id)))


@bp.get(f"/submissions/{schemas.SUBMISSION_ID}/upload.ipynb")
def uploaded_notebook(submission_id: int) -> Response:
    """The notebook as the student handed it in, to open in Jupyter."""
    found = find_submission(submission_id)
    try:
        data = blob_store(current_app).get(found.notebook_sha256)
    except (BlobMissing, OSError):
        abort(404)
    response = Response(data, mimetype="application/x-ipynb+json")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{found.student.student_id}-{found.id}.ipynb")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
