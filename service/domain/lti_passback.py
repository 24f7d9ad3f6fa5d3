"""Grade passback, what is sent: a student's counted score of an exercise as the LMS should hold
it, put in the outbox (``lti_scores``) for every line item of that exercise in a platform
where the student has an account. ``service.domain.lti_outbox`` takes the rows out again and
``service.lti.ags`` sends them.

**What the LMS gets is what the student may see** (``service.domain.student_gradebook``, the
release rules applied at the time of queueing), because an LMS shows its gradebook to the
student:

- the score released: the final score (after the late penalty and the adjustments),
  ``gradingProgress`` ``FullyGraded``;
- the held-out accuracy still withheld (the default until late-until): the *provisional*
  score the student sees, ``gradingProgress`` ``Pending`` (AGS: "the current value is partial
  and may be updated"; Moodle keeps no grade for it);
- the score withheld: no ``scoreGiven``; ``gradingProgress`` ``PendingManual`` when it waits
  for the instructor (``on_publish``, ``never``), ``Pending`` when it waits for a date;
- no counted score, and the latest run failed: no ``scoreGiven``, ``Failed``; no counted score
  while a run is queued or running: ``Pending``; nothing handed in: nothing is sent.

``activityProgress`` is ``Submitted`` while the student may still hand in, ``Completed`` once
their dates are closed. A due or late-until time that passes (a release by date, the work
closed) is found by :func:`deadlines_passed`, which the senders' sweep asks every minute.

**Newest wins**: one outbox row per (line item, account). A score equal to the row's is not
queued again (one already sent is not sent twice); a different one replaces it, pending, with
its attempts set back to 0, whatever the row's state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.domain.course_rules import Part, Window
from service.domain.student_gradebook import ExerciseGrade, student_gradebook
from service.extensions import DbSession
from service.models import (
    ExtensionGrant,
    GradingRun,
    LtiAccount,
    LtiLineItem,
    LtiScore,
    Schedule,
    Submission,
    utcnow,
)
from service.states import RunState, ScoreState

#: AGS 2.0's values (``activityProgress``, ``gradingProgress``) the tool sends.
SUBMITTED, COMPLETED = "Submitted", "Completed"
FULLY_GRADED, PENDING, PENDING_MANUAL, FAILED = "FullyGraded", "Pending", "PendingManual", "Failed"

#: Outbox states (``LtiScore.state``).
STATE_PENDING, STATE_SENT, STATE_FAILED = ScoreState.PENDING, ScoreState.SENT, ScoreState.FAILED

#: The languages of the comment, in this order.
COMMENT_LANGUAGES = ("ja", "en")


@dataclass(frozen=True)
class Score:
    """One score as AGS 2.0 carries it (without ``userId`` and ``timestamp``, which the outbox
    row gives)."""

    score_given: float | None
    score_maximum: float
    activity_progress: str
    grading_progress: str
    comment: str | None

    def same_as(self, row: LtiScore) -> bool:
        return (row.score_given, row.score_maximum, row.activity_progress, row.grading_progress,
                row.comment) == (self.score_given, self.score_maximum, self.activity_progress,
                                 self.grading_progress, self.comment)


@dataclass(frozen=True)
class Passback:
    """What the outbox needs to know of the service: the exercise's points, and the service's
    public address for the comment's link (None: no link, no comment)."""

    max_score: float
    public_url: str | None = None


def score_of(session: DbSession, student_pk: int, exercise: str, passback: Passback,
             now: dt.datetime) -> Score | None:
    """The score the LMS should hold for the student now (see the module's docstring); None
    when they handed nothing in."""
    book = student_gradebook(session, [(exercise, passback.max_score)], student_pk, now)
    if not book.exercises:
        return None
    grade = book.exercises[0]
    latest = _latest_run_state(session, student_pk, exercise)
    if latest is None and grade.final is None:
        return None
    closed = grade.dates.window(now) is Window.CLOSED
    activity = COMPLETED if closed else SUBMITTED
    comment = _comment(passback.public_url, grade, now)
    if grade.score_hidden:
        manual = any(w.part is Part.SCORE and w.until is None for w in grade.withheld)
        return Score(None, passback.max_score, activity,
                     PENDING_MANUAL if manual else PENDING, comment)
    if grade.final is not None:
        return Score(round(max(0.0, grade.final), 6), passback.max_score, activity,
                     PENDING if grade.provisional else FULLY_GRADED, comment)
    progress = FAILED if latest == RunState.FAILED else PENDING
    return Score(None, passback.max_score, activity, progress, comment)


def _latest_run_state(session: DbSession, student_pk: int, exercise: str) -> RunState | None:
    """The state of the latest run of the student's latest submission (None: no submission)."""
    row = session.execute(
        select(Submission.id, GradingRun.state)
        .outerjoin(GradingRun, GradingRun.submission_id == Submission.id)
        .where(Submission.student_pk == student_pk, Submission.exercise == exercise)
        .order_by(Submission.created_at.desc(), Submission.id.desc(), GradingRun.id.desc())
        .limit(1)).first()
    if row is None:
        return None
    return row[1] if row[1] is not None else RunState.QUEUED


def _comment(public_url: str | None, grade: ExerciseGrade, now: dt.datetime) -> str | None:
    """A line per language: where the feedback is (the counted submission's page, else the
    student's gradebook), and when a withheld score comes."""
    if not public_url:
        return None
    base = public_url.rstrip("/")
    link = (f"{base}/submissions/{grade.submission_id}" if grade.submission_id is not None
            else f"{base}/gradebook")
    lines = []
    for language in COMMENT_LANGUAGES:
        with force_locale(language):
            if grade.score_hidden:
                until = next((w.until for w in grade.withheld if w.part is Part.SCORE), None)
                lines.append(_("lti.comment.withheld", url=link) if until is None else
                             _("lti.comment.withheld_until", url=link,
                               date=f"{until:%Y-%m-%d %H:%M} UTC"))
            else:
                lines.append(_("lti.comment.feedback", url=link))
    return "\n".join(lines)


def _targets(session: DbSession, student_pk: int, exercise: str
             ) -> list[tuple[LtiLineItem, LtiAccount]]:
    """Each line item of the exercise, with the student's account on its platform."""
    return [(item, account) for item, account in session.execute(
        select(LtiLineItem, LtiAccount)
        .join(LtiAccount, LtiAccount.platform_id == LtiLineItem.platform_id)
        .where(LtiLineItem.exercise == exercise, LtiAccount.student_pk == student_pk)
        .order_by(LtiLineItem.id, LtiAccount.id))]


def queue_scores(session: DbSession, student_pk: int, exercise: str, passback: Passback,
                 now: dt.datetime | None = None) -> int:
    """Put the student's score of ``exercise`` in the outbox for each of its line items where
    they have an account, and commit: how many rows became pending. Cheap when the student
    has no account or the exercise no line item (one query)."""
    targets = _targets(session, student_pk, exercise)
    if not targets:
        return 0
    now = now or utcnow()
    score = score_of(session, student_pk, exercise, passback, now)
    if score is None:
        return 0
    queued = 0
    for item, account in targets:
        queued += _upsert(session, item.id, account.id, score, now)
    session.commit()
    return queued


def _upsert(session: DbSession, line_item_id: int, account_id: int, score: Score,
            now: dt.datetime) -> int:
    """Make the row hold ``score`` (1: it became pending; 0: it held it already). Two
    processes inserting the same new row: the loser's insert fails, it reads the winner's."""
    for _attempt in range(2):
        row = session.execute(select(LtiScore).where(
            LtiScore.line_item_id == line_item_id, LtiScore.account_id == account_id)
        ).scalar_one_or_none()
        if row is not None and score.same_as(row):
            return 0
        if row is None:
            row = LtiScore(line_item_id=line_item_id, account_id=account_id)
            try:
                with session.begin_nested():
                    _fill(row, score, now, None)
                    session.add(row)
                return 1
            except IntegrityError:
                continue
        _fill(row, score, now, row.scored_at)
        return 1
    return 0


def _fill(row: LtiScore, score: Score, now: dt.datetime, previous: dt.datetime | None) -> None:
    """A new pending score in ``row``; its time after the previous one, so that the platform,
    which keeps the newest score it got, keeps this one."""
    row.score_given, row.score_maximum = score.score_given, score.score_maximum
    row.activity_progress, row.grading_progress = score.activity_progress, score.grading_progress
    row.comment = score.comment
    row.scored_at = now if previous is None or now > previous else (
        previous + dt.timedelta(milliseconds=1))
    row.state, row.attempts, row.next_attempt_at = STATE_PENDING, 0, now
    row.last_status, row.last_error = None, None
    row.updated_at = now


def accounts_of_exercise(session: DbSession, exercise: str) -> list[int]:
    """The students (pk) who have an account on a platform holding a line item of
    ``exercise``: those whose scores change with the exercise's rules."""
    return [pk for pk in session.execute(
        select(LtiAccount.student_pk).distinct()
        .join(LtiLineItem, LtiLineItem.platform_id == LtiAccount.platform_id)
        .where(LtiLineItem.exercise == exercise, LtiAccount.student_pk.is_not(None))
        .order_by(LtiAccount.student_pk)).scalars() if pk is not None]


def queue_exercise(session: DbSession, exercise: str, passback: Passback,
                   students: Sequence[int] | None = None) -> int:
    """:func:`queue_scores` for ``students`` (default: every student with an account where the
    exercise has a line item), after a change of the exercise's rules or a publish."""
    now = utcnow()
    chosen = accounts_of_exercise(session, exercise) if students is None else students
    return sum(queue_scores(session, pk, exercise, passback, now) for pk in chosen)


def recently_finished(session: DbSession, since: dt.datetime) -> list[tuple[int, str]]:
    """(student pk, exercise) of the runs finished since ``since`` whose student has an
    account where the exercise has a line item: the sweep queues them again, in case the
    grading's own call was lost (an error, a process killed between the two commits)."""
    return [(pk, exercise) for pk, exercise in session.execute(
        select(Submission.student_pk, Submission.exercise).distinct()
        .join(GradingRun, GradingRun.submission_id == Submission.id)
        .join(LtiAccount, LtiAccount.student_pk == Submission.student_pk)
        .join(LtiLineItem, (LtiLineItem.platform_id == LtiAccount.platform_id)
              & (LtiLineItem.exercise == Submission.exercise))
        .where(GradingRun.finished_at >= since))]


def deadlines_passed(session: DbSession, since: dt.datetime, until: dt.datetime
                     ) -> list[tuple[str, list[int] | None]]:
    """The exercises with a line item whose due or late-until time fell in ``(since,
    until]`` (None: every student of it) and the students whose extension's did (their pks):
    their scores may now be released, their work closed."""
    items = set(session.execute(select(LtiLineItem.exercise).distinct()).scalars())
    if not items:
        return []
    found: list[tuple[str, list[int] | None]] = []
    for exercise, due, late in session.execute(
            select(Schedule.exercise, Schedule.due_at, Schedule.late_until)
            .where(Schedule.exercise.in_(sorted(items)))):
        if any(moment is not None and since < moment <= until for moment in (due, late)):
            found.append((exercise, None))
    whole = {exercise for exercise, _ in found}
    students: dict[str, list[int]] = {}
    for exercise, student_pk, due, late in session.execute(
            select(ExtensionGrant.exercise, ExtensionGrant.student_pk, ExtensionGrant.due_at,
                   ExtensionGrant.late_until)
            .where(ExtensionGrant.exercise.in_(sorted(items)))):
        if exercise not in whole and any(moment is not None and since < moment <= until
                                         for moment in (due, late)):
            students.setdefault(exercise, []).append(student_pk)
    return found + sorted((exercise, pks) for exercise, pks in students.items())
