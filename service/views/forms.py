"""The forms of the student pages and the dashboard, as Flask-WTF classes: their fields, how
each value is cleaned and what makes it invalid, in one place.

The templates write their ``<input>`` elements by hand (same names as the fields here) and the
CSRF token is checked app-wide by ``CSRFProtect``; a view builds the form from the request and
asks ``form.validate_on_submit()``. The rules that need the database (a token's student, the
current password, an exercise being open) stay in ``service.domain``; the texts shown for an
invalid form come from the catalog in the view. Where a validator's ``message`` is set, it is a
code the view turns into that text, not a text itself.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length

from service.domain.instructors import MAX_PASSWORD, MIN_PASSWORD, normalize_username
from service.domain.regrades import SCOPES

#: Usernames are cut to this many characters before anything looks them up.
USERNAME_LENGTH = 64


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _username(value: Any) -> str:
    return normalize_username(value or "")[:USERNAME_LENGTH]


class TokenLoginForm(FlaskForm):
    """A student logs in with the personal access token from the roster."""

    token = PasswordField(filters=[_strip], validators=[DataRequired()])


class UploadForm(FlaskForm):
    """A notebook for an exercise. Whether the exercise is open and the file a notebook is the
    domain's call (``accept_submission``): the form only needs a file to have been chosen."""

    exercise = StringField(default="")
    notebook = FileField(validators=[FileRequired()])


class InstructorLoginForm(FlaskForm):
    """An instructor's username (normalized as accounts are) and password. The password is
    taken as typed: blanks are characters of it."""

    username = StringField(filters=[_username], validators=[DataRequired()])
    password = PasswordField(validators=[InputRequired()])


class PasswordForm(FlaskForm):
    """Replacing a password. The messages are the codes of ``AccountError`` (``wrong_current``,
    ``mismatch``, ``length``) so that the form and the domain share their texts; the domain
    checks the current password and that the new one differs."""

    current = PasswordField(validators=[InputRequired(message="wrong_current")])
    new = PasswordField(validators=[
        EqualTo("repeat", message="mismatch"),
        Length(min=MIN_PASSWORD, max=MAX_PASSWORD, message="length"),
    ])
    repeat = PasswordField()

    def error_code(self) -> str | None:
        """The first reason the form is invalid, in the order the domain checks them."""
        for field in (self.current, self.new):
            if field.errors:
                return str(field.errors[0])
        return None


class RegradeAllForm(FlaskForm):
    """Regrade an exercise: every submission (``all``) or each student's latest (``latest``)."""

    scope = SelectField(choices=[(scope, scope) for scope in SCOPES], default="all")


class RegradeForm(FlaskForm):
    """Regrade one submission: nothing to fill in, the button (and its CSRF token) is all."""
