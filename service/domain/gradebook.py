"""The class's grades for one exercise, from the database: one row per roster student.

What counts, decided once here for the dashboard and the CSV export alike:

- a submission's score is that of its *latest graded* run: a regrade (after the reference
  changed) replaces the earlier grading of the same notebook, while the earlier run is kept;
  a run that ``failed`` has no score, a run stopped early (timeout...) keeps its partial score;
- a student's **best** score is the highest such score over their submissions of the exercise
  (ties go to the later submission), and the item results and measured accuracy shown with it
  are that submission's;
- the **latest** score is that of the student's most recent submission, and the row's status is
  that of the most recent submission's latest run (queued, running, graded, failed).

Students on the roster who handed nothing in have a row too (status ``none``).

At course scale (a thousand students, ten thousand submissions) the table is built from narrow
column tuples, never from ORM objects: :class:`StudentFacts`, :class:`SubmissionFacts`,
:class:`RunFacts` and :class:`ItemFacts` hold only what the table, the plots and the CSV read,
so a report (large JSON), a log or a feedback text is never fetched for a list. The choice of
each student's latest and best submission is made in SQL (window functions), so the database
hands over two rows per student, not every submission and run. Three queries whatever the class
size (students; their latest and best submissions with the totals; the best runs' items).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import aliased

from service.extensions import DbSession
from service.models import GradingRun, ItemScore, Student, Submission
from service.states import ItemStatus, RunState, RunStatus

#: Values of ``TableQuery.show``.
SHOW = ("all", "missing", "failed", "submitted")  # "failed": the stuck rows
#: Values of ``TableQuery.sort`` (plus ``item:<id>``).
SORTS = ("student", "name", "status", "best", "latest", "accuracy", "attempts", "last")
#: Run outcomes that mean the notebook did not run to the end.
STOPPED = tuple(status for status in RunStatus if status is not RunStatus.GRADED)
#: ``GradeRow.status`` of a student who handed nothing in.
NO_SUBMISSION = "none"


@dataclass(frozen=True, slots=True)
class SubmissionFacts:
    """What the class table needs of a submission (not its filename, hash or blob)."""

    id: int
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the class table needs of a run: no report, progress or log."""

    id: int
    state: RunState
    outcome: RunStatus | None
    score: float | None
    measured_accuracy: float | None

    @property
    def is_live(self) -> bool:
        return self.state.is_live


@dataclass(frozen=True, slots=True)
class ItemFacts:
    """One item result of a best run: no feedback text, no details."""

    item_id: str
    score: float
    status: ItemStatus


@dataclass
class SubmissionGrade:
    #: The row itself on one submission's pages, :class:`SubmissionFacts` in the class table.
    submission: Submission | SubmissionFacts
    #: The latest run, whatever its status (what the student is waiting for).
    current: GradingRun | RunFacts | None
    #: The latest graded run: the one whose score counts.
    counted: GradingRun | RunFacts | None

    @property
    def score(self) -> float | None:
        return self.counted.score if self.counted else None


@dataclass(frozen=True, slots=True)
class StudentFacts:
    """What the class table and the CSV show of a roster student (not their token hash)."""

    id: int
    student_id: str
    name: str
    email: str


@dataclass
class GradeRow:
    student: Student | StudentFacts
    #: Submissions of the exercise (in the class table: counted in SQL, not fetched).
    attempts: int = 0
    #: The most recent submission.
    latest: SubmissionGrade | None = None
    #: The highest-scoring submission (ties: the later).
    best: SubmissionGrade | None = None
    #: Item id -> result, from the best submission's counted run.
    items: dict[str, ItemScore | ItemFacts] = field(default_factory=dict)
    #: Submissions whose latest run is queued or running.
    live: int = 0
    #: Whether the latest run of any of the submissions failed.
    any_failed: bool = False

    @property
    def best_score(self) -> float | None:
        return self.best.score if self.best else None

    @property
    def latest_score(self) -> float | None:
        return self.latest.score if self.latest else None

    @property
    def accuracy(self) -> float | None:
        return self.best.counted.measured_accuracy if self.best and self.best.counted else None

    @property
    def last_submitted(self) -> dt.datetime | None:
        return self.latest.submission.created_at if self.latest else None

    @property
    def status(self) -> RunState | str:
        """:data:`NO_SUBMISSION`, or the latest run's :class:`RunState`."""
        if self.latest is None:
            return NO_SUBMISSION
        return self.latest.current.state if self.latest.current else RunState.QUEUED

    @property
    def run_status(self) -> RunStatus | None:
        """How the latest graded run ended (``graded``, ``timeout``...), when it is the latest."""
        current = self.latest.current if self.latest else None
        return current.outcome if current and current.state == RunState.GRADED else None

    @property
    def stuck(self) -> bool:
        """The latest attempt failed or stopped before the end: this student may need help."""
        return self.status == RunState.FAILED or self.run_status in STOPPED


@dataclass(frozen=True)
class TableQuery:
    """Sorting and filtering of the table, from the page's query string; unknown values fall
    back to the defaults, so a hand-edited address still shows a table."""

    sort: str = "student"
    descending: bool = False
    show: str = "all"
    #: Only students whose best score is below this (no graded submission counts as below).
    below: float | None = None
    search: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str], items: tuple[str, ...] = ()) -> TableQuery:
        sort = args.get("sort", "student")
        item_sort = sort.startswith("item:") and sort.removeprefix("item:") in items
        if sort not in SORTS and not item_sort:
            sort = "student"
        try:
            below = float(args["below"]) if args.get("below", "").strip() else None
        except ValueError:
            below = None
        show = args.get("show", "all")
        return cls(sort=sort, descending=args.get("order") == "desc",
                   show=show if show in SHOW else "all", below=below,
                   search=args.get("q", "").strip()[:100])

    def apply(self, rows: list[GradeRow]) -> list[GradeRow]:
        return sort_rows([row for row in rows if self.keeps(row)], self.sort, self.descending)

    def keeps(self, row: GradeRow) -> bool:
        if self.show == "missing" and row.attempts:
            return False
        if self.show == "submitted" and not row.attempts:
            return False
        if self.show == "failed" and not row.stuck:
            return False
        if self.below is not None and (row.best_score or 0.0) >= self.below:
            return False
        if self.search:
            needle = self.search.casefold()
            haystack = f"{row.student.student_id} {row.student.name} {row.student.email}"
            if needle not in haystack.casefold():
                return False
        return True


STATUS_ORDER = {RunState.FAILED: 0, NO_SUBMISSION: 1, RunState.QUEUED: 2, RunState.RUNNING: 3,
                RunState.GRADED: 4}


def _sort_value(row: GradeRow, key: str) -> Any:  # comparable with the same key's values
    if key.startswith("item:"):
        item = row.items.get(key.removeprefix("item:"))
        return item.score if item else None
    return {
        "student": lambda: row.student.student_id,
        "name": lambda: row.student.name.casefold(),
        "status": lambda: (STATUS_ORDER.get(row.status, 5), row.stuck is False),
        "best": lambda: row.best_score,
        "latest": lambda: row.latest_score,
        "accuracy": lambda: row.accuracy,
        "attempts": lambda: row.attempts,
        "last": lambda: row.last_submitted,
    }[key]()


def sort_rows(rows: list[GradeRow], key: str, descending: bool = False) -> list[GradeRow]:
    """Rows sorted by ``key``; rows without a value (no score yet) come last either way, and
    ties keep the order of student ids."""
    by_id = sorted(rows, key=lambda row: row.student.student_id)
    present = [row for row in by_id if _sort_value(row, key) is not None]
    missing = [row for row in by_id if _sort_value(row, key) is None]
    present.sort(key=lambda row: _sort_value(row, key), reverse=descending)
    return present + missing


def grade_submission(submission: Submission | SubmissionFacts,
                     runs: Sequence[GradingRun | RunFacts] | None = None) -> SubmissionGrade:
    """The submission's current run and counted run (``runs`` oldest first; by default its
    ``runs`` relationship)."""
    if runs is None:
        assert isinstance(submission, Submission), "facts come with their runs"
        runs = submission.runs
    counted = next((run for run in reversed(runs) if run.state == RunState.GRADED), None)
    return SubmissionGrade(submission, runs[-1] if runs else None, counted)


def best_of(grades: list[SubmissionGrade]) -> SubmissionGrade | None:
    """The highest-scoring of a student's submissions (oldest first); ties go to the later."""
    scored = [grade for grade in reversed(grades) if grade.score is not None]
    # first of equals wins; "or 0.0" only tells mypy what the filter above made sure of
    return max(scored, key=lambda grade: grade.score or 0.0, default=None)


def exercise_rows(session: DbSession, exercise_id: str) -> list[GradeRow]:
    """Every roster student's row for ``exercise_id``, by student id (see the module's
    docstring): the students, then one row per student who submitted with their latest and
    best submissions, then the best runs' items."""
    rows = {sid: GradeRow(StudentFacts(sid, student_id, name, email))
            for sid, student_id, name, email in session.execute(
                select(Student.id, Student.student_id, Student.name, Student.email)
                .order_by(Student.student_id))}
    for fact in session.execute(_latest_and_best(exercise_id)):
        row = rows.get(fact.student_pk)
        if row is None:
            continue
        row.attempts, row.live, row.any_failed = fact.attempts, fact.live, bool(fact.any_failed)
        grade = SubmissionGrade(
            SubmissionFacts(fact.id, fact.created_at),
            _run(fact.current_id, fact.current_state, fact.current_outcome, fact.current_score,
                 fact.current_accuracy),
            _run(fact.counted_id, RunState.GRADED, fact.counted_outcome, fact.counted_score,
                 fact.counted_accuracy))
        if fact.latest_rank == 1:
            row.latest = grade
        if fact.best_rank == 1 and fact.counted_score is not None:
            row.best = grade
    _attach_items(session, list(rows.values()))
    return list(rows.values())


def _run(run_id: int | None, state: RunState | None, outcome: RunStatus | None,
         score: float | None, accuracy: float | None) -> RunFacts | None:
    if run_id is None or state is None:
        return None
    return RunFacts(run_id, state, outcome, score, accuracy)


def _latest_and_best(exercise_id: str) -> Select:
    """One row per (student, submission) that is the student's latest or best submission of
    ``exercise_id``, with its current and counted runs and the student's totals.

    Each submission's current run is its highest run id and its counted run the highest graded
    one; window functions then rank each student's submissions by time (latest) and by counted
    score, later first on a tie (best), as :func:`best_of` does. Plain SQL that SQLite (3.25+)
    and PostgreSQL mean alike."""
    graded = GradingRun.state == RunState.GRADED
    per_submission = (
        select(Submission.id, Submission.student_pk, Submission.created_at,
               func.max(GradingRun.id).label("current_id"),
               func.max(case((graded, GradingRun.id))).label("counted_id"))
        .outerjoin(GradingRun, GradingRun.submission_id == Submission.id)
        .where(Submission.exercise == exercise_id)
        .group_by(Submission.id, Submission.student_pk, Submission.created_at)
        .subquery("per_submission"))
    current, counted = aliased(GradingRun, name="current_run"), aliased(GradingRun,
                                                                          name="counted_run")
    student = per_submission.c.student_pk
    newest_first = (per_submission.c.created_at.desc(), per_submission.c.id.desc())
    live = case((current.state.in_([RunState.QUEUED, RunState.RUNNING]), 1), else_=0)
    failed = case((current.state == RunState.FAILED, 1), else_=0)
    ranked = (
        select(
            per_submission.c.id, student, per_submission.c.created_at,
            per_submission.c.current_id, current.state.label("current_state"),
            current.outcome.label("current_outcome"), current.score.label("current_score"),
            current.measured_accuracy.label("current_accuracy"),
            per_submission.c.counted_id, counted.outcome.label("counted_outcome"),
            counted.score.label("counted_score"),
            counted.measured_accuracy.label("counted_accuracy"),
            func.row_number().over(partition_by=student, order_by=newest_first)
            .label("latest_rank"),
            func.row_number().over(
                partition_by=student,
                order_by=(counted.score.is_(None), counted.score.desc(), *newest_first))
            .label("best_rank"),
            func.count().over(partition_by=student).label("attempts"),
            func.sum(live).over(partition_by=student).label("live"),
            func.max(failed).over(partition_by=student).label("any_failed"))
        .outerjoin(current, current.id == per_submission.c.current_id)
        .outerjoin(counted, counted.id == per_submission.c.counted_id)
        .subquery("ranked"))
    return select(ranked).where((ranked.c.latest_rank == 1) | (ranked.c.best_rank == 1))


def _attach_items(session: DbSession, rows: list[GradeRow]) -> None:
    """The best runs' item results, in the order of each run's items."""
    by_run = {row.best.counted.id: row for row in rows
              if row.best is not None and row.best.counted is not None}
    if not by_run:
        return
    ids = sorted(by_run)
    for chunk in range(0, len(ids), 900):  # SQLite binds at most 999 parameters
        for run_id, item_id, score, status in session.execute(
            select(ItemScore.run_id, ItemScore.item_id, ItemScore.score, ItemScore.status)
            .where(ItemScore.run_id.in_(ids[chunk:chunk + 900]))
            .order_by(ItemScore.run_id, ItemScore.position)
        ):
            by_run[run_id].items[item_id] = ItemFacts(item_id, score, status)


@dataclass(frozen=True)
class Summary:
    students: int
    submitted: int
    graded: int
    stuck: int
    missing: int
    mean_best: float | None
    median_best: float | None


def summarize(rows: list[GradeRow]) -> Summary:
    best = [row.best_score for row in rows if row.best_score is not None]
    return Summary(
        students=len(rows),
        submitted=sum(1 for row in rows if row.attempts),
        graded=len(best),
        stuck=sum(1 for row in rows if row.stuck),
        missing=sum(1 for row in rows if not row.attempts),
        mean_best=statistics.fmean(best) if best else None,
        median_best=statistics.median(best) if best else None,
    )
