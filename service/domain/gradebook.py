"""The class's grades for one exercise, and the course's gradebook, from the database.

What counts is decided by the course's rules (``service.domain.final_grade``, the arithmetic;
``service.domain.course_rules``, the dates, penalties and release): a submission's score is that
of its *latest graded* run (a regrade replaces the earlier grading of the same notebook, the
earlier run is kept; a ``failed`` run has no score, a run stopped early keeps its partial
score); among the submissions the student's dates allow, the best after its late penalty, or
the last, counts; the instructor's adjustments are applied on top. The dashboard's class table,
the CSVs, the student's gradebook page and ``GET /api/gradebook`` all read it from here.

The **latest** score is that of the student's most recent submission, and the row's state is
that of the most recent submission's latest run (queued, running, graded, failed), with that
run's outcome when it is graded. Students on the roster who handed nothing in have a row too
(state ``none``).

At course scale (a thousand students, ten exercises, a hundred thousand submissions) the rows are
built from narrow column tuples, never from ORM objects: :class:`StudentFacts`,
:class:`SubmissionFacts`, :class:`RunFacts` and :class:`ItemFacts` hold only what the table, the
plots and the CSV read, so a report (large JSON), a log or a feedback text is never fetched for a
list. One query gives every submission of the exercises asked for with its current and counted
runs; the rules are applied in Python (they depend on each student's dates and adjustments);
the counted runs' items come in a further query when they are shown.
"""

from __future__ import annotations

import datetime as dt
import gc
import statistics
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import String, select, type_coerce

from service.domain import final_grade
from service.domain.course_rules import Dates, Extension, Rules
from service.domain.final_grade import Attempt, Change, CourseTotal, Grade, course_total
from service.domain.schedules import load_all_rules, load_changes, load_extensions, load_rules
from service.extensions import DbSession
from service.models import GradingRun, ItemScore, Student, Submission
from service.states import LIVE, ItemStatus, Outcome, RunState

#: Values of ``TableQuery.show``.
SHOW = ("all", "missing", "failed", "submitted")  # "failed": the stuck rows
#: Values of ``TableQuery.sort`` (plus ``item:<id>``).
SORTS = ("student", "name", "state", "final", "latest", "accuracy", "attempts", "last", "raw",
         "penalty", "adjustment")
#: Run outcomes that mean the notebook did not run to the end.
STOPPED = tuple(outcome for outcome in Outcome if outcome is not Outcome.GRADED)
#: ``GradeRow.state`` of a student who handed nothing in.
NO_SUBMISSION = "none"


class SubmissionFacts(NamedTuple):
    """What the class table needs of a submission (not its filename, hash or blob). A named
    tuple, like :class:`RunFacts`: immutable, and made fast (a course's gradebook makes a
    hundred thousand)."""

    id: int
    created_at: dt.datetime


class RunFacts(NamedTuple):
    """What the class table needs of a run: no report, progress or log."""

    id: int
    state: RunState
    outcome: Outcome | None
    score: float | None
    measured_accuracy: float | None

    @property
    def is_live(self) -> bool:
        return self.state.is_live


@dataclass(frozen=True, slots=True)
class ItemFacts:
    """One item result of a counted run: no feedback text, no details."""

    item_id: str
    score: float
    status: ItemStatus


@dataclass
class SubmissionGrade:
    #: The row itself on one submission's pages, :class:`SubmissionFacts` in the class table.
    submission: Submission | SubmissionFacts
    #: The latest run, whatever its state (what the student is waiting for).
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
    #: The submission that counts under the course's rules (``grade.counted``), if any.
    counted: SubmissionGrade | None = None
    #: The course's grade: raw, penalty, adjustment, final (``final_grade.Grade``).
    grade: Grade | None = None
    #: The student's dates (an extension's, or the schedule's).
    dates: Dates = field(default_factory=Dates)
    #: Whether the student has an extension of this exercise.
    extended: bool = False
    #: Item id -> result, from the counted submission's counted run.
    items: dict[str, ItemScore | ItemFacts] = field(default_factory=dict)
    #: Submissions whose latest run is queued or running.
    live: int = 0
    #: Whether the latest run of any of the submissions failed.
    any_failed: bool = False

    @property
    def final(self) -> float | None:
        """The final score under the course's rules (what the CSVs export)."""
        return self.grade.final if self.grade else None

    @property
    def raw(self) -> float | None:
        return self.grade.raw if self.grade else None

    @property
    def late(self) -> bool:
        return bool(self.grade and self.grade.late)

    @property
    def latest_score(self) -> float | None:
        return self.latest.score if self.latest else None

    @property
    def accuracy(self) -> float | None:
        return (self.counted.counted.measured_accuracy
                if self.counted and self.counted.counted else None)

    @property
    def last_submitted(self) -> dt.datetime | None:
        return self.latest.submission.created_at if self.latest else None

    @property
    def state(self) -> RunState | str:
        """:data:`NO_SUBMISSION`, or the latest run's :class:`RunState`."""
        if self.latest is None:
            return NO_SUBMISSION
        return self.latest.current.state if self.latest.current else RunState.QUEUED

    @property
    def outcome(self) -> Outcome | None:
        """How the latest graded run ended (``graded``, ``timeout``...), when it is the latest."""
        current = self.latest.current if self.latest else None
        return current.outcome if current and current.state == RunState.GRADED else None

    @property
    def stuck(self) -> bool:
        """The latest attempt failed or stopped before the end: this student may need help."""
        return self.state == RunState.FAILED or self.outcome in STOPPED


@dataclass(frozen=True)
class TableQuery:
    """Sorting and filtering of the table, from the page's query string; unknown values fall
    back to the defaults, so a hand-edited address still shows a table."""

    sort: str = "student"
    descending: bool = False
    show: str = "all"
    #: Only students whose final score is below this (no final score counts as below).
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
        if self.below is not None and (row.final or 0.0) >= self.below:
            return False
        if self.search:
            needle = self.search.casefold()
            haystack = f"{row.student.student_id} {row.student.name} {row.student.email}"
            if needle not in haystack.casefold():
                return False
        return True


STATE_ORDER = {RunState.FAILED: 0, NO_SUBMISSION: 1, RunState.QUEUED: 2, RunState.RUNNING: 3,
                RunState.GRADED: 4}


def _sort_value(row: GradeRow, key: str) -> Any:  # comparable with the same key's values
    if key.startswith("item:"):
        item = row.items.get(key.removeprefix("item:"))
        return item.score if item else None
    return {
        "student": lambda: row.student.student_id,
        "name": lambda: row.student.name.casefold(),
        "state": lambda: (STATE_ORDER.get(row.state, 5), row.stuck is False),
        "final": lambda: row.final,
        "latest": lambda: row.latest_score,
        "accuracy": lambda: row.accuracy,
        "attempts": lambda: row.attempts,
        "last": lambda: row.last_submitted,
        "raw": lambda: row.raw,
        "penalty": lambda: row.grade.penalty if row.grade and row.grade.raw is not None else None,
        "adjustment": lambda: row.grade.adjustment if row.grade and row.final is not None else None,
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


def counted_of(grades: Sequence[SubmissionGrade], rules: Rules, extension: Extension | None,
               changes: Mapping[str | None, Change] | None = None,
               items: Mapping[str, float] | None = None
               ) -> tuple[SubmissionGrade | None, Grade]:
    """A student's counted submission among ``grades`` (one exercise, any order) and their
    :class:`~service.domain.final_grade.Grade` under ``rules``."""
    dates = rules.dates_for(extension)
    attempts = [Attempt(g.submission.id, g.submission.created_at, g.score,
                        g.counted.id if g.counted else None) for g in grades]
    result = final_grade.grade(attempts, dates, rules.penalty, rules.counts, changes, items)
    chosen = None if result.counted is None else next(
        g for g in grades if g.submission.id == result.counted.submission_id)
    return chosen, result


#: One submission as the gradebook's query gives it: (student pk, exercise, what the rules need
#: of it, its current run, its counted run). A tuple, and no :class:`SubmissionGrade` until a row
#: shows it (its latest and counted submissions): a course's gradebook reads 100,000 of them.
_Fact = tuple[int, str, Attempt, RunFacts | None, RunFacts | None]


def _submission_grade(fact: _Fact) -> SubmissionGrade:
    attempt = fact[2]
    return SubmissionGrade(SubmissionFacts(attempt.submission_id, attempt.submitted_at),
                           fact[3], fact[4])


def _facts(session: DbSession, exercises: Sequence[str] | None, student_pk: int | None = None
           ) -> list[_Fact]:
    """Every submission (of the exercises listed, or all; of one student, or all) with its
    current run (the highest id) and counted run (the highest graded id): by exercise, then
    oldest first.

    One flat query, a row per run (a submission without a run: one row of NULLs), ordered so a
    submission's runs come together, oldest first; the current and counted runs are picked here
    in one pass. Executed on the connection (Core), not through the ORM's loading: at course
    scale (100,000 submissions) the ORM's per-row work cost more than the query. For the same
    reason the time and the states come as the driver gives them and are read here
    (:func:`_fact`): SQLAlchemy's per-value conversion of SQLite's time strings and of the
    state strings cost half a second per 100,000 rows."""
    query = (
        select(Submission.id, Submission.student_pk, Submission.exercise,
               type_coerce(Submission.created_at, String), GradingRun.id,
               type_coerce(GradingRun.state, String), type_coerce(GradingRun.outcome, String),
               GradingRun.score, GradingRun.measured_accuracy)
        .outerjoin(GradingRun, GradingRun.submission_id == Submission.id)
        .order_by(Submission.exercise, Submission.created_at, Submission.id, GradingRun.id))
    if exercises is not None:
        query = query.where(Submission.exercise.in_(list(exercises)))
    if student_pk is not None:
        query = query.where(Submission.student_pk == student_pk)
    facts: list[_Fact] = []
    last: Any = None  # the previous row
    counted: Any = None  # the last graded row of the current submission
    graded = RunState.GRADED.value
    for row in session.connection().execute(query).all():  # fetchall: one call, not one a row
        if last is not None and row[0] != last[0]:
            facts.append(_fact(last, counted))
            counted = None
        if row[5] == graded:
            counted = row
        last = row
    if last is not None:
        facts.append(_fact(last, counted))
    return facts


_STATES = {state.value: state for state in RunState}
_OUTCOMES: dict[str | None, Outcome | None] = {
    None: None, **{outcome.value: outcome for outcome in Outcome}}


def _time(value: dt.datetime | str) -> dt.datetime:
    """A time as the driver gives it: a ``datetime`` (PostgreSQL), or SQLite's ISO text."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def _fact(last: Any, counted: Any) -> _Fact:
    """A submission's :class:`_Fact` from its last run's row and its last graded run's row."""
    sid, student_pk, exercise, created_at, run_id, state, outcome, score, accuracy = last
    created_at = _time(created_at)
    current = None if run_id is None or state is None else RunFacts(
        run_id, _STATES[state], _OUTCOMES[outcome], score, accuracy)
    if counted is None:
        counted_run = None
    elif counted is last:
        counted_run = current
    else:
        counted_run = RunFacts(counted[4], RunState.GRADED, _OUTCOMES[counted[6]], counted[7],
                               counted[8])
    attempt = Attempt(sid, created_at, None, None) if counted_run is None else Attempt(
        sid, created_at, counted_run.score, counted_run.id)
    return student_pk, exercise, attempt, current, counted_run


def _student_facts(session: DbSession, student_pk: int | None = None
                   ) -> dict[int, StudentFacts]:
    """The roster (or one student of it), by student id."""
    query = select(Student.id, Student.student_id, Student.name, Student.email)
    if student_pk is not None:
        query = query.where(Student.id == student_pk)
    return {sid: StudentFacts(sid, student_id, name, email)
            for sid, student_id, name, email in session.execute(
                query.order_by(Student.student_id))}


def exercise_rows(session: DbSession, exercise_id: str, rules: Rules | None = None,
                  items: bool = True) -> list[GradeRow]:
    """Every roster student's row for ``exercise_id``, by student id (see the module's
    docstring), under ``rules`` (by default the stored schedule's); with ``items``, the
    counted runs' item results."""
    rules = rules or load_rules(session, exercise_id)
    with _bulk():
        students = _student_facts(session)
        by_student: dict[int, list[_Fact]] = {}
        for fact in _facts(session, [exercise_id]):
            by_student.setdefault(fact[0], []).append(fact)
        return _rows(session, students, exercise_id, rules, by_student,
                     load_extensions(session, exercise_id), load_changes(session, exercise_id),
                     items)


@contextmanager
def _bulk() -> Iterator[None]:
    """Building a class's rows makes a few hundred thousand small objects that all live until
    the page or the CSV is written. Python's cyclic garbage collector, started again and again
    by so many allocations, found nothing to free and took a third of the time (half a second
    of the gradebook's 100,000 submissions). It is paused meanwhile, and only if it was running
    (reference counting frees memory as always; it runs again at the end)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _rows(session: DbSession, students: Mapping[int, StudentFacts], exercise_id: str,
          rules: Rules, by_student: Mapping[int, list[_Fact]],
          extensions: Mapping[tuple[int, str], Extension],
          changes: Mapping[tuple[int, str], Mapping[str | None, Change]],
          items: bool) -> list[GradeRow]:
    rows: list[GradeRow] = []
    failed = RunState.FAILED
    for pk, student in students.items():
        facts = by_student.get(pk, [])
        extension = extensions.get((pk, exercise_id))
        row = GradeRow(student, attempts=len(facts), dates=rules.dates_for(extension),
                       extended=extension is not None)
        attempts = []
        for fact in facts:  # one pass: the rules' attempts, runs waiting, runs failed
            attempts.append(fact[2])
            current = fact[3]
            if current is not None:
                if current.state in LIVE:  # current.is_live, without a property call a row
                    row.live += 1
                elif current.state == failed:
                    row.any_failed = True
        if facts:
            row.latest = _submission_grade(facts[-1])
        _count(row, facts, attempts, rules, changes.get((pk, exercise_id)), None)
        rows.append(row)
    item_changed = [row for row in rows if any(
        key is not None for key in changes.get((row.student.id, exercise_id), {}))]
    if items:
        _attach_items(session, rows)
    else:
        _attach_items(session, item_changed)
    for row in item_changed:  # item adjustments need the counted run's item scores
        facts = by_student.get(row.student.id, [])
        scores = {item_id: item.score for item_id, item in row.items.items()}
        _count(row, facts, [fact[2] for fact in facts], rules,
               changes.get((row.student.id, exercise_id)), scores)
    return rows


def _count(row: GradeRow, facts: Sequence[_Fact], attempts: list[Attempt], rules: Rules,
           changes: Mapping[str | None, Change] | None, items: Mapping[str, float] | None
           ) -> None:
    """``row.grade`` under ``rules`` and ``row.counted`` (the latest's object when it is the
    latest submission that counts)."""
    row.grade = final_grade.grade(attempts, row.dates, rules.penalty, rules.counts, changes,
                                  items)
    chosen = row.grade.counted
    if chosen is None:
        row.counted = None
    elif row.latest is not None and row.latest.submission.id == chosen.submission_id:
        row.counted = row.latest
    else:
        row.counted = next(_submission_grade(fact) for fact in facts if fact[2] is chosen)


def _attach_items(session: DbSession, rows: list[GradeRow]) -> None:
    """The counted runs' item results, in the order of each run's items."""
    by_run = {row.counted.counted.id: row for row in rows
              if row.counted is not None and row.counted.counted is not None}
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


# --- the course's gradebook -----------------------------------------------------------------


@dataclass(frozen=True)
class ExerciseColumn:
    """An exercise as a gradebook column: its id, points, weight and rules."""

    id: str
    max_score: float
    rules: Rules

    @property
    def weight(self) -> float:
        return self.rules.weight


@dataclass
class CourseRow:
    """One student's gradebook: a row per exercise, and the course total."""

    student: StudentFacts
    exercises: dict[str, GradeRow]
    total: CourseTotal


@dataclass
class Gradebook:
    columns: list[ExerciseColumn]
    rows: list[CourseRow]


def course_gradebook(session: DbSession, exercises: Sequence[tuple[str, float]],
                     student_pk: int | None = None, items: bool = False) -> Gradebook:
    """The gradebook of the roster (or of one student) over ``exercises`` (id, max score):
    each exercise's :class:`GradeRow` under its rules, and the course total
    (``final_grade.course_total``). One query for every submission, whatever the class size."""
    with _bulk():
        return _course_gradebook(session, exercises, student_pk, items)


def _course_gradebook(session: DbSession, exercises: Sequence[tuple[str, float]],
                      student_pk: int | None, items: bool) -> Gradebook:
    ids = [exercise_id for exercise_id, _ in exercises]
    all_rules = load_all_rules(session, ids)
    columns = [ExerciseColumn(exercise_id, maximum, all_rules[exercise_id])
               for exercise_id, maximum in exercises]
    students = _student_facts(session, student_pk)
    per_exercise: dict[str, dict[int, list[_Fact]]] = {exercise_id: {} for exercise_id in ids}
    facts = _facts(session, ids, student_pk)
    for fact in facts:
        per_exercise[fact[1]].setdefault(fact[0], []).append(fact)
    extensions = load_extensions(session, student_pk=student_pk)
    changes = load_changes(session, student_pk=student_pk)
    by_exercise = {
        column.id: {row.student.id: row for row in _rows(
            session, students, column.id, column.rules, per_exercise[column.id], extensions,
            changes, items)}
        for column in columns}
    rows = []
    for pk, student in students.items():
        mine = {column.id: by_exercise[column.id][pk] for column in columns}
        total = course_total({column.id: (mine[column.id].final, column.max_score,
                                          column.weight) for column in columns})
        rows.append(CourseRow(student, mine, total))
    return Gradebook(columns, rows)


@dataclass(frozen=True)
class Summary:
    students: int
    submitted: int
    graded: int
    stuck: int
    missing: int
    mean_final: float | None
    median_final: float | None


def summarize(rows: list[GradeRow]) -> Summary:
    best = [row.final for row in rows if row.final is not None]
    return Summary(
        students=len(rows),
        submitted=sum(1 for row in rows if row.attempts),
        graded=len(best),
        stuck=sum(1 for row in rows if row.stuck),
        missing=sum(1 for row in rows if not row.attempts),
        mean_final=statistics.fmean(best) if best else None,
        median_final=statistics.median(best) if best else None,
    )
