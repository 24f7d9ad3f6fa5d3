"""The queue as the instructor sees it: how many runs wait and for how long, what runs now, what
failed and why, and which workers are alive (numbers from ``service.queue.state``); and
grade passback's outbox (``service.domain.lti_outbox``): scores pending, sent and failed, the
platforms' last errors, and "retry now" for the failed ones."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from service.domain.lti_outbox import outbox_state, retry_failed
from service.extensions import db
from service.lti.passback import ring
from service.models import utcnow
from service.queue.heartbeats import ALIVE_SECONDS
from service.queue.state import RECENT, queue_state
from service.views.dashboard.blueprint import bp
from service.views.forms import RetryScoresForm


@bp.get("/queue")
def queue() -> str:
    return render_template("dashboard/queue.html", state=queue_state(db.session), now=utcnow(),
                           recent=RECENT, alive_seconds=ALIVE_SECONDS,
                           outbox=outbox_state(db.session), retry_form=RetryScoresForm())


@bp.post("/queue/lti-retry")
def retry_scores() -> BaseResponse:
    """Make the failed scores (one: ``score``, or all) pending again, due now."""
    form = RetryScoresForm()
    if not form.validate_on_submit():
        abort(400)
    score = int(form.score.data) if form.score.data else None
    count = retry_failed(db.session, score)
    ring(current_app)
    flash(_("dash.flash.lti_retry", count=count), "info")
    return redirect(url_for("dashboard.queue", _anchor="passback"), 303)
