"""``flask --app service schedule|extension|adjust|adjustments …``: the course's rules from the
command line, for scripted set-up. Every command checks through the same domain functions as
the dashboard (``service.domain.schedules``, ``service.domain.adjustments``), so a refused
change says the same thing and changes nothing; the refusal is printed as ``Error: …`` with
exit status 1. Times are read as ISO 8601 with an offset, stored in UTC, printed in the
exercise's time zone (``--json``: UTC, with ``Z``). Changes are recorded as made by
``cli:<the OS user>``.
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import select

from grader import Exercise, SpecError
from service.domain.adjustments import AdjustMode, adjust
from service.domain.course_rules import Part, Rules, RulesError, local, parse_release
from service.domain.schedules import (
    RulesSource,
    ScheduleChange,
    adjustment_history,
    extension_of,
    find_student,
    grant_extension,
    import_extensions,
    load_rules,
    publish,
    revoke_extension,
    rules_of,
    rules_source,
    set_schedule,
)
from service.extensions import db
from service.lti.passback import queue_after_change
from service.models import Adjustment, ExtensionGrant, Schedule, Student

CLEARS = "An empty value ('') clears it."
#: What ``schedule show`` says of rules not stored in the database.
SOURCES = {RulesSource.EXERCISE_TOML: "the [schedule] of its exercise.toml",
           RulesSource.DEFAULTS: "the defaults"}


def init_app(app: Flask) -> None:
    app.cli.add_command(schedule_group)
    app.cli.add_command(extension_group)
    app.cli.add_command(adjust_command)
    app.cli.add_command(adjustments_command)


def cli_author() -> str:
    """Who a change from the command line is recorded as: ``cli:`` and the OS user."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        user = "unknown"
    return f"cli:{user}"


@contextmanager
def refusals() -> Iterator[None]:
    """A :class:`RulesError` as the command's error (``Error: <message>``, exit status 1)."""
    try:
        yield
    except RulesError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None


def known_exercise(exercise_id: str) -> Exercise:
    """The exercise, or an error listing the known ones."""
    known = current_app.config["GRADER"].exercise_ids()
    if exercise_id in known:
        try:
            return current_app.config["GRADER"].exercise(exercise_id)
        except SpecError as exc:
            raise click.ClickException(f"exercise {exercise_id!r}: {exc}") from None
    raise click.ClickException(f"unknown exercise {exercise_id!r} (known: "
                               f"{', '.join(known) or 'none'})")


def shown(moment: dt.datetime | None, timezone: str, stamp: bool = False) -> str:
    """A stored (naive UTC) time in ``timezone``, ISO 8601 with its offset; ``-`` for none.
    A ``stamp`` (when something was recorded) is shown to the second."""
    if moment is None:
        return "-"
    return local(moment, timezone).isoformat(timespec="seconds" if stamp else "auto")


def utc(moment: dt.datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with ``Z`` (the JSON form)."""
    return None if moment is None else moment.isoformat() + "Z"


def figure(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


# --- schedule -----------------------------------------------------------------------------------


@click.group("schedule", help="An exercise's schedule: dates, late penalty, which submission "
             "counts, daily limit, time zone, weight, release of results.")
def schedule_group() -> None:
    pass


@schedule_group.command("set", help="Change an exercise's schedule (made from the [schedule] of "
                        "its exercise.toml, or the defaults, if it has none); options not given "
                        "stay as they are. Times are ISO 8601 "
                        "with an offset (2026-12-24T23:59:59+09:00 or ...Z). Nothing is changed "
                        "when any option is refused.")
@click.argument("exercise")
@click.option("--opens", metavar="T", help=f"first moment an upload is accepted. {CLEARS}")
@click.option("--due", metavar="T", help=f"due time; later uploads are late. {CLEARS}")
@click.option("--late-until", metavar="T", help="last moment a late upload is accepted (none: "
              f"no late window once a due is set). {CLEARS}")
@click.option("--late-penalty", metavar="SPEC",
              help="0 (none), N% (once: 100% keeps late work at 0 points), N%/day or N%/hour "
              "(per started day or hour after due)")
@click.option("--counts", type=click.Choice(["best", "last"]),
              help="which allowed submission counts (after penalties)")
@click.option("--attempts-per-day", metavar="N", help="uploads per student and day, the day in "
              f"the schedule's time zone. {CLEARS}")
@click.option("--timezone", metavar="ZONE", help="IANA time zone (Asia/Tokyo): where a day "
              "starts and how times are shown")
@click.option("--weight", metavar="W", help="weight in the course total (0 to 1000)")
@click.option("--release", metavar="SPEC",
              help="when results are shown: a preset (default, open, exam) or part=when,... "
              f"with part one of {', '.join(Part)} and when one of always, after_due, "
              "after_late_until, on_publish, never (over the current rules)")
@with_appcontext
def schedule_set(exercise: str, opens: str | None, due: str | None, late_until: str | None,
                 late_penalty: str | None, counts: str | None, attempts_per_day: str | None,
                 timezone: str | None, weight: str | None, release: str | None) -> None:

    upgrade()
    known_exercise(exercise)
    with refusals():
        rules = None if release is None else parse_release(
            release, load_rules(db.session, exercise).release)
        change = ScheduleChange(opens=opens, due=due, late_until=late_until,
                                late_penalty=late_penalty, counts=counts,
                                attempts_per_day=attempts_per_day, timezone=timezone,
                                weight=weight, release=rules)
        set_schedule(db.session, exercise, change, cli_author())
    _passback(exercise)
    _echo_schedule(exercise)


@schedule_group.command("publish", help="Publish the exercise's results now (what the "
                        "on_publish release rule waits for); --undo takes it back.")
@click.argument("exercise")
@click.option("--undo", is_flag=True, help="unpublish")
@with_appcontext
def schedule_publish(exercise: str, undo: bool) -> None:

    upgrade()
    known_exercise(exercise)
    with refusals():
        rules = publish(db.session, exercise, cli_author(), published=not undo)
    _passback(exercise)
    if rules.published_at is None:
        click.echo(f"{exercise}: results not published")
    else:
        click.echo(f"{exercise}: results published at "
                   f"{shown(rules.published_at, rules.timezone)}")


@schedule_group.command("show", help="Print an exercise's schedule and where it comes from "
                        "(source: database, exercise.toml or defaults; times in its time zone; "
                        "--json: UTC times with Z, and the zone).")
@click.argument("exercise")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@with_appcontext
def schedule_show(exercise: str, as_json: bool) -> None:
    upgrade()
    known_exercise(exercise)
    if as_json:
        click.echo(json.dumps(schedule_json(exercise), ensure_ascii=False, indent=2))
    else:
        _echo_schedule(exercise)


def schedule_json(exercise: str) -> dict[str, Any]:

    row = db.session.get(Schedule, exercise)
    rules = rules_of(row, exercise)
    return {
        "exercise": exercise, "stored": row is not None,
        "source": rules_source(row, exercise).value, "timezone": rules.timezone,
        "opens": utc(rules.dates.opens), "due": utc(rules.dates.due),
        "late_until": utc(rules.dates.late_until), "late_penalty": str(rules.penalty),
        "counts": rules.counts.value, "attempts_per_day": rules.attempts_per_day,
        "weight": rules.weight, "release": {part.value: rules.release[part].value
                                            for part in Part},
        "published_at": utc(rules.published_at),
        "updated_at": utc(row.updated_at) if row else None,
        "updated_by": row.updated_by if row else None,
    }


def _echo_schedule(exercise: str) -> None:

    row = db.session.get(Schedule, exercise)
    rules: Rules = rules_of(row, exercise)
    source = rules_source(row, exercise)
    zone = rules.timezone
    lines = [
        ("exercise", exercise + ("" if row else f" (no schedule stored: {SOURCES[source]})")),
        ("source", source.value),
        ("timezone", zone),
        ("opens", shown(rules.dates.opens, zone)),
        ("due", shown(rules.dates.due, zone)),
        ("late_until", shown(rules.dates.late_until, zone)),
        ("late_penalty", str(rules.penalty)),
        ("counts", rules.counts.value),
        ("attempts_per_day", "-" if rules.attempts_per_day is None
         else str(rules.attempts_per_day)),
        ("weight", f"{rules.weight:g}"),
        *((f"release.{part.value}", rules.release[part].value) for part in Part),
        ("published_at", shown(rules.published_at, zone)),
        ("updated", f"{shown(row.updated_at, zone, stamp=True)} by {row.updated_by}"
         if row else "-"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        click.echo(f"{name.ljust(width)}  {value}")


# --- extensions ---------------------------------------------------------------------------------


@click.group("extension", help="Students' own due dates (and extra daily attempts).")
def extension_group() -> None:
    pass


@extension_group.command("grant", help="Give STUDENT their own due (and late-until) for "
                         "EXERCISE, replacing an earlier extension. Times are ISO 8601 with an "
                         "offset.")
@click.argument("student")
@click.argument("exercise")
@click.option("--due", metavar="T", required=True, help="the student's due time")
@click.option("--late-until", metavar="T", help="the student's last late moment (default: "
              "the class's late window, as long, after the student's due)")
@click.option("--extra-attempts", type=click.IntRange(min=0), default=0, show_default=True,
              help="uploads per day beyond the schedule's attempts-per-day")
@click.option("--comment", default="", help="why (shown to staff)")
@with_appcontext
def extension_grant(student: str, exercise: str, due: str, late_until: str | None,
                    extra_attempts: int, comment: str) -> None:

    upgrade()
    known_exercise(exercise)
    with refusals():
        row = grant_extension(db.session, student, exercise, due, late_until or None,
                              cli_author(), extra_attempts, comment)
    _passback(exercise, [row.student_pk])
    rules = load_rules(db.session, exercise)
    dates = rules.dates_for(extension_of(row))
    click.echo(f"extension of {student.strip()} for {exercise}: due "
               f"{shown(dates.due, rules.timezone)}, late until "
               f"{shown(dates.late_until, rules.timezone)}, extra attempts "
               f"{row.extra_attempts}")


@extension_group.command("revoke", help="Take back STUDENT's extension of EXERCISE (the "
                         "class's dates apply again).")
@click.argument("student")
@click.argument("exercise")
@with_appcontext
def extension_revoke(student: str, exercise: str) -> None:

    upgrade()
    known_exercise(exercise)
    with refusals():
        student_pk = find_student(db.session, student).id
        gone = revoke_extension(db.session, student, exercise)
    if not gone:
        raise click.ClickException(f"{student.strip()} has no extension of {exercise}; "
                                   "nothing changed")
    _passback(exercise, [student_pk])
    click.echo(f"extension of {student.strip()} for {exercise} revoked")


@extension_group.command("list", help="The extensions granted (of one exercise, or all).")
@click.argument("exercise", required=False)
@click.option("--json", "as_json", is_flag=True, help="a JSON array, times in UTC")
@with_appcontext
def extension_list(exercise: str | None, as_json: bool) -> None:

    upgrade()
    if exercise is not None:
        known_exercise(exercise)
    query = (select(ExtensionGrant, Student.student_id)
             .join(Student, Student.id == ExtensionGrant.student_pk)
             .order_by(ExtensionGrant.exercise, Student.student_id))
    if exercise is not None:
        query = query.where(ExtensionGrant.exercise == exercise)
    rows = list(db.session.execute(query))
    if as_json:
        click.echo(json.dumps([
            {"student_id": student_id, "exercise": row.exercise, "due": utc(row.due_at),
             "late_until": utc(row.late_until), "extra_attempts": row.extra_attempts,
             "comment": row.comment, "granted_by": row.granted_by,
             "granted_at": utc(row.granted_at)} for row, student_id in rows],
            ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no extensions")
        return
    zones = {name: load_rules(db.session, name).timezone for name in {r.exercise for r, _ in rows}}
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(("student_id", "exercise", "due", "late_until", "extra_attempts",
                     "granted_by", "granted_at", "comment"))
    for row, student_id in rows:
        zone = zones[row.exercise]
        writer.writerow((student_id, row.exercise, shown(row.due_at, zone),
                         shown(row.late_until, zone), row.extra_attempts, row.granted_by,
                         shown(row.granted_at, zone, stamp=True), row.comment))
    click.echo(out.getvalue(), nl=False)


@extension_group.command("import", help="Grant the extensions of a CSV with the header "
                         "student_id,exercise,due[,late_until,extra_attempts,comment]: all of "
                         "them, or none when a line is refused (its number is said).")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def extension_import(path: Path) -> None:

    upgrade()
    known = current_app.config["GRADER"].exercise_ids()
    with refusals():
        count = import_extensions(db.session, path.read_text(encoding="utf-8"), known,
                                  cli_author())
    for name in known:  # the CSV may name any exercise
        _passback(name)
    click.echo(f"{count} extensions granted")


# --- adjustments --------------------------------------------------------------------------------


@click.command("adjust", help="Add points to (--points), set (--set) or take back (--remove) "
               "an adjustment of STUDENT's score of EXERCISE: the total, or one --item. "
               "--comment is required (the student reads it; the audit trail keeps it). "
               "Prints the final score before and after.")
@click.argument("student")
@click.argument("exercise")
@click.option("--points", type=float, help="points to add (negative to take off)")
@click.option("--set", "set_to", type=float, help="the score it becomes")
@click.option("--remove", is_flag=True, help="take back the adjustment in force on the target")
@click.option("--item", metavar="ITEM", help="an item id (default: the total)")
@click.option("--comment", default="", help="why (required)")
@with_appcontext
def adjust_command(student: str, exercise: str, points: float | None, set_to: float | None,
                   remove: bool, item: str | None, comment: str) -> None:

    given = [name for name, value in (("--points", points), ("--set", set_to),
                                      ("--remove", remove or None)) if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --points N, --set N or --remove"
                               + (f" (given: {' '.join(given)})" if given else ""))
    upgrade()
    spec = known_exercise(exercise)
    mode = (AdjustMode.ADD if points is not None else AdjustMode.SET if set_to is not None
            else AdjustMode.REMOVE)
    with refusals():
        row = adjust(db.session, student, exercise, spec.max_score,
                     [i.id for i in spec.items], mode, points if points is not None
                     else set_to if set_to is not None else 0.0, comment, cli_author(),
                     item_id=item)
    _passback(exercise, [row.student_pk])
    target = f"item {item}" if item else "total"
    click.echo(f"{student.strip()} {exercise} {target}: {_change(row)}; final "
               f"{figure(row.before)} -> {figure(row.after)}")


def _passback(exercise: str, students: list[int] | None = None) -> None:
    """Grade passback: the scores the change may have changed, into the outbox (the service's
    senders send them; ``service.lti.passback``)."""
    queued = queue_after_change(current_app._get_current_object(),  # type: ignore[attr-defined]
                                exercise, students)
    if queued:
        click.echo(f"{queued} scores queued for the LMS", err=True)


def _change(row: Adjustment) -> str:
    if row.mode == "add":
        return f"add {row.points:+g}"
    if row.mode == "set":
        return f"set {row.points:g}"
    return "remove"


@click.command("adjustments", help="STUDENT's adjustments (of one exercise, or all), oldest "
               "first: the audit trail.")
@click.argument("student")
@click.argument("exercise", required=False)
@click.option("--json", "as_json", is_flag=True, help="a JSON array, times in UTC")
@with_appcontext
def adjustments_command(student: str, exercise: str | None, as_json: bool) -> None:

    upgrade()
    if exercise is not None:
        known_exercise(exercise)
    with refusals():
        found = find_student(db.session, student)
    rows = adjustment_history(db.session, found.id, exercise)
    if as_json:
        click.echo(json.dumps([
            {"id": row.id, "exercise": row.exercise, "item": row.item_id, "mode": row.mode,
             "points": row.points, "before": row.before, "after": row.after,
             "comment": row.comment, "author": row.author, "created_at": utc(row.created_at)}
            for row in rows], ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo(f"no adjustments of {found.student_id}")
        return
    zones = {name: load_rules(db.session, name).timezone for name in {r.exercise for r in rows}}
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(("time", "author", "target", "change", "before", "after", "comment"))
    for row in rows:
        target = f"{row.exercise}/{row.item_id}" if row.item_id else f"{row.exercise} (total)"
        writer.writerow((shown(row.created_at, zones[row.exercise], stamp=True), row.author, target,
                         _change(row), figure(row.before), figure(row.after), row.comment))
    click.echo(out.getvalue(), nl=False)
