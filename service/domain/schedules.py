"""The course's rules in the database: each exercise's schedule, students' extensions and
instructors' adjustments, read as ``service.domain.course_rules`` values and written with the
checks every caller (dashboard, CLI, CSV import) shares. Errors are :class:`RulesError` with a
message for people in both languages; nothing is written when one is raised.

An exercise's rules come from, in order: its row in the database (``schedule set``, the
dashboard), else the ``[schedule]`` table of its ``exercise.toml``
(``service.domain.schedule_table``), else the built-in defaults. Every reader goes through
:func:`rules_of`, and a new row starts from the same defaults (:func:`default_schedule`), so a
``schedule set --due ...`` keeps the file's other values.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import current_app
from sqlalchemy import delete, select

from grader import Exercise, SpecError
from service.domain.course_rules import (
    DEFAULT_RELEASE,
    Counts,
    Dates,
    Extension,
    LatePenalty,
    Part,
    Rules,
    RulesError,
    Shown,
    parse_time,
    release_from_json,
    zone,
)
from service.domain.final_grade import AdjustMode, Change, in_force
from service.domain.schedule_table import change_fields
from service.extensions import DbSession
from service.models import Adjustment, ExtensionGrant, Schedule, Student, utcnow

#: The course's time zone when no schedule names one (``COURSE_TIMEZONE``).
DEFAULT_TIMEZONE = "Asia/Tokyo"


def course_timezone() -> str:
    try:
        return str(current_app.config.get("COURSE_TIMEZONE") or DEFAULT_TIMEZONE)
    except RuntimeError:  # outside an app (a script)
        return DEFAULT_TIMEZONE


# --- schedules ----------------------------------------------------------------------------------


class RulesSource(StrEnum):
    """Where an exercise's rules come from (``schedule show`` says it)."""

    DATABASE = "database"
    EXERCISE_TOML = "exercise.toml"
    DEFAULTS = "defaults"


def _spec(exercise_id: str) -> Exercise | None:
    """The exercise's spec as the app's grader reads it; None outside an app, or for an
    exercise that is gone or whose spec does not read (the grader reports that one)."""
    try:
        config = current_app.config["GRADER"]
    except RuntimeError:  # outside an app (a script)
        return None
    try:
        return config.exercise(exercise_id)
    except SpecError:
        return None


def load_rules_source(session: DbSession, exercise_id: str) -> RulesSource:
    return rules_source(session.get(Schedule, exercise_id), exercise_id)


def rules_source(row: Schedule | None, exercise_id: str) -> RulesSource:
    """Where :func:`rules_of` takes the rules from for ``row`` (None: no row stored)."""
    if row is not None:
        return RulesSource.DATABASE
    spec = _spec(exercise_id)
    if spec is not None and spec.schedule is not None:
        return RulesSource.EXERCISE_TOML
    return RulesSource.DEFAULTS


def rules_of(row: Schedule | None, exercise_id: str, timezone: str | None = None) -> Rules:
    """The :class:`Rules` of a schedule row (None: the exercise's defaults, from its
    ``exercise.toml`` or built in: :func:`default_schedule`)."""
    if row is None:
        row = default_schedule(exercise_id)
    return Rules(
        exercise=exercise_id,
        dates=Dates(row.opens_at, row.due_at, row.late_until),
        penalty=LatePenalty.parse(row.late_penalty),
        counts=Counts(row.counts) if row.counts in tuple(Counts) else Counts.BEST,
        attempts_per_day=row.attempts_per_day,
        timezone=row.timezone or timezone or course_timezone(),
        weight=row.weight,
        release=release_from_json(row.release),
        published_at=row.published_at)


def load_rules(session: DbSession, exercise_id: str) -> Rules:
    return rules_of(session.get(Schedule, exercise_id), exercise_id)


def load_all_rules(session: DbSession, exercise_ids: Iterable[str]) -> dict[str, Rules]:
    """Every listed exercise's rules (defaults where no schedule is stored), in one query."""
    rows = {row.exercise: row for row in session.execute(select(Schedule)).scalars()}
    return {exercise_id: rules_of(rows.get(exercise_id), exercise_id)
            for exercise_id in exercise_ids}


#: ``set_schedule``'s keyword arguments that clear a field when given the value :data:`CLEAR`.
CLEAR = ""


@dataclass(frozen=True)
class ScheduleChange:
    """What ``schedule set`` (or the dashboard's form) asks to change; ``None`` leaves a field
    as it is, :data:`CLEAR` (for the times and the daily limit) removes it. Texts are parsed
    here, so every caller gets the same errors."""

    opens: str | None = None
    due: str | None = None
    late_until: str | None = None
    late_penalty: str | None = None
    counts: str | None = None
    attempts_per_day: str | int | None = None
    timezone: str | None = None
    weight: str | float | None = None
    release: Mapping[Part, Shown] | None = None


def set_schedule(session: DbSession, exercise_id: str, change: ScheduleChange, author: str
                 ) -> Rules:
    """Apply ``change`` to the exercise's schedule (made with the defaults if there is none),
    check the result as a whole and commit it; :class:`RulesError` leaves it untouched."""
    row = session.get(Schedule, exercise_id) or default_schedule(exercise_id)
    for column, value in _checked(row, change).items():
        setattr(row, column, value)
    row.updated_at, row.updated_by = utcnow(), author[:64]
    session.add(row)
    session.commit()
    return rules_of(row, exercise_id)


def _checked(row: Schedule, change: ScheduleChange) -> dict[str, Any]:
    """The columns ``change`` makes of ``row``, each parsed and the dates checked as a whole;
    the row is not touched (:class:`RulesError` for the first value refused)."""
    values: dict[str, Any] = {
        "opens_at": row.opens_at, "due_at": row.due_at, "late_until": row.late_until}
    for name, column in (("opens", "opens_at"), ("due", "due_at"), ("late_until", "late_until")):
        text = getattr(change, name)
        if text is not None:
            values[column] = None if text == CLEAR else parse_time(text)
    Dates(values["opens_at"], values["due_at"], values["late_until"]).check()
    if change.late_penalty is not None:
        values["late_penalty"] = str(LatePenalty.parse(change.late_penalty))
    if change.counts is not None:
        if change.counts not in tuple(Counts):
            raise RulesError("rules.bad_counts", value=repr(change.counts))
        values["counts"] = change.counts
    if change.attempts_per_day is not None:
        values["attempts_per_day"] = _limit(change.attempts_per_day)
    if change.timezone is not None:
        zone(change.timezone)
        values["timezone"] = change.timezone
    if change.weight is not None:
        values["weight"] = _weight(change.weight)
    if change.release is not None:
        values["release"] = {p.value: s.value for p, s in change.release.items()}
    return values


def default_schedule(exercise_id: str) -> Schedule:
    """A new row (not added to a session) with what an exercise without a row has: the
    built-in defaults, then its ``exercise.toml``'s ``[schedule]``. :class:`RulesError` naming
    the file for a table the checks refuse (the app checks every table when it starts:
    :func:`check_exercise_schedules`)."""
    row = Schedule(exercise=exercise_id, late_penalty="0", counts=Counts.BEST.value,
                   timezone=course_timezone(), weight=1.0,
                   release={p.value: s.value for p, s in DEFAULT_RELEASE.items()})
    spec = _spec(exercise_id)
    if spec is None or spec.schedule is None:
        return row
    try:
        values = _checked(row, ScheduleChange(**change_fields(spec.schedule)))
    except RulesError as exc:
        raise RulesError("rules.in_exercise_toml", file=str(spec.directory / "exercise.toml"),
                         reason=exc.text) from None
    for column, value in values.items():
        setattr(row, column, value)
    return row


def check_exercise_schedules() -> None:
    """Every exercise's ``[schedule]`` table read as :func:`default_schedule` reads it (in an
    app context), so a table the checks refuse stops the service when it starts rather than
    failing the first page that needs the rules. A spec that does not read is the grader's to
    report, not this check's."""
    for exercise_id in current_app.config["GRADER"].exercise_ids():
        default_schedule(exercise_id)


def publish(session: DbSession, exercise_id: str, author: str, published: bool = True) -> Rules:
    """Publish the exercise's results now (the ``on_publish`` rule), or take that back."""
    row = session.get(Schedule, exercise_id)
    if row is None:
        set_schedule(session, exercise_id, ScheduleChange(), author)
        row = session.get(Schedule, exercise_id)
        assert row is not None
    row.published_at = utcnow() if published else None
    row.updated_at, row.updated_by = utcnow(), author[:64]
    session.commit()
    return rules_of(row, exercise_id)


def _limit(value: str | int) -> int | None:
    if value == CLEAR:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RulesError("rules.attempts_not_whole", value=repr(value)) from None
    if number < 1:
        raise RulesError("rules.attempts_below_one")
    return number


def _weight(value: str | float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RulesError("rules.weight_not_number", value=repr(value)) from None
    if not 0 <= number <= 1000 or number != number:
        raise RulesError("rules.weight_out_of_range")
    return number


# --- extensions ---------------------------------------------------------------------------------


def find_student(session: DbSession, student_id: str) -> Student:
    found = session.execute(select(Student).where(Student.student_id == student_id.strip())
                            ).scalar_one_or_none()
    if found is None:
        raise RulesError("rules.unknown_student", student=repr(student_id))
    return found


def extension_of(row: ExtensionGrant) -> Extension:
    return Extension(row.due_at, row.late_until, row.extra_attempts)


def load_extensions(session: DbSession, exercise_id: str | None = None,
                    student_pk: int | None = None) -> dict[tuple[int, str], Extension]:
    """(student pk, exercise) -> extension, for one exercise or all, one student or all."""
    query = select(ExtensionGrant)
    if exercise_id is not None:
        query = query.where(ExtensionGrant.exercise == exercise_id)
    if student_pk is not None:
        query = query.where(ExtensionGrant.student_pk == student_pk)
    return {(row.student_pk, row.exercise): extension_of(row)
            for row in session.execute(query).scalars()}


def extension_for(session: DbSession, student_pk: int, exercise_id: str) -> Extension | None:
    """One student's extension of one exercise, if any (one row read, not the class's)."""
    return load_extensions(session, exercise_id, student_pk).get((student_pk, exercise_id))


def list_extensions(session: DbSession, exercise_id: str) -> list[tuple[ExtensionGrant, str]]:
    """The exercise's extensions with each student's id, by student id (the dashboard's list)."""
    query = (select(ExtensionGrant, Student.student_id)
             .join(Student, Student.id == ExtensionGrant.student_pk)
             .where(ExtensionGrant.exercise == exercise_id).order_by(Student.student_id))
    return [(grant, student_id) for grant, student_id in session.execute(query)]


def grant_extension(session: DbSession, student_id: str, exercise_id: str, due: str,
                    late_until: str | None, author: str, extra_attempts: int = 0,
                    comment: str = "", commit: bool = True) -> ExtensionGrant:
    """Give a student their own due (and late-until); replaces an earlier extension."""
    student = find_student(session, student_id)
    due_at = parse_time(due)
    late_at = parse_time(late_until) if late_until else None
    if late_at is not None and late_at < due_at:
        raise RulesError("rules.late_until_before_due")
    if extra_attempts < 0:
        raise RulesError("rules.negative_extra_attempts")
    row = session.execute(select(ExtensionGrant).where(
        ExtensionGrant.student_pk == student.id, ExtensionGrant.exercise == exercise_id)
    ).scalar_one_or_none() or ExtensionGrant(student_pk=student.id, exercise=exercise_id)
    row.due_at, row.late_until, row.extra_attempts = due_at, late_at, extra_attempts
    row.comment, row.granted_by, row.granted_at = comment, author[:64], utcnow()
    session.add(row)
    if commit:
        session.commit()
    return row


def revoke_extension(session: DbSession, student_id: str, exercise_id: str) -> bool:
    student = find_student(session, student_id)
    gone = session.execute(delete(ExtensionGrant).where(
        ExtensionGrant.student_pk == student.id, ExtensionGrant.exercise == exercise_id))
    session.commit()
    return bool(getattr(gone, "rowcount", 0))


#: The columns of an extensions CSV (the first three required).
EXTENSION_COLUMNS = ("student_id", "exercise", "due", "late_until", "extra_attempts", "comment")


def import_extensions(session: DbSession, text: str, known: Iterable[str], author: str) -> int:
    """Grant every extension of a CSV (header: :data:`EXTENSION_COLUMNS`), all or none: the
    first bad line raises :class:`RulesError` naming it, and nothing is kept."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in EXTENSION_COLUMNS[:3] if c not in (reader.fieldnames or [])]
    if missing:
        raise RulesError("rules.csv_missing_columns", columns=", ".join(EXTENSION_COLUMNS[:3]),
                         missing=", ".join(missing))
    exercises = set(known)
    count = 0
    try:
        for line, record in enumerate(reader, start=2):
            try:
                exercise_id = (record.get("exercise") or "").strip()
                if exercise_id not in exercises:
                    raise RulesError("rules.unknown_exercise", exercise=repr(exercise_id))
                extra = (record.get("extra_attempts") or "0").strip() or "0"
                if not extra.isdigit():
                    raise RulesError("rules.csv_extra_not_whole", value=repr(extra))
                grant_extension(session, record.get("student_id") or "", exercise_id,
                                record.get("due") or "", (record.get("late_until") or "").strip()
                                or None, author, int(extra), (record.get("comment") or ""),
                                commit=False)
            except RulesError as exc:
                raise RulesError("rules.csv_line", line=line, reason=exc.text) from None
            count += 1
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return count


# --- adjustments --------------------------------------------------------------------------------


def load_changes(session: DbSession, exercise_id: str | None = None,
                 student_pk: int | None = None
                 ) -> dict[tuple[int, str], dict[str | None, Change]]:
    """(student pk, exercise) -> the adjustments in force (``final_grade.in_force``), for one
    exercise or all, one student or all."""
    query = select(Adjustment.student_pk, Adjustment.exercise, Adjustment.item_id,
                   Adjustment.mode, Adjustment.points).order_by(Adjustment.id)
    if exercise_id is not None:
        query = query.where(Adjustment.exercise == exercise_id)
    if student_pk is not None:
        query = query.where(Adjustment.student_pk == student_pk)
    grouped: dict[tuple[int, str], list[tuple[str | None, AdjustMode, float]]] = {}
    for student_pk, exercise, item_id, mode, points in session.execute(query):
        grouped.setdefault((student_pk, exercise), []).append(
            (item_id, AdjustMode(mode), points))
    return {key: in_force(rows) for key, rows in grouped.items()}


def adjustment_history(session: DbSession, student_pk: int, exercise_id: str | None = None
                       ) -> list[Adjustment]:
    """A student's adjustments, oldest first (the audit trail)."""
    query = select(Adjustment).where(Adjustment.student_pk == student_pk)
    if exercise_id is not None:
        query = query.where(Adjustment.exercise == exercise_id)
    return list(session.execute(query.order_by(Adjustment.id)).scalars())


def check_adjustment(mode: AdjustMode, points: float, comment: str, item_id: str | None,
                     items: Iterable[str]) -> None:
    if not comment.strip():
        raise RulesError("rules.adjustment_needs_comment")
    if item_id is not None and item_id not in set(items):
        raise RulesError("rules.unknown_item", item=repr(item_id), items=", ".join(items))
    if points != points or abs(points) > 1e6:
        raise RulesError("rules.points_not_number")
    if mode is AdjustMode.SET and points < 0:
        raise RulesError("rules.score_below_zero")
