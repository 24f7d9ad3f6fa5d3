"""The instructors' dashboard: who handed in, how the class did per item, who is stuck, whether
the queue keeps up; regrades and the gradebook export.

One blueprint under ``/dashboard``, its views in this package's modules: ``access`` (login,
logout, password), ``pages`` (exercises, students, submissions, regrades, CSV) and ``monitor``
(the queue). Every view but the login needs an instructor: a student's session gets 403, an
anonymous visitor the login page, and an instructor with a one-time password the form to
change it. Pages are server-rendered and work without JavaScript (sorting and filtering are
query parameters); texts come from the gettext catalogs as on the student pages
(``service.views.language``).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import Forbidden, NotFound
from werkzeug.wrappers import Response as BaseResponse

from service.extensions import login_manager
from service.views import language
from service.views.numbers import format_accuracy, format_duration, format_number
from service.views.student import PAGE_CSP, format_shape

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
bp.before_request(language.remember_language)
bp.context_processor(language.template_helpers)

#: Views open to anyone (the rest need an instructor).
PUBLIC = {"dashboard.login"}
#: Views an instructor with a one-time password may still use.
BEFORE_NEW_PASSWORD = {"dashboard.password", "dashboard.logout"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    try:  # the charts of the exercise page, when installed
        from service.views import plots
    except ImportError:
        return
    plots.init_app(app)


@bp.record_once
def _login_view(_state: BlueprintSetupState) -> None:
    login_manager.blueprint_login_views["dashboard"] = "dashboard.login"


def is_instructor() -> bool:
    return current_user.is_authenticated and getattr(current_user, "is_instructor", False)


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


@bp.after_request
def _page_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")  # grades: not for shared caches
    response.vary.update(("Accept-Language", "Cookie"))
    return response


@bp.context_processor
def _helpers() -> dict[str, object]:
    return {"num": format_number, "shape": format_shape, "accuracy": format_accuracy,
            "duration": format_duration, "is_instructor": is_instructor()}


@bp.errorhandler(Forbidden)
def forbidden(_unused: Forbidden) -> tuple[str, int]:
    return render_template("dashboard/error.html", heading=_("dash.error.forbidden"),
                           message=_("dash.error.forbidden_body")), 403


@bp.errorhandler(NotFound)
def not_found(_unused: NotFound) -> tuple[str, int]:
    return render_template("dashboard/error.html", heading=_("error.not_found"),
                           message=_("dash.error.not_found_body")), 404


@bp.errorhandler(CSRFError)
def csrf_failed(_unused: CSRFError) -> tuple[str, int]:
    return render_template("dashboard/error.html", heading=_("error.csrf"),
                           message=_("error.csrf_body")), 400


from service.views.dashboard import access, monitor, pages  # noqa: E402, F401  (views of ``bp``)
