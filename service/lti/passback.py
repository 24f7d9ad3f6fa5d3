"""Grade passback's triggers: the service's events that may change what the LMS should hold,
each putting the scores concerned in the outbox (``service.domain.lti_passback``) after its
own commit, and ringing this process's sender (``service.queue.lti_sender``).

- a run graded, failed or regraded: :func:`queue_after_run`, called by ``grading.take`` once
  the run's outcome is committed;
- a due or late-until time passed (the score released by date, the work closed):
  :func:`queue_deadlines`, asked by the senders' sweep every minute;
- an adjustment (one student), an extension granted or revoked (one student, or the students
  of a CSV), a schedule changed or results published (every student of the exercise who has an
  account where it has a line item): :func:`queue_after_change`, called by the dashboard's
  views and the course commands after the change is committed.

None of them ever fails the event that called it: an error is logged, and the score is queued
by the sender's sweep of recently finished runs, or by the next event of that student.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from flask import Flask

from grader import GraderConfig
from service.domain.lti_passback import (
    Passback,
    deadlines_passed,
    queue_exercise,
    queue_scores,
    recently_finished,
)
from service.extensions import Sessions, db, sessions_of
from service.models import GradingRun

log = logging.getLogger(__name__)

#: Where the running sender of this process is kept (``app.extensions``).
EXTENSION = "lti_sender"


class _Bell(Protocol):
    def ring(self) -> None: ...


def passback_for(app: Flask, exercise: str) -> Passback:
    """The exercise's points and the service's public address, from the app's settings."""
    return _passback(app.config["GRADER"], app.config.get("PUBLIC_URL") or None, exercise)


def _passback(grader: GraderConfig, public_url: str | None, exercise: str) -> Passback:
    return Passback(max_score=grader.exercise(exercise).max_score, public_url=public_url)


def ring(app: Flask) -> None:
    """Wake this process's sender, if one runs (else another process's polls)."""
    sender: _Bell | None = app.extensions.get(EXTENSION)
    if sender is not None:
        sender.ring()


def _no_bell() -> None:
    """No sender of this process to wake: the senders' polls find the score."""


@dataclass(frozen=True)
class RunPassback:
    """What :func:`queue_after_run` needs, read from the app once (:meth:`of`), so that a
    worker's grading host hands it over instead of its app."""

    #: The service's database sessions. Each one is opened in an app context of its own
    #: (``service.extensions.sessions_of``), which the score's comment also needs: it is
    #: translated with Flask-Babel (``service.domain.lti_passback``'s ``force_locale``), which
    #: reads the app's locale settings. That is where the Flask app is still used in a run,
    #: behind the sessions; the caller never holds it.
    sessions: Sessions
    #: The grader's configuration (``GRADER``): each exercise's points.
    grader: GraderConfig
    #: ``PUBLIC_URL``: the service's address the LMS is given (``None``: none set).
    public_url: str | None
    #: Wakes this process's sender (``PassbackSender.ring``).
    ring: Callable[[], None] = _no_bell

    @classmethod
    def of(cls, app: Flask, ring: Callable[[], None] | None = None) -> RunPassback:
        """``app``'s, ringing ``ring`` (the sender of the process that grades) when a score
        is queued; without one, the senders find it when they next poll."""
        return cls(sessions_of(app), app.config["GRADER"], app.config.get("PUBLIC_URL") or None,
                   ring or _no_bell)


def queue_after_run(passback: RunPassback, run_id: int) -> int:
    """Queue the score of the run's student for its exercise; never raises (logged). Opens
    its own session."""
    try:
        with passback.sessions() as session:
            try:
                run = session.get(GradingRun, run_id)
                if run is None:
                    return 0
                student_pk, exercise = run.submission.student_pk, run.submission.exercise
                queued = queue_scores(session, student_pk, exercise,
                                      _passback(passback.grader, passback.public_url, exercise))
            except Exception:
                session.rollback()
                raise
    except Exception:
        log.exception("grade passback: the score of run %s not queued (the sweep will)",
                      run_id)
        return 0
    if queued:
        passback.ring()
    return queued


def queue_after_change(app: Flask, exercise: str,
                       students: Iterable[int] | None = None) -> int:
    """Queue the scores of ``students`` (pks; default: everyone with an account where the
    exercise has a line item) after a change of their rules; never raises (logged). Runs in the
    caller's app context, after the caller's commit."""
    try:
        queued = queue_exercise(db.session, exercise, passback_for(app, exercise),
                                None if students is None else list(students))
    except Exception:
        db.session.rollback()
        log.exception("grade passback: scores of %s not queued after a change", exercise)
        return 0
    if queued:
        ring(app)
    return queued


def queue_recent(app: Flask, since: dt.datetime) -> int:
    """Queue again the scores of the runs finished since ``since`` (in an app context)."""
    queued = 0
    for student_pk, exercise in recently_finished(db.session, since):
        try:
            queued += queue_scores(db.session, student_pk, exercise,
                                   passback_for(app, exercise))
        except Exception:
            db.session.rollback()
            log.exception("grade passback: sweep of student %s, %s failed", student_pk,
                          exercise)
    if queued:
        ring(app)
    return queued


def queue_deadlines(app: Flask, since: dt.datetime, until: dt.datetime) -> int:
    """Queue the scores of the students whose due or late-until time fell in ``(since,
    until]`` (a release by date, the work closed); in an app context."""
    queued = 0
    for exercise, students in deadlines_passed(db.session, since, until):
        queued += queue_after_change(app, exercise, students)
    return queued
