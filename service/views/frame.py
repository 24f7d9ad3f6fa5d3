"""What every page and every API answer share, written once: security headers, error pages, the
templates' helpers, the executed notebook's document, safe redirects, logging out, the upload
limit as people write it.

``init_app(app)`` (called by the app factory) registers the headers, the error handlers and the
template helpers for the whole app. They tell the areas apart by :func:`wing`: the JSON API
(``/api/``) answers ``{error, message}``; the student pages and the dashboard answer an HTML page
in their own look, with the pages' Content-Security-Policy; the dashboard's pages (grades) are
also ``Cache-Control: no-store``. The app's own routes (``/static``, ``/healthz``) are left as
Flask serves them.

A view module may import this module, ``forms`` and ``schemas``; it never imports another view
module (``tests/test_layout.py`` checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_login import current_user, logout_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import Forbidden, HTTPException, NotFound, RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from service.blobs import blob_store
from service.extensions import login_manager
from service.lti.cookies import frame_origins
from service.models import GradingRun, utcnow
from service.views import language
from service.views.language import N_
from service.views.notices import executed_omitted
from service.views.numbers import (
    format_accuracy,
    format_duration,
    format_number,
    format_shape,
    format_size,
)
from service.views.schemas import Error

#: The executed notebook holds the student's outputs: no scripts, no requests, an opaque origin.
NOTEBOOK_CSP = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                "font-src data:")
#: Our own pages: only what the app serves (scripts and styles from /static, no inline code).
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'self'")
#: Styles inlined into the executed notebook (its CSP allows inline styles only).
NOTEBOOK_CSS = Path(__file__).resolve().parents[1] / "static" / "notebook.css"
#: The API's error code for an HTTP status werkzeug raised.
API_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
             413: "too_large"}

Page = str | tuple[str, int]
Wing = Literal["web", "api", "dashboard"]


def init_app(app: Flask) -> None:
    """Headers, error handlers and template helpers for every area of the app."""
    # Flask-Login flashes this when a page needs a login; a catalog key, translated when shown.
    login_manager.login_message = N_("flash.login_required")
    login_manager.login_message_category = "info"
    app.after_request(_security_headers)
    app.context_processor(language.template_helpers)
    app.context_processor(_template_helpers)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(NotFound, not_found)
    app.register_error_handler(Forbidden, forbidden)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(CSRFError, csrf_failed)


def page_blueprint(name: str, import_name: str, **options: Any) -> Blueprint:
    """A blueprint of HTML pages: a ``?lang=`` switch is remembered for the following pages."""
    bp = Blueprint(name, import_name, **options)
    bp.before_request(language.remember_language)
    return bp


def wing() -> Wing | None:
    """The area this request belongs to, by its blueprint (or, for an address no route
    matched, by its path); None for the app's own routes (static files, health check)."""
    if request.blueprint in ("web", "api", "dashboard"):
        return cast(Wing, request.blueprint)
    if request.endpoint is not None:
        return None
    path = request.path
    if path == "/api" or path.startswith("/api/"):
        return "api"
    if path == "/dashboard" or path.startswith("/dashboard/"):
        return "dashboard"
    return "web"


def client_address() -> str:
    """The peer's address, the throttle's key. Behind a reverse proxy, wrap the app in
    werkzeug's ``ProxyFix`` so that this is the browser's address rather than the proxy's."""
    return request.remote_addr or "unknown"


def is_instructor() -> bool:
    """Whether an instructor (not a student) is logged in."""
    return current_user.is_authenticated and getattr(current_user, "is_instructor", False)


# --- headers -----------------------------------------------------------------------------------


def page_csp() -> str:
    """The pages' policy; a session opened by an LTI launch may also be shown in frames of its
    platform (``service.lti.cookies``)."""
    origins = frame_origins()
    return PAGE_CSP + "".join(" " + origin for origin in origins)


def _security_headers(response: Response) -> Response:
    area = wing()
    if area not in ("web", "dashboard"):
        return response
    response.headers.setdefault("Content-Security-Policy", page_csp())
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if area == "dashboard":
        response.headers.setdefault("Cache-Control", "no-store")  # grades: not for shared caches
    response.vary.update(("Accept-Language", "Cookie"))
    return response


# --- errors ------------------------------------------------------------------------------------


def json_error(status: int, code: str, message: str, message_ja: str | None = None) -> Response:
    """The API's refusal: ``{error, message}`` (and ``message_ja`` when given)."""
    response = jsonify(Error(error=code, message=message, message_ja=message_ja).body())
    response.status_code = status
    return response


def error_page(status: int, heading: str, message: str) -> Page:
    """An error as an HTML page in the look of the area it happened in."""
    template = "dashboard/error.html" if wing() == "dashboard" else "error.html"
    return render_template(template, heading=heading, message=message), status


def _api_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = exc.description or exc.name
    if status == 413:
        with force_locale("en"):  # the API's ``message`` is English (``message_ja`` aside)
            message = f"the upload is larger than {upload_limit()}"
    response = json_error(status, API_CODES.get(status, "error"), message)
    # werkzeug's own headers (a 405's ``Allow``) belong to the answer too, its body aside
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _http_error(exc: HTTPException) -> HTTPException | Response:
    """Any other HTTP error: JSON under ``/api/``, werkzeug's own page elsewhere."""
    return _api_error(exc) if wing() == "api" else exc


def not_found(exc: NotFound) -> Page | HTTPException | Response:
    area = wing()
    if area == "api":
        return _api_error(exc)
    if area == "dashboard":
        return error_page(404, _("error.not_found"), _("dash.error.not_found_body"))
    if area == "web":
        return error_page(404, _("error.not_found"), _("error.not_found_body"))
    return exc


def forbidden(exc: Forbidden) -> Page | HTTPException | Response:
    area = wing()
    if area == "api":
        return _api_error(exc)
    if area == "dashboard":
        return error_page(403, _("dash.error.forbidden"), _("dash.error.forbidden_body"))
    return exc


def too_large(exc: RequestEntityTooLarge) -> Page | HTTPException | Response:
    area = wing()
    if area == "api":
        return _api_error(exc)
    if area is None:
        return exc
    return error_page(413, _("error.too_large"), _("upload.too_large", limit=upload_limit()))


def csrf_failed(exc: CSRFError) -> Page | HTTPException | Response:
    area = wing()
    if area == "api":
        return _api_error(exc)
    if area is None:
        return exc
    return error_page(400, _("error.csrf"), _("error.csrf_body"))


# --- template helpers --------------------------------------------------------------------------


def _template_helpers() -> dict[str, object]:
    return {"num": format_number, "shape": format_shape, "accuracy": format_accuracy,
            "duration": format_duration, "is_instructor": is_instructor(),
            "executed_omitted": executed_omitted}


def upload_limit() -> str:
    """The upload limit (``MAX_CONTENT_LENGTH``) as people write it, in the page's language."""
    return format_size(current_app.config["MAX_CONTENT_LENGTH"])


# --- the executed notebook ---------------------------------------------------------------------


def executed_notebook(run: GradingRun | None) -> Response:
    """A run's executed notebook as a page of its own, served with the notebook CSP (no scripts,
    opaque origin); 404 while the run has none."""
    if run is None or not run.executed_html_sha256:
        abort(404)
    html = blob_store(current_app).get(run.executed_html_sha256)
    response = Response(notebook_document(html.decode("utf-8"), language.current_language()),
                        mimetype="text/html")
    response.headers["Content-Security-Policy"] = NOTEBOOK_CSP
    return response


def notebook_document(body: str, lang: str) -> str:
    """A whole HTML document around nbconvert's ``basic`` fragment, with its style inline."""
    if body.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        return body
    css = NOTEBOOK_CSS.read_text(encoding="utf-8")
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f"<style>{css}</style></head><body>{body}</body></html>")


# --- logging in and out ------------------------------------------------------------------------


def csv_download(text: str, stem: str) -> Response:
    """A CSV text as an attachment named ``<stem>-<today>.csv`` (UTF-8)."""
    response = Response(text.encode("utf-8"), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    name = f"{stem}-{utcnow():%Y%m%d}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def safe_next(target: str | None) -> str | None:
    """A ``next`` address only when it stays on this site (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


def log_out(login_endpoint: str) -> BaseResponse:
    """End the session (student's or instructor's) and go back to that area's login page."""
    logout_user()
    flash("flash.logged_out", "info")
    return redirect(url_for(login_endpoint), 303)
