"""One student's own gradebook, as they may see it: the class gradebook's row
(``gradebook.course_gradebook``) passed through the release rules (``service.domain.release``),
for the student's gradebook page and ``GET /api/gradebook`` alike.

Per exercise, by what the rules hide at the time asked:

- the score shown: ``raw``, ``penalty``, ``adjustment``, ``final`` and the counted submission,
  as the class gradebook counts them;
- the score hidden (``score`` withheld): all of them None, and the exercise left out of the
  course total (``hidden_from_total`` names it), so the total does not tell what is hidden;
- the held-out figure withheld: **provisional** figures, counted by the same rules
  (``final_grade.grade``) over each allowed submission's *public* score (the one the
  submission's page shows, ``release.public_score``); the counted submission is not named,
  since which one counts on the held-out figure would tell something of it.

Adjustments are shown with their comment, target and time, never their author, nor the
final before and after (figures that may be hidden).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from service.domain import final_grade
from service.domain.course_rules import Counts, Dates, LatePenalty, Part, Rules, Window, day_start
from service.domain.final_grade import AdjustMode, Attempt, Grade, course_total
from service.domain.gradebook import ExerciseColumn, GradeRow, course_gradebook
from service.domain.release import Withheld, public_body, public_score, withheld_parts
from service.domain.schedules import (
    adjustment_history,
    extension_for,
    load_changes,
    load_rules,
)
from service.extensions import DbSession
from service.models import GradingRun, Submission
from service.states import RunState


@dataclass(frozen=True)
class Note:
    """An instructor's adjustment as the student reads it."""

    item_id: str | None
    mode: AdjustMode
    #: None while the exercise's score is withheld.
    points: float | None
    comment: str
    at: dt.datetime


@dataclass(frozen=True)
class ExerciseGrade:
    """One exercise of the student's gradebook."""

    exercise: str
    max_score: float
    weight: float
    timezone: str
    dates: Dates
    extended: bool
    counts: Counts
    penalty_rule: LatePenalty
    submission_id: int | None
    raw: float | None
    penalty: float | None
    adjustment: float | None
    final: float | None
    late: bool
    provisional: bool
    score_hidden: bool
    withheld: list[Withheld]
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class StudentGradebook:
    exercises: list[ExerciseGrade]
    #: The course total in percent over the exercises whose score is shown.
    total: float | None
    #: Some figure of the total is provisional.
    provisional: bool
    #: Exercises whose score is withheld, left out of the total.
    hidden_from_total: list[str]


def student_gradebook(session: DbSession, exercises: Sequence[tuple[str, float]],
                      student_pk: int, now: dt.datetime) -> StudentGradebook:
    """The student's gradebook over ``exercises`` (id, max score) as they may see it at
    ``now`` (see the module's docstring)."""
    book = course_gradebook(session, exercises, student_pk=student_pk, items=True)
    if not book.rows:
        return StudentGradebook([], None, False, [])
    row = book.rows[0]
    history = adjustment_history(session, student_pk)
    shown: list[ExerciseGrade] = []
    for column in book.columns:
        grade_row = row.exercises[column.id]
        notes = [adj for adj in history if adj.exercise == column.id]
        shown.append(_exercise(session, column, grade_row, student_pk, notes, now))
    visible = [e for e in shown if not e.score_hidden]
    total = course_total({e.exercise: (e.final, e.max_score, e.weight) for e in visible})
    return StudentGradebook(
        shown, total.percent if visible else None,
        any(e.provisional for e in visible),
        [e.exercise for e in shown if e.score_hidden])


def _exercise(session: DbSession, column: ExerciseColumn, row: GradeRow, student_pk: int,
              adjustments: list, now: dt.datetime) -> ExerciseGrade:
    rules = column.rules
    dates = row.dates or rules.dates
    withheld = withheld_parts(rules, dates, now)
    hidden = {w.part for w in withheld}
    score_hidden = Part.SCORE in hidden
    provisional = Part.HOLDOUT_ACCURACY in hidden and not score_hidden
    grade: Grade = row.grade if row.grade is not None else final_grade.grade(
        [], dates, rules.penalty, rules.counts)
    submission_id = grade.counted.submission_id if grade.counted else None
    if provisional:
        grade = _provisional(session, rules, student_pk, dates)
        submission_id = None
    notes = [Note(adj.item_id, AdjustMode(adj.mode),
                  None if score_hidden else adj.points, adj.comment, adj.created_at)
             for adj in adjustments]
    figures = (None, None, None, None) if score_hidden else (
        grade.raw, grade.penalty if grade.counted else None,
        grade.adjustment if grade.final is not None else None, grade.final)
    return ExerciseGrade(
        exercise=column.id, max_score=column.max_score, weight=column.weight,
        timezone=rules.timezone, dates=dates, extended=row.extended, counts=rules.counts,
        penalty_rule=rules.penalty, submission_id=None if score_hidden else submission_id,
        raw=figures[0], penalty=figures[1], adjustment=figures[2], final=figures[3],
        late=grade.late, provisional=provisional, score_hidden=score_hidden,
        withheld=withheld, notes=notes)


def _provisional(session: DbSession, rules: Rules, student_pk: int, dates: Dates) -> Grade:
    """The student's grade counted over their submissions' public scores."""
    submissions = session.execute(
        select(Submission).where(Submission.student_pk == student_pk,
                                 Submission.exercise == rules.exercise)
        .order_by(Submission.created_at, Submission.id)).scalars().all()
    attempts, items_of = [], {}
    for submission in submissions:
        run = session.execute(
            select(GradingRun).where(GradingRun.submission_id == submission.id,
                                     GradingRun.state == RunState.GRADED)
            .order_by(GradingRun.id.desc()).limit(1)).scalar_one_or_none()
        score, items = None, {}
        if run is not None and run.score is not None:
            report = run.report or {}
            body = {"score": run.score, "items": report.get("items") or []}
            score = public_score(body)
            items = _public_items(body)
        attempts.append(Attempt(submission.id, submission.created_at, score,
                                run.id if run is not None else None))
        items_of[submission.id] = items
    changes = load_changes(session, rules.exercise, student_pk).get(
        (student_pk, rules.exercise))
    first = final_grade.grade(attempts, dates, rules.penalty, rules.counts, changes)
    if first.counted is None or not any(key is not None for key in (changes or {})):
        return first
    return final_grade.grade(attempts, dates, rules.penalty, rules.counts, changes,
                             items_of.get(first.counted.submission_id))


def _public_items(body: dict) -> dict[str, float]:
    """The item scores :func:`release.public_score` counts (the accuracy item re-judged)."""
    shown = public_body(body)
    return {str(item["id"]): float(item["score"]) for item in shown.get("items") or []
            if isinstance(item, dict) and isinstance(item.get("score"), int | float)}


@dataclass(frozen=True)
class OwnDates:
    """What the upload page tells a student of one exercise: their dates, the penalty, where
    ``now`` falls, and the attempts left today when there is a daily limit."""

    dates: Dates
    extended: bool
    timezone: str
    penalty: LatePenalty
    window: Window
    limit: int | None
    left: int | None


def own_dates(session: DbSession, student_pk: int, exercise_id: str, now: dt.datetime
              ) -> OwnDates:
    rules = load_rules(session, exercise_id)
    extension = extension_for(session, student_pk, exercise_id)
    dates = rules.dates_for(extension)
    limit = rules.daily_limit(extension)
    left = None
    if limit is not None:
        used = session.execute(select(func.count(Submission.id)).where(
            Submission.student_pk == student_pk, Submission.exercise == exercise_id,
            Submission.created_at >= day_start(now, rules.timezone))).scalar_one()
        left = max(0, limit - used)
    return OwnDates(dates, extension is not None, rules.timezone, rules.penalty,
                    dates.window(now), limit, left)


def likely_exercise(owns: Mapping[str, OwnDates]) -> str | None:
    """The exercise a student most likely hands in now, for the upload form to offer first: of
    those taking their submissions, the one closing first (one that never closes, last); else
    the one opening next; else the first listed."""
    order = {exercise_id: position for position, exercise_id in enumerate(owns)}
    never = dt.datetime.max
    accepting = [(own.dates.closes or never, order[exercise_id], exercise_id)
                 for exercise_id, own in owns.items() if own.window.accepts]
    if accepting:
        return min(accepting)[2]
    opening = [(own.dates.opens or never, order[exercise_id], exercise_id)
               for exercise_id, own in owns.items() if own.window == Window.NOT_OPEN]
    if opening:
        return min(opening)[2]
    return next(iter(owns), None)

