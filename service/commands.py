"""``flask --app service …`` commands for course staff."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click
from flask import Flask
from flask.cli import with_appcontext
from flask_migrate import upgrade

from service import blob_commands, course_commands, lti_commands, similarity_commands
from service.extensions import db

if TYPE_CHECKING:
    from werkzeug.local import LocalProxy


def init_app(app: Flask) -> None:
    app.cli.add_command(roster_group)
    app.cli.add_command(requeue_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(instructor_group)
    course_commands.init_app(app)  # schedule, extension, adjust, adjustments
    lti_commands.init_app(app)  # lti register|list|remove|keys|rotate-key|retire-keys
    similarity_commands.init_app(app)  # similarity run|show
    blob_commands.init_app(app)  # blobs move|check


@click.group("roster", help="Class roster and personal access tokens.")
def roster_group() -> None:
    pass


@roster_group.command("import", help="Import a CSV roster (student_id,name,email); prints the "
                      "tokens of new students once, as CSV.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rotate", is_flag=True, help="issue new tokens to existing students too")
def roster_import(path: Path, rotate: bool) -> None:
    from service.domain.roster import RosterError, import_roster

    upgrade()
    try:
        issued, unchanged = import_roster(path.read_text(encoding="utf-8"), rotate=rotate)
    except RosterError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("student_id,name,token")
    for row in issued:
        click.echo(f"{row.student_id},{row.name},{row.token}")
    click.echo(f"# {len(issued)} tokens issued, {len(unchanged)} students unchanged "
               "(tokens are shown only now; keep them)", err=True)


@click.command("requeue", help="Queue again runs whose worker died, and re-send runs that sit "
               "queued (Celery).")
def requeue_command() -> None:
    from flask import current_app

    from service.queue.janitor import sweep
    from service.states import WorkerKind

    swept = sweep(current_app, resend_after=dt.timedelta(seconds=60))
    click.echo(f"{swept.requeued} expired runs requeued or failed")
    if swept.similarity_requeued:
        click.echo(f"{swept.similarity_requeued} expired similarity runs requeued")
    if current_app.config["QUEUE"] == WorkerKind.CELERY:
        click.echo(f"{swept.resent} queued runs re-sent")


@click.command("worker", help="Run embedded grading workers in the foreground (the database "
               "is the queue); stop with Ctrl-C or SIGTERM.")
@click.option("--threads", type=int, default=None,
              help="worker threads  [default: RUNS_PER_HOST, the usable CPUs // CORES_PER_RUN]")
@click.option("--poll-seconds", default=1.0, show_default=True,
              help="seconds between looks at the queue when nothing wakes the workers (on "
              "PostgreSQL a NOTIFY wakes them at once; on SQLite this is the wait)")
def worker_command(threads: int | None, poll_seconds: float) -> None:
    import signal
    import time

    from flask import current_app

    from service.logs import configure
    from service.queue.embedded import EmbeddedWorkers

    configure()  # JSON lines carrying the run id with LOG_FORMAT=json
    upgrade()
    # Flask types current_app as the app itself; it is a proxy, and the threads need the app
    app = cast("LocalProxy[Flask]", current_app)._get_current_object()
    threads = threads or app.config["RUNS_PER_HOST"]
    workers = EmbeddedWorkers(app, threads, poll_seconds=poll_seconds)
    workers.start()
    woken = "woken by NOTIFY, " if workers.listener is not None else ""
    click.echo(f"{threads} grading worker(s) on the database queue ({woken}polling every "
               f"{poll_seconds:g} s)", err=True)
    def stop_on_sigterm(signum: int, frame: object) -> None:  # docker stop, systemd
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:  # the threads stop taking runs, the warm kits are closed
        workers.stop()


@click.group("instructor", help="Instructor accounts for the dashboard.")
def instructor_group() -> None:
    pass


@instructor_group.command("create", help="Make an instructor account; prints a one-time "
                          "password, to be changed at the first login.")
@click.argument("username")
@with_appcontext
def instructor_create(username: str) -> None:
    from service.domain.instructors import AccountError, create_instructor

    upgrade()
    try:
        instructor, password = create_instructor(username)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"instructor '{instructor.username}' created; one-time password (shown once):")
    click.echo(password)


@instructor_group.command("reset-password", help="Replace an instructor's password with a new "
                          "one-time password (printed once).")
@click.argument("username")
@with_appcontext
def instructor_reset(username: str) -> None:
    from service.domain.instructors import AccountError, reset_password

    upgrade()
    try:
        password = reset_password(username)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"new one-time password for '{username.strip().lower()}' (shown once):")
    click.echo(password)


@instructor_group.command("list", help="List the instructor accounts.")
@with_appcontext
def instructor_list() -> None:
    from sqlalchemy import select

    from service.models import Instructor

    for instructor in db.session.execute(select(Instructor).order_by(Instructor.username)
                                         ).scalars():
        state = " (must change password)" if instructor.must_change_password else ""
        last = instructor.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if (
            instructor.last_login_at) else "never"
        click.echo(f"{instructor.username}\tlast login: {last}{state}")
