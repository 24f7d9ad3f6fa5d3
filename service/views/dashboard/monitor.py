"""The queue as the instructor sees it: how many runs wait and for how long, what runs now, what
failed and why, and which workers are alive (numbers from ``service.domain.queue_state``)."""

from __future__ import annotations

from flask import render_template

from service.domain.queue_state import RECENT, queue_state
from service.extensions import db
from service.models import utcnow
from service.queue.heartbeats import ALIVE_SECONDS
from service.views.dashboard.blueprint import bp


@bp.get("/queue")
def queue() -> str:
    return render_template("dashboard/queue.html", state=queue_state(db.session), now=utcnow(),
                           recent=RECENT, alive_seconds=ALIVE_SECONDS)
