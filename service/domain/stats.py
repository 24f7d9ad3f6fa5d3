"""Numbers about one exercise for the instructor dashboard: what the plots in
``service.views.plots`` draw. Queries only: nothing here renders or writes.

A student counts once, through their *best run*: of all their graded runs of the exercise (first
gradings and regrades alike), the one with the highest score, the latest one on a tie. The score
distribution, the accuracy distribution and the item pass rates all read that run, so one student
who submitted twenty times weighs what a student who submitted once does.

Rows are fetched with a few narrow queries (column tuples, never reports) and combined in
Python, which keeps the SQL plain enough to mean the same on SQLite and PostgreSQL; a course is
a thousand students and ten thousand submissions, not millions (``make bench-service``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any, TypedDict

from flask import current_app
from sqlalchemy import func, select

from grader import Exercise
from service.domain.gradebook import GradeRow, exercise_rows
from service.extensions import DbSession, db
from service.models import Submission
from service.states import ItemStatus

#: Up to this many hourly buckets the submissions are counted per hour, beyond it per day.
MAX_HOURLY_BUCKETS = 72
#: Bins of the score histogram, equally wide from 0 to the exercise's maximum.
SCORE_BINS = 10


class ItemStats(TypedDict):
    id: str
    #: ``{"ja": ..., "en": ...}``; the id in both when the spec no longer has the item.
    title: dict[str, str]
    points: float
    #: Students whose best run has this item fully correct (status ``correct``).
    passed: int
    #: Students with a best run (the denominator).
    students: int
    #: ``passed / students``, None when no student has a graded run yet.
    rate: float | None


class ExerciseCounts(TypedDict):
    #: Students with at least one submission of the exercise.
    students: int
    #: ... of whom have at least one graded run (they have a best run).
    graded: int
    #: ... have no graded run and at least one failed one (worth a look).
    failed: int
    #: ... have only queued or running runs.
    pending: int
    submissions: int


class SubmissionSeries(TypedDict):
    #: ``"hour"`` or ``"day"``.
    bucket: str
    step: dt.timedelta
    #: (bucket start in UTC, submissions in it), every bucket from the first to the last.
    series: list[tuple[dt.datetime, int]]


class ExerciseStats(TypedDict):
    exercise: str
    title: dict[str, str]
    max_score: float
    counts: ExerciseCounts
    #: Best score of each graded student.
    scores: list[float]
    score_edges: list[float]
    #: Test accuracy measured on each graded student's best run, where that run measured one.
    accuracies: list[float]
    accuracy_edges: list[float]
    #: Full points from here (the spec's accuracy rule), or None.
    accuracy_threshold: float | None
    items: list[ItemStats]
    submissions: SubmissionSeries
    deadline: dt.datetime | None


def exercise_stats(exercise_id: str, deadline: dt.datetime | None = None,
                   rows: list[GradeRow] | None = None) -> ExerciseStats:
    """Everything the dashboard plots for ``exercise_id``; ``deadline`` (naive UTC, like the
    database) is passed through for the submissions chart. ``rows``: the gradebook's rows when
    the caller has them already (the dashboard page), so the class is read once per page."""
    exercise = current_app.config["GRADER"].exercise(exercise_id)
    session = db.session

    # A student counts through the same run as the gradebook table and the CSV: the one the
    # course's rules count, each judged by its latest graded run (a regrade replaces a score).
    if rows is None:
        rows = exercise_rows(session, exercise_id)
    rows = [row for row in rows if row.attempts]
    best = {row.student.id: row.counted.counted for row in rows
            if row.counted is not None and row.counted.counted is not None}
    failed = {row.student.id for row in rows if row.student.id not in best and row.any_failed}
    students = {row.student.id for row in rows}

    # the final scores under the course's rules (penalties, adjustments), as the CSV has them
    scores = sorted(row.final for row in rows if row.final is not None)
    accuracies = sorted(run.measured_accuracy for run in best.values()
                        if run.measured_accuracy is not None)
    created = hourly_submissions(session, exercise_id)
    return ExerciseStats(
        exercise=exercise_id,
        title={"ja": exercise.title.ja, "en": exercise.title.en},
        max_score=exercise.max_score,
        counts=ExerciseCounts(students=len(students), graded=len(best), failed=len(failed),
                      pending=len(students) - len(best) - len(failed),
                      submissions=sum(row.attempts for row in rows)),
        scores=scores,
        score_edges=score_edges(exercise.max_score),
        accuracies=accuracies,
        accuracy_edges=accuracy_edges(exercise),
        accuracy_threshold=exercise.accuracy.threshold if exercise.accuracy else None,
        items=item_stats(exercise, [row for row in rows if row.student.id in best]),
        submissions=submission_series(created),
        deadline=deadline,
    )


def item_stats(exercise: Exercise, rows: list[GradeRow]) -> list[ItemStats]:
    """Pass rate of each item over the best runs (``rows``: the students who have one, with
    their items): the spec's items in its order, then any item the runs scored that the spec no
    longer has."""
    passed: Counter[str] = Counter()
    seen: dict[str, None] = {}
    for row in sorted(rows, key=lambda row: row.counted.counted.id
                      if row.counted and row.counted.counted else 0):
        for item_id, result in row.items.items():
            seen.setdefault(item_id)
            if result.status == ItemStatus.CORRECT:
                passed[item_id] += 1
    graded = len(rows)
    points = {item.id: item.points for item in exercise.items}
    titles = {item.id: {"ja": item.title.ja, "en": item.title.en} for item in exercise.items}
    order = [item.id for item in exercise.items] + [i for i in seen if i not in points]
    return [
        ItemStats(id=item_id, title=titles.get(item_id, {"ja": item_id, "en": item_id}),
                  points=points.get(item_id, 0.0), passed=passed[item_id], students=graded,
                  rate=passed[item_id] / graded if graded else None)
        for item_id in order
    ]


def hourly_submissions(session: DbSession, exercise_id: str) -> Counter[dt.datetime]:
    """How many submissions of ``exercise_id`` began each hour (naive UTC), counted in SQL: a
    class's ten thousand timestamps never leave the database."""
    column = Submission.created_at
    if session.get_bind().dialect.name == "sqlite":
        hour: Any = func.strftime("%Y-%m-%d %H:00:00", column)
    else:
        hour = func.date_trunc("hour", column)
    counts: Counter[dt.datetime] = Counter()
    for start, count in session.execute(
            select(hour, func.count()).where(Submission.exercise == exercise_id).group_by(hour)):
        counts[start if isinstance(start, dt.datetime) else dt.datetime.fromisoformat(start)] \
            += count
    return counts


def submission_series(created: Mapping[dt.datetime, int]) -> SubmissionSeries:
    """Submissions per hour, or per day once that would take more than
    :data:`MAX_HOURLY_BUCKETS` hours; ``created``: how many submissions were made at each moment
    (any moment: it is put in its bucket here). Empty buckets in between are kept (a gap is
    news)."""
    if not created:
        return SubmissionSeries(bucket="hour", step=dt.timedelta(hours=1), series=[])
    hours = {moment.replace(minute=0, second=0, microsecond=0) for moment in created}
    hourly = (max(hours) - min(hours)) < dt.timedelta(hours=MAX_HOURLY_BUCKETS)
    step = dt.timedelta(hours=1) if hourly else dt.timedelta(days=1)

    def bucket(moment: dt.datetime) -> dt.datetime:
        moment = moment.replace(minute=0, second=0, microsecond=0)
        return moment if hourly else moment.replace(hour=0)

    counts: Counter[dt.datetime] = Counter()
    for moment, count in created.items():
        counts[bucket(moment)] += count
    first, last = min(counts), max(counts)
    series = []
    moment = first
    while moment <= last:
        series.append((moment, counts.get(moment, 0)))
        moment += step
    return SubmissionSeries(bucket="hour" if hourly else "day", step=step, series=series)


def score_edges(max_score: float) -> list[float]:
    """``SCORE_BINS`` equal bins from 0 to ``max_score``: 0, 10, ..., 100."""
    top = max_score or 1.0
    return [round(top * k / SCORE_BINS, 6) for k in range(SCORE_BINS + 1)]


def accuracy_edges(exercise: Exercise) -> list[float]:
    """One open bin below the spec's partial-credit floor, then steps of 0.01 up to 1, where
    the spread between students who trained the model properly shows (wider steps for a
    low floor); tenths without a rule."""
    if exercise.accuracy is None:
        return [k / 10 for k in range(11)]
    floor = exercise.accuracy.floor
    width = next(w for w in (0.01, 0.02, 0.05, 0.1, 1.0) if (1.0 - floor) / w <= 20)
    steps = math.ceil(round((1.0 - floor) / width, 6))
    edges = [round(min(floor + width * k, 1.0), 4) for k in range(steps + 1)]
    return ([0.0] if floor > 0 else []) + edges
