"""Instructors logging in and out, and replacing a one-time password.

Logins are throttled (``service.domain.throttle``): after too many failures for a username from
an address, that address waits before its next try on that username (429 with ``Retry-After``,
even to the right password), a wait that doubles with every further failure. Failures elsewhere
never delay this address: a student cannot lock the instructor out. The message never says
whether the username exists.
"""

from __future__ import annotations

import math

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user
from werkzeug.wrappers import Response as BaseResponse

from service.domain.instructors import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    AccountError,
    authenticate,
    change_password,
    normalize_username,
)
from service.domain.throttle import Throttle
from service.extensions import db
from service.views import frame
from service.views.dashboard.blueprint import bp
from service.views.forms import InstructorLoginForm, PasswordForm
from service.views.frame import Page, client_address, is_instructor, safe_next


@bp.route("/login", methods=["GET", "POST"])
def login() -> Page | BaseResponse:
    target = safe_next(request.args.get("next"))
    if is_instructor():
        return redirect(target or url_for("dashboard.index"))
    if request.method == "GET":
        return render_template("dashboard/login.html", next=target, username="")
    form = InstructorLoginForm()
    filled = form.validate_on_submit()
    username, password = form.username.data or "", form.password.data or ""
    if not (filled and username and password):
        return render_template("dashboard/login.html", next=target, username=username,
                               error=_("dash.login.empty")), 422
    throttle = Throttle.for_passwords(current_app.config)
    # Counted before the password is checked, so concurrent guesses cannot all slip through.
    attempt = throttle.attempt(db.session, normalize_username(username), client_address())
    if attempt.wait:
        response = current_app.make_response((render_template(
            "dashboard/login.html", next=target, username=username,
            error=throttled_text(attempt.wait)), 429))
        response.headers["Retry-After"] = str(attempt.wait)
        return response
    instructor = authenticate(username, password)
    if instructor is None:  # the attempt's row stays: a failure
        return render_template("dashboard/login.html", next=target, username=username,
                               error=_("dash.login.failed")), 422
    throttle.succeeded(db.session, attempt)
    login_user(instructor)
    if instructor.must_change_password:
        return redirect(url_for("dashboard.password"), 303)
    return redirect(target or url_for("dashboard.index"), 303)


@bp.post("/logout")
def logout() -> BaseResponse:
    return frame.log_out("dashboard.login")


@bp.route("/password", methods=["GET", "POST"])
def password() -> Page | BaseResponse:
    if request.method == "GET":
        return _password_page()
    form = PasswordForm()
    code = None if form.validate_on_submit() else form.error_code() or "wrong_current"
    if code is None:
        try:
            change_password(current_user._get_current_object(), form.current.data or "",
                            form.new.data or "", form.repeat.data or "")
        except AccountError as exc:
            code = exc.code
    if code is not None:
        return _password_page(_(f"dash.password.error.{code}", min=MIN_PASSWORD,
                                max=MAX_PASSWORD), 422)
    flash("dash.flash.password_changed", "info")
    return redirect(url_for("dashboard.index"), 303)


def throttled_text(wait: int) -> str:
    """How long to wait, in seconds under a minute, else in minutes (rounded up)."""
    if wait < 60:
        return _("dash.login.throttled_seconds", seconds=wait)
    return _("dash.login.throttled", minutes=math.ceil(wait / 60))


def _password_page(error: str | None = None, status: int = 200) -> Page:
    return render_template("dashboard/password.html", error=error, min_length=MIN_PASSWORD,
                           forced=current_user.must_change_password), status
