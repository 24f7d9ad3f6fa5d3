"""``flask --app service similarity run|show EXERCISE``: who did the work, from the command line
(docs/similarity.md, "Running a check").

``run`` asks for a similarity run (``service.domain.similarity_runs.request_run``: one at a
time per exercise, asking again gives the live one back) and hands it to the queue
(``service.queue.dispatch.enqueue_similarity``); by default it waits for it and prints its
pairs. When no worker is alive (none seen within ``heartbeats.ALIVE_SECONDS``) it computes the
run in its own process, saying so on stderr, so it works without the service running. ``show``
prints the latest finished run. A refusal or a failed run is ``Error: …`` with exit status 1.

``--json`` prints a JSON list of the pairs, highest first (flagged first, then the stronger
signal), each an object: ``rank`` (1 first), ``students`` ``[a, b]`` (student ids, ``a``
sorting first), ``submissions`` (their submission ids), ``code`` (shared code beyond the
template, 0..1; ``null`` when a notebook could not be read), ``distinctive``
(shared k-grams neither the template's nor expected), ``model`` (the models' error agreement,
0..1; ``null`` where a side has no model fingerprint), ``identical_weights``,
``code_flagged``, ``model_flagged``, ``flagged`` and ``run`` (the run's id). The run itself
(when, over which submissions) goes to stderr, so stdout stays the list.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import time
from typing import TYPE_CHECKING, Any, cast

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import func, select

from grader import GraderConfig, SpecError
from service.domain.similarity_runs import latest_run, request_run
from service.extensions import db
from service.models import SimilarityPair, SimilarityRun, Worker, utcnow
from service.queue.dispatch import enqueue_similarity
from service.queue.heartbeats import ALIVE_SECONDS
from service.states import SimilarityState

if TYPE_CHECKING:
    from werkzeug.local import LocalProxy

JSON_HELP = ("print the pairs as a JSON list, highest first: each with rank, students "
             "[a, b], submissions, code, distinctive, model (null where missing), "
             "identical_weights, code_flagged, model_flagged, flagged, run; the run's "
             "facts go to stderr")


def init_app(app: Flask) -> None:
    app.cli.add_command(similarity_group)


@click.group("similarity", help="Code similarity and trained-model fingerprints of an "
             "exercise's submissions, student by student (docs/similarity.md).")
def similarity_group() -> None:
    pass


def _author() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


def _check_exercise(exercise: str) -> None:
    config: GraderConfig = current_app.config["GRADER"]
    try:
        config.exercise(exercise)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None


def workers_alive() -> int:
    """How many workers beat within ``ALIVE_SECONDS`` (any kind)."""
    since = utcnow() - dt.timedelta(seconds=ALIVE_SECONDS)
    return db.session.execute(select(func.count(Worker.id))
                              .where(Worker.last_seen >= since)).scalar_one()


@similarity_group.command("run", help="Compare the exercise's submissions (each student's "
                          "counted one, else their latest) and print the pairs, highest "
                          "first. Queued for the workers; computed here when none is alive.")
@click.argument("exercise")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="wait for the run and print its pairs (--no-wait: queue it and print its "
              "id; with --json the object {\"run\": id, \"state\": state})")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800.0, show_default=True,
              help="seconds to wait for a worker to finish it")
@with_appcontext
def run_command(exercise: str, as_json: bool, wait: bool, timeout: float) -> None:
    _check_exercise(exercise)
    upgrade()
    run, is_new = request_run(exercise, _author())
    run_id = run.id
    if not is_new:
        click.echo(f"similarity run {run_id} of {exercise} is already {run.state}: "
                   "following it", err=True)
    app = cast("LocalProxy[Flask]", current_app)._get_current_object()
    here = Here(app, run_id)
    alive = workers_alive()
    db.session.rollback()
    if not (wait and here.take(alive)):  # a worker's (or another command's): follow it
        enqueue_similarity(run_id)
        if not wait:
            if not alive:
                click.echo("no worker is alive: it waits for one (python -m service, flask "
                           "worker, or a Celery worker)", err=True)
            click.echo(json.dumps({"run": run_id, "state": str(run.state)}) if as_json
                       else f"similarity run {run_id} of {exercise} queued")
            return
    done = _wait(run_id, timeout, here)
    if done.state == SimilarityState.FAILED:
        raise click.ClickException(f"similarity run {run_id} of {exercise} failed: "
                                   f"{done.reason}")
    _print(done, as_json)


class Here:
    """Computing the run in this process, when no worker is alive to: at the start, and again
    while waiting (the worker that had it died, and nobody else is left to take it up)."""

    #: Seconds between two looks at the workers while waiting.
    LOOK_SECONDS = 5.0

    def __init__(self, app: Flask, run_id: int):
        from service.queue.embedded import worker_name  # the workers' modules, when run

        self.app, self.run_id, self.worker = app, run_id, worker_name("cli")
        self.said = False
        self.next_look = time.monotonic() + self.LOOK_SECONDS

    def take(self, alive: int) -> bool:
        """Compute the run here if no worker is ``alive`` and it can be claimed (queued, or its
        lease ran out): whether this process took it."""
        if alive:
            return False
        if not self.said:
            click.echo(f"no worker is alive (none seen in {ALIVE_SECONDS} s): comparing in "
                       "this process", err=True)
            self.said = True
        from service.queue.similarity import take_similarity

        return take_similarity(self.app, self.run_id, self.worker).run_id is not None

    def look(self) -> None:
        """While waiting: take the run if the workers are gone."""
        if time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + self.LOOK_SECONDS
        alive = workers_alive()
        db.session.rollback()
        self.take(alive)


def _wait(run_id: int, timeout: float, here: Here) -> SimilarityRun:
    deadline = time.monotonic() + timeout
    while True:
        run = db.session.get_one(SimilarityRun, run_id, populate_existing=True)
        if run.state in (SimilarityState.DONE, SimilarityState.FAILED):
            return run
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"similarity run {run_id} is still {run.state} after {timeout:g} s; "
                f"'flask --app service similarity show {run.exercise}' shows it once done")
        db.session.rollback()
        here.look()
        time.sleep(0.5)


@similarity_group.command("show", help="Print the latest finished similarity run of the "
                          "exercise: its pairs, highest first.")
@click.argument("exercise")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@with_appcontext
def show_command(exercise: str, as_json: bool) -> None:
    _check_exercise(exercise)
    upgrade()
    run = latest_run(exercise)
    live = latest_run(exercise, done=False)
    if live is not None and live.state in (SimilarityState.QUEUED, SimilarityState.RUNNING):
        click.echo(f"(similarity run {live.id} is {live.state})", err=True)
    if run is None:
        raise click.ClickException(
            f"no finished similarity run of {exercise}; start one with 'flask --app service "
            f"similarity run {exercise}'")
    _print(run, as_json)


def _stamp(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds") + "Z"


def pair_json(pair: SimilarityPair) -> dict[str, Any]:
    """One pair as ``--json`` prints it."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {"rank": pair.rank + 1,
            "students": [pair.student_a.student_id, pair.student_b.student_id],
            "submissions": [pair.submission_a_id, pair.submission_b_id],
            "code": rounded(pair.code), "distinctive": pair.distinctive,
            "model": rounded(pair.model), "identical_weights": pair.identical_weights,
            "code_flagged": pair.code_flagged, "model_flagged": pair.model_flagged,
            "flagged": pair.flagged, "run": pair.run_id}


def _print(run: SimilarityRun, as_json: bool) -> None:
    summary = run.summary or {}
    about = (f"similarity run {run.id} of {run.exercise}: finished {_stamp(run.finished_at)}, "
             f"over {len(run.submissions or {})} submissions, "
             f"{summary.get('pairs_compared', 0)} pairs compared, "
             f"{summary.get('fingerprints', 0)} model fingerprints; "
             f"{summary.get('flagged', 0)} flagged")
    skipped = summary.get("skipped") or {}
    notes = [f"left out: {student} ({why})" for student, why in sorted(skipped.items())]
    if summary.get("models_skipped"):
        notes.append(f"no model signal: {summary['models_skipped']}")
    pairs = [pair_json(pair) for pair in run.pairs]
    if as_json:
        for line in (about, *notes):
            click.echo(line, err=True)
        click.echo(json.dumps(pairs, ensure_ascii=False))
        return
    click.echo(about)
    for line in notes:
        click.echo(line)
    if not pairs:
        click.echo("no pair of students reported")
        return

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    width = max(len(s) for p in pairs for s in p["students"])
    click.echo(f"{'rank':>4}  {'student':<{width}}  {'student':<{width}}  "
               f"{'code':>5}  {'model':>5}  flagged")
    for p in pairs:
        why = [name for name, on in (("code", p["code_flagged"]),
                                     ("model", p["model_flagged"]),
                                     ("same weights", p["identical_weights"])) if on]
        click.echo(f"{p['rank']:>4}  {p['students'][0]:<{width}}  "
                   f"{p['students'][1]:<{width}}  {shown(p['code']):>5}  "
                   f"{shown(p['model']):>5}  {'yes: ' + ', '.join(why) if p['flagged'] else ''}"
                   .rstrip())
