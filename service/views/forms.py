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

import datetime as dt
import math
from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, Optional, Regexp

from service.domain import course_rules
from service.domain.final_grade import AdjustMode
from service.domain.instructors import MAX_PASSWORD, MIN_PASSWORD, normalize_username
from service.domain.regrades import SCOPES
from service.domain.schedules import CLEAR, ScheduleChange
from service.states import ReviewDecision

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


# --- the course's rules (dashboard) -----------------------------------------------------------

#: ``<input type="datetime-local">`` writes minutes, and seconds when the step asks for them.
LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


def to_offset_time(text: str, zone_name: str) -> str:
    """A form's local date-time (``2026-12-24T23:59``, what ``datetime-local`` sends) read in
    ``zone_name``, as the ISO 8601 time with an offset the domain takes
    (``2026-12-24T23:59:00+09:00``); ``""`` stays ``""`` (the field was emptied)."""
    text = text.strip()
    if not text:
        return ""
    for pattern in LOCAL_FORMATS:
        try:
            naive = dt.datetime.strptime(text, pattern)
        except ValueError:
            continue
        return naive.replace(tzinfo=course_rules.zone(zone_name)).isoformat()
    raise course_rules.RulesError("rules.not_local_time", text=repr(text))


def local_input(value: dt.datetime | None, zone_name: str) -> str:
    """A naive UTC time as a ``datetime-local`` value in ``zone_name`` (the form's default)."""
    if value is None:
        return ""
    return course_rules.local(value, zone_name).strftime("%Y-%m-%dT%H:%M")


def zoned(value: dt.datetime | None, zone_name: str) -> str:
    """A naive UTC time as people read it in ``zone_name``: ``2026-12-24 23:59 JST``."""
    if value is None:
        return ""
    here = course_rules.local(value, zone_name)
    seconds = ":%S" if here.second else ""
    return here.strftime(f"%Y-%m-%d %H:%M{seconds} %Z")


def _shown_choices() -> list[tuple[str, str]]:
    return [(when.value, when.value) for when in course_rules.Shown]


class ScheduleForm(FlaskForm):
    """An exercise's schedule as the dashboard edits it: the dates are local date-times in the
    form's ``timezone``; an emptied date or daily limit is removed. The domain
    (``schedules.set_schedule``) checks the rest and says what is wrong."""

    opens = StringField(filters=[_strip], default="")
    due = StringField(filters=[_strip], default="")
    late_until = StringField(filters=[_strip], default="")
    timezone = StringField(filters=[_strip], validators=[DataRequired()])
    late_penalty = StringField(filters=[_strip], default="0")
    counts = SelectField(choices=[(c.value, c.value) for c in course_rules.Counts])
    attempts_per_day = StringField(filters=[_strip], default="")
    weight = StringField(filters=[_strip], default="1")
    release_score = SelectField(choices=_shown_choices())
    release_feedback = SelectField(choices=_shown_choices())
    release_test_accuracy = SelectField(choices=_shown_choices())
    release_holdout_accuracy = SelectField(choices=_shown_choices())

    def change(self) -> ScheduleChange:
        """The change to ask of ``set_schedule`` (:class:`RulesError` for a bad date)."""
        zone_name = self.timezone.data or ""
        course_rules.zone(zone_name)
        release = {part: course_rules.Shown(getattr(self, f"release_{part.value}").data)
                   for part in course_rules.Part}
        return ScheduleChange(
            opens=to_offset_time(self.opens.data or "", zone_name),
            due=to_offset_time(self.due.data or "", zone_name),
            late_until=to_offset_time(self.late_until.data or "", zone_name),
            late_penalty=self.late_penalty.data or "0", counts=self.counts.data,
            attempts_per_day=self.attempts_per_day.data or CLEAR,
            timezone=zone_name, weight=self.weight.data or "1", release=release)


class PublishForm(FlaskForm):
    """Publish an exercise's results (``1``) or take them back (``0``)."""

    published = SelectField(choices=[("1", "1"), ("0", "0")], default="1")


class ExtensionForm(FlaskForm):
    """One student's own dates (local date-times in the schedule's zone)."""

    student_id = StringField(filters=[_strip], validators=[DataRequired()])
    due = StringField(filters=[_strip], validators=[DataRequired()])
    late_until = StringField(filters=[_strip], default="")
    extra_attempts = StringField(filters=[_strip], default="0")
    comment = StringField(filters=[_strip], default="")

    def extra(self) -> int:
        text = self.extra_attempts.data or "0"
        if not text.isdigit():
            raise course_rules.RulesError("rules.extra_not_whole", value=repr(text))
        return int(text)


class ExtensionsFileForm(FlaskForm):
    """A CSV of extensions (``schedules.EXTENSION_COLUMNS``)."""

    file = FileField(validators=[FileRequired()])


class RetryScoresForm(FlaskForm):
    """Grade passback's "retry now": one failed score (``score``, its row id) or all (empty)."""

    score = StringField(validators=[Optional(), Regexp(r"^[0-9]{1,18}$")])


class RevokeForm(FlaskForm):
    """Take an extension back: the button (and its CSRF token) is all."""


class AdjustForm(FlaskForm):
    """An adjustment of one student's exercise: ``target`` empty for the total, else an item
    id; ``mode`` add, set or remove; the comment is required (the student reads it)."""

    exercise = StringField(filters=[_strip], validators=[DataRequired()])
    target = StringField(filters=[_strip], default="")
    mode = SelectField(choices=[(m.value, m.value) for m in AdjustMode])
    points = StringField(filters=[_strip], default="")
    comment = StringField(filters=[_strip], default="")

    def number(self) -> float:
        """The points (0 for a removal); :class:`RulesError` for what is not a number."""
        if self.mode.data == AdjustMode.REMOVE.value:
            return 0.0
        text = (self.points.data or "").replace(",", ".")
        try:
            value = float(text)
        except ValueError:
            raise course_rules.RulesError("rules.points_not_number_typed",
                                          value=repr(text)) from None
        if not math.isfinite(value):
            raise course_rules.RulesError("rules.points_not_number")
        return value


# --- similarity review (dashboard) -------------------------------------------------------------


class SimilarityRunForm(FlaskForm):
    """Start a similarity check of an exercise: the button (and its CSRF token) is all."""


class ReviewForm(FlaskForm):
    """An instructor's decision on a pair (``open`` reopens it) and its comment; whether the
    comment is required is the domain's rule (``similarity_review.record_decision``)."""

    decision = SelectField(choices=[(d.value, d.value) for d in ReviewDecision])
    comment = StringField(filters=[_strip], default="")
