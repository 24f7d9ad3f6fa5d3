"""The LMS administrator's page: every address and setting to paste into Moodle 4.x's
"External tool" form or Canvas's developer key, the platforms registered so far and the
tool's keys (``service.lti.lms_settings``, ``service.domain.lti_registrations``,
``service.domain.lti_keys``). Registering a platform is done on the command line
(``flask --app service lti register``), as the page says."""

from __future__ import annotations

import json

from flask import current_app, render_template, request
from flask_babel import gettext as _

from service.domain.lti_keys import key_states
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
from service.views.dashboard.blueprint import bp


@bp.get("/lti")
def lti() -> str:
    urls = tool_urls(public_base(current_app.config.get("PUBLIC_URL"), request.host_url))
    canvas = canvas_configuration(urls, _("lti.tool.title"), _("lti.tool.description"))
    return render_template(
        "dashboard/lti.html", urls=urls, scopes=SCOPES, claims=CLAIMS,
        exercise_parameter=EXERCISE_PARAMETER, platforms=list_platforms(db.session),
        keys=key_states(db.session), public_url_set=bool(current_app.config.get("PUBLIC_URL")),
        canvas_json=json.dumps(canvas, indent=2, ensure_ascii=False))
