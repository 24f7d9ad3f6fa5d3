"""The LMS administrator's page: every address and setting to paste into Moodle 4.x's
"External tool" form or Canvas's developer key, the platforms registered so far and the
tool's keys (``service.lti.lms_settings``, ``service.domain.lti_registrations``,
``service.domain.lti_keys``), and the button that syncs the roster from the platforms
(``service.lti.roster``). Registering a platform is done on the command line
(``flask --app service lti register``), as the page says."""

from __future__ import annotations

import json

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from service.domain.lti_keys import key_states
from service.domain.lti_links import membership_sources
from service.domain.lti_registrations import list_platforms
from service.extensions import db
from service.lti.lms_settings import (
    CLAIMS,
    EXERCISE_PARAMETER,
    SCOPES,
    canvas_configuration,
    public_base,
    tool_urls,
)
from service.lti.roster import sync_sources
from service.views.dashboard.blueprint import bp


@bp.get("/lti")
def lti() -> str:
    urls = tool_urls(public_base(current_app.config.get("PUBLIC_URL"), request.host_url))
    canvas = canvas_configuration(urls, _("lti.tool.title"), _("lti.tool.description"))
    return render_template(
        "dashboard/lti.html", urls=urls, scopes=SCOPES, claims=CLAIMS,
        exercise_parameter=EXERCISE_PARAMETER, platforms=list_platforms(db.session),
        keys=key_states(db.session), public_url_set=bool(current_app.config.get("PUBLIC_URL")),
        roster_sources=membership_sources(db.session),
        canvas_json=json.dumps(canvas, indent=2, ensure_ascii=False))


@bp.post("/lti/roster")
def lti_roster() -> BaseResponse:
    """Sync the roster from every course launched so far (Names and Roles); one message per
    course: its counts, or why it was left unchanged."""
    for result in sync_sources(db.session):
        if result.counts is None:
            flash(_("lti.roster.failed", error=result.error), "error")
        else:
            flash(_("lti.roster.done", created=result.counts.created,
                    linked=result.counts.linked, skipped=result.counts.skipped), "info")
    return redirect(url_for("dashboard.lti") + "#roster", 303)
