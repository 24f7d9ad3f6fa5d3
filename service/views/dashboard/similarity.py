"""An exercise's similarity review on the dashboard (issue 20): the latest finished run's pairs
with both signals, both students' scores and times and the decision in force; the button that
queues a new run; one pair's page with the two students' code side by side (the matching parts
marked), the decision form (dismiss, confirm, reopen, with a comment) and the audit trail; the
pairs as CSV.

A decision never changes a score (``service.domain.similarity_review``); a refused one (no
comment) shows the pair's page again with the message and what was typed, as a 400.
"""

from __future__ import annotations

import logging

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from grader import Exercise
from service.domain import similarity_code
from service.domain.course_rules import RulesError
from service.domain.similarity_review import (
    find_pair,
    load_pair,
    load_review,
    record_decision,
    review_csv,
)
from service.domain.similarity_runs import latest_run, request_run
from service.domain.submissions import known_exercises
from service.states import ReviewDecision
from service.views import frame
from service.views.dashboard.blueprint import bp
from service.views.forms import ReviewForm, SimilarityRunForm
from service.views.frame import Page
from service.views.language import N_, localize

log = logging.getLogger(__name__)

#: What the pages show for a signal that was not measured (no code, no model fingerprint).
NO_SIGNAL = "—"
#: Labels built from values (``dash.sim.decision.<decision>``, ``dash.sim.state.<state>``).
LABELS = (
    N_("dash.sim.decision.open"), N_("dash.sim.decision.dismissed"),
    N_("dash.sim.decision.confirmed"),
    N_("dash.sim.state.queued"), N_("dash.sim.state.running"), N_("dash.sim.state.failed"),
    N_("dash.sim.state.done"),
    N_("dash.sim.action.open"), N_("dash.sim.action.dismissed"),
    N_("dash.sim.action.confirmed"),
)


def percent(value: float | None) -> str:
    """A 0..1 signal as a percentage with one decimal (``81.3 %``), or :data:`NO_SIGNAL`."""
    if value is None:
        return NO_SIGNAL
    return _("dash.sim.percent", n=format_decimal(value * 100, format="0.#"))


def count(value: int | None) -> str:
    return NO_SIGNAL if value is None else format_decimal(value, format="0")


def _spec(exercise_id: str) -> Exercise:
    if exercise_id not in known_exercises():
        abort(404)
    return current_app.config["GRADER"].exercise(exercise_id)


HELPERS = {"percent": percent, "count": count, "no_signal": NO_SIGNAL}


@bp.get("/<exercise_id>/similarity")
def similarity(exercise_id: str) -> str:
    return render_template("dashboard/similarity.html", exercise=_spec(exercise_id),
                           review=load_review(exercise_id), **HELPERS)


@bp.post("/<exercise_id>/similarity/run")
def similarity_run(exercise_id: str) -> BaseResponse:
    _spec(exercise_id)
    if not SimilarityRunForm().validate_on_submit():
        abort(400)
    run, is_new = request_run(exercise_id, str(current_user.username))
    if is_new:
        try:
            from service.queue.dispatch import enqueue_similarity
        except ImportError:  # pragma: no cover - until the similarity job is installed
            log.warning("no similarity job: run %s stays queued", run.id)
        else:
            enqueue_similarity(run.id)
        flash(_("dash.sim.flash.queued", run=run.id), "info")
    else:
        flash(_("dash.sim.flash.already", run=run.id), "info")
    return redirect(url_for("dashboard.similarity", exercise_id=exercise_id), 303)


@bp.get("/<exercise_id>/similarity.csv")
def similarity_csv(exercise_id: str) -> Response:
    _spec(exercise_id)
    return frame.csv_download(review_csv(load_review(exercise_id)),
                              f"{exercise_id}-similarity")


def _pair_page(exercise_id: str, pair_id: int, error: str | None = None,
               status: int = 200) -> Page:
    spec = _spec(exercise_id)
    pair = load_pair(exercise_id, pair_id)
    stored = find_pair(exercise_id, pair_id)
    if pair is None or stored is None:
        abort(404)
    text_a, text_b = similarity_code.pair_code(stored)
    code_a = None if text_a is None else similarity_code.marked_code(text_a, pair.spans.get("a"))
    code_b = None if text_b is None else similarity_code.marked_code(text_b, pair.spans.get("b"))
    latest = latest_run(exercise_id)
    return render_template(
        "dashboard/similarity_pair.html", exercise=spec, pair=pair, code_a=code_a,
        code_b=code_b, latest_run=latest, decisions=list(ReviewDecision), error=error,
        typed=request.form if error else None, max_chars=similarity_code.MAX_CODE_CHARS,
        **HELPERS), status


@bp.get("/<exercise_id>/similarity/<int:pair_id>")
def similarity_pair(exercise_id: str, pair_id: int) -> Page:
    return _pair_page(exercise_id, pair_id)


@bp.post("/<exercise_id>/similarity/<int:pair_id>/decision")
def similarity_decision(exercise_id: str, pair_id: int) -> Page | BaseResponse:
    _spec(exercise_id)
    pair = load_pair(exercise_id, pair_id)
    if pair is None:
        abort(404)
    form = ReviewForm()
    if not form.validate_on_submit():
        return _pair_page(exercise_id, pair_id, _("dash.sim.error.form"), 400)
    try:
        record_decision(exercise_id, pair.a.pk, pair.b.pk, form.decision.data or "",
                        form.comment.data or "", str(current_user.username))
    except RulesError as exc:
        return _pair_page(exercise_id, pair_id, localize(exc.text), 400)
    flash(_("dash.sim.flash.decided",
            decision=_(f"dash.sim.decision.{form.decision.data}")), "info")
    return redirect(url_for("dashboard.similarity_pair", exercise_id=exercise_id,
                            pair_id=pair_id, _anchor="decision"), 303)
