"""The dashboard's blueprint and who may use it: every view but the login needs an instructor.
A student's session gets 403, an anonymous visitor the login page, and an instructor with a
one-time password the form to change it (and nothing else).

The view modules of the package (``access``, ``pages``, ``monitor``) add their routes to ``bp``;
headers, error pages and template helpers come from ``service.views.frame``.
"""

from __future__ import annotations

from flask import redirect, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_login import current_user
from werkzeug.exceptions import Forbidden
from werkzeug.wrappers import Response as BaseResponse

from service.extensions import login_manager
from service.views.frame import is_instructor, page_blueprint

bp = page_blueprint("dashboard", __name__, url_prefix="/dashboard")

#: Views open to anyone (the rest need an instructor).
PUBLIC = {"dashboard.login"}
#: Views an instructor with a one-time password may still use.
BEFORE_NEW_PASSWORD = {"dashboard.password", "dashboard.logout"}


@bp.record_once
def _login_view(_state: BlueprintSetupState) -> None:
    login_manager.blueprint_login_views["dashboard"] = "dashboard.login"


@bp.before_request
def _instructors_only() -> BaseResponse | None:
    if request.endpoint in PUBLIC:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not is_instructor():
        raise Forbidden()
    if current_user.must_change_password and request.endpoint not in BEFORE_NEW_PASSWORD:
        return redirect(url_for("dashboard.password"))
    return None
