"""The course's rules, proved three ways (issue 18):

1. the arithmetic of ``course_rules`` and ``final_grade`` on plain values, edge by edge: the
   penalty, the window's edges, extensions, best vs last, adjustments, the course total;
2. a property test: random classes written into a real database (SQLite and PostgreSQL), read
   back by ``gradebook.course_gradebook``, compared with a small re-implementation of the rules
   written here from the issue's text (exact fractions, never ``final_grade``);
3. the issue's "Done when": a seeded class (late, on time, extended, adjusted, regraded lower)
   whose exercise CSV and gradebook CSV equal, cell by cell, a gradebook computed by hand.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from service.domain.adjustments import adjust
from service.domain.course_rules import (
    Counts,
    Dates,
    Extension,
    LatePenalty,
    Rules,
    RulesError,
    Window,
    parse_time,
)
from service.domain.csv_export import gradebook_csv
from service.domain.final_grade import (
    AdjustMode,
    Attempt,
    Change,
    course_total,
    grade,
    in_force,
)
from service.domain.gradebook import course_gradebook, exercise_rows
from service.domain.instructors import change_password, create_instructor
from service.domain.roster import import_roster
from service.domain.schedules import ScheduleChange, grant_extension, set_schedule
from service.extensions import db
from service.models import (
    Adjustment,
    ExtensionGrant,
    GradingRun,
    ItemScore,
    Schedule,
    Student,
    Submission,
)
from service.states import ItemStatus, Outcome, RunState

US = dt.timedelta(microseconds=1)
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
#: 2026-12-24T23:59:59+09:00, as the database holds it (naive UTC).
DUE = dt.datetime(2026, 12, 24, 14, 59, 59)


# --- 1. the arithmetic on plain values ---------------------------------------------------------


@pytest.mark.parametrize(("spec", "late_by", "fraction"), [
    ("0", DAY, 0.0),
    ("0", 100 * DAY, 0.0),
    ("100%", dt.timedelta(0), 0.0),        # exactly at due: on time
    ("100%", US, 1.0),                     # one microsecond after: all of it
    ("100%", 30 * DAY, 1.0),
    ("30%", US, 0.3),                      # once, however late
    ("30%", 9 * DAY, 0.3),
    ("10%/day", US, 0.1),                  # the first day starts at once
    ("10%/day", DAY, 0.1),                 # a full day is one started day
    ("10%/day", DAY + US, 0.2),            # and one microsecond more starts the second
    ("10%/day", 9 * DAY + US, 1.0),        # 10 started days: everything
    ("10%/day", 11 * DAY + US, 1.0),       # 12 started days: capped at 1
    ("5%/hour", dt.timedelta(minutes=59), 0.05),
    ("5%/hour", HOUR, 0.05),
    ("5%/hour", HOUR + US, 0.10),
    ("5%/hour", 19 * HOUR + US, 1.0),      # 20 started hours
    ("5%/hour", 100 * HOUR, 1.0),
    ("12.5%/day", 2 * DAY + US, 0.375),    # 3 started days
    ("33%/day", 3 * DAY, 0.99),
    ("33%/day", 3 * DAY + US, 1.0),        # 4 x 33% = 132%: capped
])
def test_penalty_fraction_per_started_day_or_hour_capped_at_one(
        spec: str, late_by: dt.timedelta, fraction: float):
    assert LatePenalty.parse(spec).fraction(late_by) == pytest.approx(fraction, abs=1e-12)


#: docs/course-rules.md's worked examples: due 2026-12-24 23:59:59 JST, a score of 80.
DOC_EXAMPLES = [  # (handed in, JST), then 10%/day, 5%/hour, 30%, 100%
    ("2026-12-24T23:59:59+09:00", (80, 80, 80, 80)),
    ("2026-12-25T00:00:00+09:00", (72, 76, 56, 0)),
    ("2026-12-25T23:59:59+09:00", (72, 0, 56, 0)),
    ("2026-12-26T00:00:00+09:00", (64, 0, 56, 0)),
    ("2027-01-03T00:00:00+09:00", (0, 0, 56, 0)),
]


@pytest.mark.parametrize(("handed_in", "finals"), DOC_EXAMPLES)
def test_the_worked_examples_of_the_docs(handed_in: str, finals: tuple[int, ...]):
    dates = Dates(due=parse_time("2026-12-24T23:59:59+09:00"),
                  late_until=parse_time("2027-12-31T00:00:00+09:00"))
    for spec, final in zip(("10%/day", "5%/hour", "30%", "100%"), finals, strict=True):
        result = grade([attempt(1, parse_time(handed_in), 80.0)], dates, LatePenalty.parse(spec),
                       Counts.BEST)
        assert result.final == pytest.approx(final), spec


def test_penalty_never_applies_before_due_and_parses_only_what_it_documents():
    assert LatePenalty.parse("50%/day").fraction(-DAY) == 0.0
    for text in ("0", "100%", "30%", "10%/day", "5%/hour", "12.5%/day"):
        assert str(LatePenalty.parse(text)) == text
    assert LatePenalty.parse(" 10 % / DAY ") == LatePenalty(10.0, "day")
    for bad in ("150%", "10%/week", "ten", "-5%", "10"):
        with pytest.raises(RulesError):
            LatePenalty.parse(bad)


OPENS, LATE_UNTIL = DUE - 7 * DAY, DUE + 3 * DAY


@pytest.mark.parametrize(("at", "window"), [
    (OPENS - US, Window.NOT_OPEN),
    (OPENS, Window.ON_TIME),
    (DUE - US, Window.ON_TIME),
    (DUE, Window.ON_TIME),           # exactly at due: on time
    (DUE + US, Window.LATE),         # one microsecond after: late
    (LATE_UNTIL, Window.LATE),       # exactly at late-until: still accepted
    (LATE_UNTIL + US, Window.CLOSED),
])
def test_window_edges(at: dt.datetime, window: Window):
    dates = Dates(OPENS, DUE, LATE_UNTIL).check()
    assert dates.window(at) is window
    assert dates.window(at).accepts is (window in (Window.ON_TIME, Window.LATE))
    assert dates.accepts(at) is dates.window(at).accepts
    for partial in (Dates(due=DUE), Dates(opens=OPENS), Dates(), Dates(OPENS, DUE)):
        assert partial.accepts(at) is partial.window(at).accepts, partial


def test_window_without_late_until_closes_at_due_and_without_due_never():
    assert Dates(due=DUE).window(DUE) is Window.ON_TIME
    assert Dates(due=DUE).window(DUE + US) is Window.CLOSED
    assert Dates().window(DUE + 1000 * DAY) is Window.ON_TIME
    assert Dates(opens=OPENS).window(DUE + 1000 * DAY) is Window.ON_TIME
    assert Dates(due=DUE).late_by(DUE + HOUR) == HOUR and Dates().late_by(DUE) == dt.timedelta(0)
    for bad in (Dates(late_until=DUE), Dates(opens=DUE, due=DUE),
                Dates(due=DUE, late_until=DUE - US)):
        with pytest.raises(RulesError):
            bad.check()


def test_extension_dates_keep_the_class_late_window_length():
    rules = Rules("ex", Dates(OPENS, DUE, LATE_UNTIL))
    assert rules.dates_for(None) == Dates(OPENS, DUE, LATE_UNTIL)
    # no late-until of its own: the class's 3 days after the student's own due
    assert rules.dates_for(Extension(DUE + 2 * DAY)) == Dates(OPENS, DUE + 2 * DAY, DUE + 5 * DAY)
    # its own late-until wins, even a shorter window
    assert rules.dates_for(Extension(DUE + 2 * DAY, DUE + 2 * DAY + HOUR)) == Dates(
        OPENS, DUE + 2 * DAY, DUE + 2 * DAY + HOUR)
    # a class without a late window: the extension closes at its due
    no_late = Rules("ex", Dates(OPENS, DUE))
    assert no_late.dates_for(Extension(DUE + DAY)).closes == DUE + DAY
    ext = no_late.dates_for(Extension(DUE + DAY))
    assert ext.window(DUE + DAY) is Window.ON_TIME and ext.window(DUE + DAY + US) is Window.CLOSED
    assert Rules("ex", attempts_per_day=3).daily_limit(Extension(DUE, extra_attempts=2)) == 5


def attempt(n: int, at: dt.datetime, score: float | None) -> Attempt:
    return Attempt(n, at, score)


TEN_PER_DAY = LatePenalty.parse("10%/day")
WINDOW = Dates(OPENS, DUE, LATE_UNTIL)


def test_on_time_and_late_grades():
    on_time = grade([attempt(1, DUE, 80.0)], WINDOW, TEN_PER_DAY, Counts.BEST)
    assert (on_time.raw, on_time.penalty, on_time.adjustment, on_time.final, on_time.late) == (
        80.0, 0.0, 0.0, 80.0, False)
    late = grade([attempt(1, DUE + US, 80.0)], WINDOW, TEN_PER_DAY, Counts.BEST)
    assert (late.raw, late.penalty, late.final, late.late, late.fraction) == (
        80.0, pytest.approx(8.0), pytest.approx(72.0), True, pytest.approx(0.1))
    two_days = grade([attempt(1, DUE + DAY + US, 80.0)], WINDOW, TEN_PER_DAY, Counts.BEST)
    assert (two_days.penalty, two_days.final) == (pytest.approx(16.0), pytest.approx(64.0))
    everything = grade([attempt(1, DUE + US, 80.0)], WINDOW, LatePenalty.parse("100%"),
                       Counts.BEST)
    assert (everything.raw, everything.final, everything.counted.submission_id) == (80.0, 0.0, 1)


def test_best_compares_after_the_penalty_and_ties_go_to_the_later():
    on_time, late = attempt(1, DUE - HOUR, 70.0), attempt(2, DUE + HOUR, 90.0)
    # 90 late at 10%: 81 beats 70
    assert grade([on_time, late], WINDOW, TEN_PER_DAY, Counts.BEST).counted == late
    # 90 late at 50%: 45 loses to 70
    half = LatePenalty.parse("50%")
    assert grade([late, on_time], WINDOW, half, Counts.BEST).counted == on_time
    # 45 on time against 90 late at 50% (45): equal values, the later counts
    early = attempt(1, DUE - HOUR, 45.0)
    tie = grade([late, early], WINDOW, half, Counts.BEST)
    assert tie.counted == late and tie.final == 45.0 and tie.penalty == 45.0
    # equal scores on time: the later one
    first, second = attempt(1, DUE - 2 * HOUR, 60.0), attempt(2, DUE - HOUR, 60.0)
    assert grade([second, first], WINDOW, TEN_PER_DAY, Counts.BEST).counted == second
    # same time: the higher submission id is the later
    same = [attempt(7, DUE - HOUR, 60.0), attempt(3, DUE - HOUR, 60.0)]
    assert grade(same, WINDOW, TEN_PER_DAY, Counts.BEST).counted.submission_id == 7


@pytest.mark.parametrize(("spec", "late_by", "on_time", "late_score"), [
    # 5%/day, 6 started days = 30%: 90 late is worth 63, as much as 63 on time; in floating
    # point 90 * (1 - 0.30000000000000004) = 62.99999999999999 and the earlier one won
    ("5%/day", 5 * DAY + HOUR, 63.0, 90.0),
    ("5%/day", 6 * DAY + HOUR, 3.25, 5.0),     # 7 started days = 35%: 5 -> 3.25
    ("12.5%/hour", 2 * HOUR + US, 31.25, 50.0),  # 3 started hours = 37.5%
])
def test_best_ties_after_the_penalty_are_exact_not_floating_point(
        spec: str, late_by: dt.timedelta, on_time: float, late_score: float):
    dates = Dates(due=DUE, late_until=DUE + 30 * DAY)
    early, late = attempt(1, DUE - HOUR, on_time), attempt(2, DUE + late_by, late_score)
    result = grade([early, late], dates, LatePenalty.parse(spec), Counts.BEST)
    assert result.counted == late and result.late
    assert result.final == pytest.approx(on_time)


def test_last_is_the_latest_graded_and_ungraded_are_passed_over():
    graded_ = attempt(1, DUE - 2 * HOUR, 90.0)
    lower = attempt(2, DUE - HOUR, 30.0)
    pending = attempt(3, DUE - US, None)
    result = grade([pending, lower, graded_], WINDOW, TEN_PER_DAY, Counts.LAST)
    assert result.counted == lower and result.final == 30.0
    assert (result.allowed, result.attempts) == (3, 3)
    best = grade([pending, lower, graded_], WINDOW, TEN_PER_DAY, Counts.BEST)
    assert best.counted == graded_
    nothing = grade([pending], WINDOW, TEN_PER_DAY, Counts.LAST)
    assert (nothing.counted, nothing.raw, nothing.final) == (None, None, None)


def test_submissions_outside_the_dates_never_count():
    before = attempt(1, OPENS - US, 100.0)
    after = attempt(2, LATE_UNTIL + US, 100.0)
    inside = attempt(3, LATE_UNTIL, 10.0)
    result = grade([before, after, inside], WINDOW, LatePenalty(), Counts.LAST)
    assert result.counted == inside and (result.allowed, result.attempts) == (1, 3)
    assert grade([before, after], WINDOW, LatePenalty(), Counts.BEST).final is None


def test_in_force_latest_per_target_and_remove():
    rows: list[tuple[str | None, AdjustMode, float]] = [
        (None, AdjustMode.ADD, 5.0), ("conv1", AdjustMode.SET, 3.0), (None, AdjustMode.SET, 50.0),
        ("conv1", AdjustMode.REMOVE, 0.0), ("pool1", AdjustMode.ADD, -1.0)]
    assert in_force(rows) == {None: Change(AdjustMode.SET, 50.0),
                              "pool1": Change(AdjustMode.ADD, -1.0, "pool1")}
    assert in_force([*rows, (None, AdjustMode.REMOVE, 0.0)]) == {
        "pool1": Change(AdjustMode.ADD, -1.0, "pool1")}


ITEMS_40_60 = {"a": 30.0, "b": 20.0}  # a counted run of 50


def changes(*rows: tuple[str | None, str, float]) -> dict[str | None, Change]:
    return in_force([(item, AdjustMode(mode), points) for item, mode, points in rows])


@pytest.mark.parametrize(("rows", "late", "expected"), [
    # (adjustments, late by, (raw, penalty, adjustment, final))
    ((), False, (50, 0, 0, 50)),
    (((None, "add", 5),), False, (50, 0, 5, 55)),
    (((None, "add", -80),), False, (50, 0, -50, 0)),          # the total floors at 0
    (((None, "set", 42),), False, (50, 0, -8, 42)),
    (((None, "set", 42),), True, (50, 5, -3, 42)),            # set ignores the penalty
    ((("a", "set", 40),), False, (50, 0, 10, 60)),            # item a 30 -> 40
    ((("b", "add", -25),), False, (50, 0, -20, 30)),          # item b 20 -> 0, not -5
    ((("a", "set", 40),), True, (50, 6, 10, 54)),             # penalty on the corrected 60
    ((("a", "set", 40), (None, "add", 5)), True, (50, 6, 15, 59)),
    ((("z", "add", 4),), False, (50, 0, 4, 54)),              # an item the run lacks: from 0
    (((None, "add", 60),), False, (50, 0, 60, 110)),          # no ceiling: a bonus may exceed
    (((None, "add", 5), (None, "remove", 0)), False, (50, 0, 0, 50)),
])
def test_adjustments_item_and_total(rows: tuple, late: bool, expected: tuple):
    at = DUE + HOUR if late else DUE
    result = grade([attempt(1, at, 50.0)], WINDOW, TEN_PER_DAY, Counts.BEST,
                   changes(*rows), ITEMS_40_60)
    got = (result.raw, result.penalty, result.adjustment, result.final)
    assert got == pytest.approx(expected)
    assert result.raw - result.penalty + result.adjustment == pytest.approx(result.final)


def test_adjustments_without_a_counted_submission():
    assert grade([], WINDOW, TEN_PER_DAY, Counts.BEST).final is None
    hand = grade([], WINDOW, TEN_PER_DAY, Counts.BEST, changes((None, "set", 17)))
    assert (hand.raw, hand.penalty, hand.adjustment, hand.final) == (None, 0.0, 17.0, 17.0)
    added = grade([attempt(1, DUE, None)], WINDOW, TEN_PER_DAY, Counts.BEST,
                  changes((None, "add", -3)))
    assert added.final == 0.0


def test_course_total_weights():
    # (50/100 * 1 + 10/20 * 3) / 4 = 50 %
    assert course_total({"a": (50.0, 100.0, 1.0), "b": (10.0, 20.0, 3.0)}).percent == 50.0
    # a missing final counts as 0: (1 * 1 + 0 * 1) / 2 = 50 %
    assert course_total({"a": (100.0, 100.0, 1.0), "b": (None, 20.0, 1.0)}).percent == 50.0
    # weight 0 does not count
    assert course_total({"a": (80.0, 100.0, 1.0), "b": (0.0, 20.0, 0.0)}).percent == 80.0
    # (0.9 * 2 + 0.6 * 1) / 3 = 80 %
    assert course_total({"a": (90.0, 100.0, 2.0), "b": (12.0, 20.0, 1.0)}).percent == (
        pytest.approx(80.0))
    assert course_total({"a": (80.0, 100.0, 0.0)}).percent is None
    assert course_total({}).percent is None


# --- 2. the gradebook against a re-implementation, on random classes -------------------------


@dataclass
class Run:
    state: RunState
    #: Item scores of a graded run (a: out of 40, b: out of 60).
    items: tuple[float, float] | None = None
    outcome: Outcome = Outcome.GRADED


@dataclass
class Sub:
    at: dt.datetime
    runs: list[Run]


@dataclass
class Plan:
    """One exercise's schedule as the test means it (None fields: not set)."""

    opens: dt.datetime | None
    due: dt.datetime | None
    late_until: dt.datetime | None
    percent: Fraction
    per: str | None
    counts: str
    weight: float

    @property
    def spec(self) -> str:
        if self.percent == 0:
            return "0"
        number = f"{float(self.percent):g}%"
        return f"{number}/{self.per}" if self.per else number


@dataclass
class Klass:
    students: int
    exercises: list[str]
    plans: dict[str, Plan | None]
    subs: dict[tuple[int, str], list[Sub]] = field(default_factory=dict)
    extensions: dict[tuple[int, str], tuple[dt.datetime, dt.datetime | None]] = field(
        default_factory=dict)
    adjustments: dict[tuple[int, str], list[tuple[str | None, str, float]]] = field(
        default_factory=dict)


MAX_SCORE = 100.0
EXERCISE_IDS = ("e1", "e2", "e3")

offsets = st.one_of(
    st.sampled_from([-US, dt.timedelta(0), US, DAY, DAY + US, HOUR, HOUR + US, 3 * DAY,
                     3 * DAY + US, -7 * DAY, -7 * DAY - US]),
    st.integers(-8 * 86_400, 8 * 86_400).map(lambda s: dt.timedelta(seconds=s)),
    st.integers(-2 * 86_400 * 10**6, 5 * 86_400 * 10**6).map(
        lambda us: dt.timedelta(microseconds=us)))
halves = st.integers(0, 120).map(lambda n: n / 2)


@st.composite
def plans(draw: st.DrawFn) -> Plan | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None  # no schedule row: the defaults
    due = draw(st.sampled_from([DUE, None]))
    late_until = None
    if due is not None and draw(st.booleans()):
        late_until = due + draw(st.sampled_from([dt.timedelta(0), HOUR, DAY, 3 * DAY]))
    opens = draw(st.sampled_from([None, DUE - 7 * DAY]))
    percent = Fraction(draw(st.sampled_from(["0", "5", "10", "12.5", "33", "50", "100"])))
    return Plan(opens, due, late_until, percent, draw(st.sampled_from([None, "day", "hour"])),
                draw(st.sampled_from(["best", "last"])),
                draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])))


runs_ = st.lists(st.one_of(
    st.tuples(st.integers(0, 80), st.integers(0, 120)).map(
        lambda ab: Run(RunState.GRADED, (ab[0] / 2, ab[1] / 2))),
    st.tuples(st.integers(0, 80), st.integers(0, 120)).map(
        lambda ab: Run(RunState.GRADED, (ab[0] / 2, ab[1] / 2), Outcome.TIMEOUT)),
    st.sampled_from([Run(RunState.FAILED), Run(RunState.QUEUED), Run(RunState.RUNNING)])),
    min_size=0, max_size=3)


@st.composite
def classes(draw: st.DrawFn) -> Klass:
    students = draw(st.integers(1, 4))
    exercises = list(EXERCISE_IDS[:draw(st.integers(1, 3))])
    klass = Klass(students, exercises, {e: draw(plans()) for e in exercises})
    for pk, exercise in itertools.product(range(students), exercises):
        klass.subs[pk, exercise] = [Sub(DUE + draw(offsets), draw(runs_))
                                    for _ in range(draw(st.integers(0, 4)))]
        if draw(st.integers(0, 3)) == 0:
            due = DUE + draw(st.sampled_from([-DAY, HOUR, DAY, 2 * DAY, 4 * DAY]))
            own = draw(st.sampled_from([None, dt.timedelta(0), HOUR, 2 * DAY]))
            klass.extensions[pk, exercise] = (due, None if own is None else due + own)
        klass.adjustments[pk, exercise] = draw(st.lists(st.one_of(
            st.tuples(st.sampled_from([None, "a", "b"]), st.just("add"),
                      st.integers(-200, 200).map(lambda n: n / 4)),
            st.tuples(st.sampled_from([None, "a", "b"]), st.just("set"), halves),
            st.tuples(st.sampled_from([None, "a", "b"]), st.just("remove"), st.just(0.0))),
            max_size=3))
    return klass


def write_class(klass: Klass) -> list[int]:
    """The class in the database, as the service's own rows; the students' primary keys."""
    session = db.session
    for table in (ItemScore, GradingRun, Submission, Adjustment, ExtensionGrant, Schedule,
                  Student):
        session.execute(delete(table))
    students = [Student(student_id=f"p{k:03d}", name=f"P {k}", email=f"p{k}@example.org",
                        token_hash=f"{k:064x}") for k in range(klass.students)]
    session.add_all(students)
    for exercise, plan in klass.plans.items():
        if plan is not None:
            session.add(Schedule(exercise=exercise, opens_at=plan.opens, due_at=plan.due,
                                 late_until=plan.late_until, late_penalty=plan.spec,
                                 counts=plan.counts, timezone="Asia/Tokyo", weight=plan.weight))
    session.flush()
    for (k, exercise), subs in klass.subs.items():
        for n, sub in enumerate(subs):
            row = Submission(student_pk=students[k].id, exercise=exercise, filename="x.ipynb",
                             notebook_sha256=f"{k}-{exercise}-{n}".ljust(64, "0"), size=1,
                             created_at=sub.at)
            for run in sub.runs:
                grading = GradingRun(state=run.state, queued_at=sub.at)
                if run.items is not None:
                    grading.outcome, grading.score = run.outcome, sum(run.items)
                    grading.max_score = MAX_SCORE
                    for position, (item_id, score, top) in enumerate(
                            zip(("a", "b"), run.items, (40.0, 60.0), strict=True)):
                        grading.items.append(ItemScore(position=position, item_id=item_id,
                                                       score=score, max_score=top,
                                                       status=ItemStatus.PARTIAL))
                row.runs.append(grading)
            session.add(row)
            session.flush()  # ids in the order written: a later run has a higher id
    for (k, exercise), (due, late_until) in klass.extensions.items():
        session.add(ExtensionGrant(student_pk=students[k].id, exercise=exercise, due_at=due,
                                   late_until=late_until))
    for (k, exercise), rows in klass.adjustments.items():
        for item_id, mode, points in rows:
            session.add(Adjustment(student_pk=students[k].id, exercise=exercise,
                                   item_id=item_id, mode=mode, points=points, comment="why",
                                   author="t"))
            session.flush()
    session.commit()
    return [student.id for student in students]


# The rules, re-implemented from the text with exact fractions.


def started(late: dt.timedelta, unit: dt.timedelta) -> int:
    """Started units in ``late`` (> 0), in whole microseconds: ceil without floats."""
    return -(-(late // US) // (unit // US))


def expected_grade(klass: Klass, k: int, exercise: str) -> dict[str, Any]:
    plan = klass.plans[exercise]
    opens = plan.opens if plan else None
    due = plan.due if plan else None
    late_until = plan.late_until if plan else None
    if (k, exercise) in klass.extensions:
        own_due, own_late = klass.extensions[k, exercise]
        if own_late is None and due is not None and late_until is not None:
            own_late = own_due + (late_until - due)  # the class's late window's length
        due, late_until = own_due, own_late
    closes = None if due is None else (late_until if late_until is not None else due)

    def fraction(at: dt.datetime) -> Fraction:
        if plan is None or due is None or at <= due or plan.percent == 0:
            return Fraction(0)
        share = plan.percent / 100
        if plan.per is not None:
            share *= started(at - due, DAY if plan.per == "day" else HOUR)
        return min(Fraction(1), share)

    # every submission, in the order written (= id order), with its latest graded run
    candidates = []
    for n, sub in enumerate(klass.subs[k, exercise]):
        if opens is not None and sub.at < opens:
            continue
        if closes is not None and sub.at > closes:
            continue
        graded_runs = [run for run in sub.runs if run.items is not None]
        if graded_runs:
            candidates.append((sub.at, n, graded_runs[-1].items))
    counted = None
    if candidates:
        if plan is not None and plan.counts == "last":
            counted = max(candidates, key=lambda c: (c[0], c[1]))
        else:
            counted = max(candidates, key=lambda c: (
                Fraction(sum(c[2])) * (1 - fraction(c[0])), c[0], c[1]))
    current: dict[str | None, tuple[str, float]] = {}
    for item_id, mode, points in klass.adjustments.get((k, exercise), []):
        if mode == "remove":
            current.pop(item_id, None)
        else:
            current[item_id] = (mode, points)
    raw = None if counted is None else Fraction(sum(counted[2]))
    corrected = raw
    item_scores = {} if counted is None else dict(zip(("a", "b"), map(Fraction, counted[2]),
                                                      strict=True))
    if any(target is not None for target in current):
        corrected = raw or Fraction(0)
        for item_id, (mode, points) in current.items():
            if item_id is None:
                continue
            before = item_scores.get(item_id, Fraction(0))
            after = Fraction(points) if mode == "set" else max(Fraction(0),
                                                                 before + Fraction(points))
            corrected += after - before
    share = fraction(counted[0]) if counted else Fraction(0)
    penalty = (corrected or Fraction(0)) * share
    final: Fraction | None
    total = current.get(None)
    if total is not None and total[0] == "set":
        final = Fraction(total[1])
    elif corrected is None:
        final = None if total is None else max(Fraction(0), Fraction(total[1]))
    else:
        final = corrected - penalty
        if total is not None:
            final = max(Fraction(0), final + Fraction(total[1]))
    late = counted is not None and due is not None and counted[0] > due
    return {"counted": None if counted is None else counted[1], "raw": raw, "penalty": penalty,
            "final": final, "late": late}


def expected_total(klass: Klass, finals: dict[str, Fraction | None]) -> Fraction | None:
    weights = {e: Fraction(p.weight) if p else Fraction(1) for e, p in klass.plans.items()}
    if sum(weights.values()) == 0:
        return None
    share = sum(weights[e] * (finals[e] or 0) / Fraction(MAX_SCORE) for e in klass.exercises)
    return 100 * share / sum(weights.values())


def close(got: float | None, want: Fraction | None) -> bool:
    if want is None or got is None:
        return got is None and want is None
    return math.isclose(got, float(want), rel_tol=1e-9, abs_tol=1e-9)


def check_class(klass: Klass) -> None:
    pks = write_class(klass)
    book = course_gradebook(db.session, [(e, MAX_SCORE) for e in klass.exercises])
    assert [row.student.id for row in book.rows] == pks
    for k, row in enumerate(book.rows):
        finals: dict[str, Fraction | None] = {}
        for exercise in klass.exercises:
            want = expected_grade(klass, k, exercise)
            got = row.exercises[exercise]
            where = f"student {k}, {exercise}: {got.grade}"
            counted_n = None
            if got.counted is not None:
                ids = [s.id for s in db.session.execute(
                    select(Submission).where(Submission.student_pk == pks[k],
                                             Submission.exercise == exercise)
                    .order_by(Submission.id)).scalars()]
                counted_n = ids.index(got.counted.submission.id)
            assert counted_n == want["counted"], where
            assert close(got.raw, want["raw"]), where
            assert close(got.final, want["final"]), where
            assert got.late is want["late"], where
            if got.final is not None:
                assert got.grade is not None
                assert close(got.grade.penalty, want["penalty"]), where
                assert math.isclose((got.raw or 0) - got.grade.penalty + got.grade.adjustment,
                                    got.final, abs_tol=1e-9), where
            assert got.attempts == len(klass.subs[k, exercise])
            finals[exercise] = want["final"]
        assert close(row.total.percent, expected_total(klass, finals)), f"student {k} total"
    for exercise in klass.exercises:  # the class table reads the same rules the same way
        table = exercise_rows(db.session, exercise)
        assert [(r.student.id, r.final, r.raw, r.late, r.counted and r.counted.submission.id)
                for r in table] == [
            (r.student.id, r.exercises[exercise].final, r.exercises[exercise].raw,
             r.exercises[exercise].late, r.exercises[exercise].counted
             and r.exercises[exercise].counted.submission.id) for r in book.rows]


#: One app per test's database (``make_app`` is function-scoped; hypothesis runs every example
#: in one call of the test): keyed by the factory, which the dict keeps alive.
_APPS: dict[object, Flask] = {}


#: Random classes per database: 150 under hypothesis' default profile (``make test``), 30 under
#: the ``unit`` profile of ``make test-unit`` (``tests/conftest.py``): each builds a class in a
#: real database.
EXAMPLES = settings.default.max_examples * 3 // 2


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(klass=classes())
def test_gradebook_equals_the_rules_reimplemented_on_random_classes(
        make_app: Callable[..., Flask], klass: Klass):
    if make_app not in _APPS:
        _APPS.clear()
        _APPS[make_app] = make_app()
    with _APPS[make_app].app_context():
        check_class(klass)


# --- 3. the "Done when": a seeded class and its CSVs, computed by hand -----------------

EXERCISE = "chap06_cnn"
QUIZ = "quiz"
ROSTER = ("student_id,name,email\n"
          "s001,Aoi Tanaka,aoi@example.org\n"     # on time (and a quiz counted last, lower)
          "s002,Ben Carter,ben@example.org\n"     # late, counted after the penalty
          "s003,Chie Sato,chie@example.org\n"     # extended
          "s004,Daiki Ito,daiki@example.org\n"    # late and adjusted (item and total)
          "s005,Emi Mori,emi@example.org\n"       # regraded lower
          "s006,Fumi Abe,\n")                     # nothing handed in
PASSWORD = "correct horse battery"
#: The quiz is due 2026-12-10T21:00:00+09:00 (12:00 UTC), no late window.
QUIZ_DUE = dt.datetime(2026, 12, 10, 12, 0)


def seed_submission(student_id: str, exercise: str, at: dt.datetime, *scores: float | None
                    ) -> None:
    """A submission acknowledged at ``at`` with a run per score (None: a failed run), oldest
    first, as the worker writes them: each graded run with conv1 = score - 6 and pool1 = 6
    (the quiz: one item q = score)."""
    session = db.session
    student = session.execute(select(Student).where(Student.student_id == student_id)
                              ).scalar_one()
    sub = Submission(student=student, exercise=exercise, filename="hw.ipynb",
                     notebook_sha256=f"{student_id}{exercise}{at:%Y%m%d%H%M%S%f}"[:64],
                     size=100, created_at=at)
    for score in scores:
        if score is None:
            sub.runs.append(GradingRun(state=RunState.FAILED, queued_at=at, reason="died"))
            continue
        run = GradingRun(state=RunState.GRADED, outcome=Outcome.GRADED, score=score,
                         max_score=20.0 if exercise == QUIZ else 100.0, queued_at=at,
                         finished_at=at + HOUR)  # graded an hour later: the time stays `at`
        parts = [("q", score, 20.0)] if exercise == QUIZ else [("conv1", score - 6, 6.0),
                                                               ("pool1", 6.0, 6.0)]
        for position, (item_id, points, top) in enumerate(parts):
            run.items.append(ItemScore(position=position, item_id=item_id, score=points,
                                       max_score=top, status=ItemStatus.PARTIAL))
        sub.runs.append(run)
    session.add(sub)
    session.commit()


def test_seeded_class_csvs_equal_the_gradebook_computed_by_hand(
        make_app: Callable[..., Flask]):
    app = make_app(WTF_CSRF_ENABLED=False)
    with app.app_context():
        import_roster(ROSTER)
        spec = app.config["GRADER"].exercise(EXERCISE)
        items = [item.id for item in spec.items]
        # chap06_cnn: due 2026-12-24 23:59:59 JST, late until 3 days later, 10% per started
        # day, best counts, weight 2. The quiz: due 2026-12-10 21:00 JST, no late window,
        # last counts, weight 1 (the default), out of 20.
        set_schedule(db.session, EXERCISE, ScheduleChange(
            due="2026-12-24T23:59:59+09:00", late_until="2026-12-27T23:59:59+09:00",
            late_penalty="10%/day", counts="best", weight="2", timezone="Asia/Tokyo"), "t")
        set_schedule(db.session, QUIZ, ScheduleChange(
            due="2026-12-10T21:00:00+09:00", counts="last"), "t")
        # s001: on time, 80 (an hour before due).                                final 80
        seed_submission("s001", EXERCISE, DUE - HOUR, 80.0)
        #       quiz: 15, then 12 before the due; last counts.                   quiz 12
        seed_submission("s001", QUIZ, QUIZ_DUE - DAY, 15.0)
        seed_submission("s001", QUIZ, QUIZ_DUE - HOUR, 12.0)
        # s002: 60 on time; 90 one day and one second late = 2 started days = 20%:
        #       90 - 18 = 72 > 60, so the late one counts: raw 90, penalty 18.   final 72
        seed_submission("s002", EXERCISE, DUE - DAY, 60.0)
        seed_submission("s002", EXERCISE, DUE + DAY + dt.timedelta(seconds=1), 90.0)
        # s003: extended to due + 2 days (no late-until of its own: the class's 3 days after
        #       it). 85 exactly at the extended due: on time (late by 20% for the class).
        #       95 at the extended due + 2 days 1 hour (past the class's late-until): 3
        #       started days = 30%, 95 - 28.5 = 66.5 < 85: the 85 counts.     final 85
        grant_extension(db.session, "s003", EXERCISE, "2026-12-26T23:59:59+09:00", None, "t")
        seed_submission("s003", EXERCISE, DUE + 2 * DAY, 85.0)
        seed_submission("s003", EXERCISE, DUE + 4 * DAY + HOUR, 95.0)
        #       quiz: 18 exactly at its due: on time.                            quiz 18
        seed_submission("s003", QUIZ, QUIZ_DUE, 18.0)
        # s004: 50, 30 hours late = 2 started days = 20%. pool1 set from 6 to 10 (corrected
        #       54), penalty 54 x 20% = 10.8, 54 - 10.8 = 43.2, total +5 = 48.2.
        #       adjustment = 48.2 - (50 - 10.8) = 9.                            final 48.2
        seed_submission("s004", EXERCISE, DUE + 30 * HOUR, 50.0)
        pool = adjust(db.session, "s004", EXERCISE, 100.0, items, AdjustMode.SET, 10.0,
                      "pool1 was graded against a wrong shape", "t", item_id="pool1")
        bonus = adjust(db.session, "s004", EXERCISE, 100.0, items, AdjustMode.ADD, 5.0,
                       "presentation", "t")
        assert (pool.before, pool.after, bonus.before, bonus.after) == pytest.approx(
            (40.0, 43.2, 43.2, 48.2))  # the audit trail: 50 - 10 late, then 54 - 10.8, +5
        #       quiz: nothing handed in; graded by hand, set to 20.             quiz 20
        adjust(db.session, "s004", QUIZ, 20.0, ["q"], AdjustMode.SET, 20.0, "oral exam", "t")
        # s005: graded 88, regraded 61 (a grader bug fixed), then a regrade that failed:
        #       the latest graded run counts, lower or not.                     final 61
        seed_submission("s005", EXERCISE, DUE - 2 * DAY, 88.0, 61.0, None)
        #       quiz: 20 one second after the due (no late window): kept, never counted.
        seed_submission("s005", QUIZ, QUIZ_DUE + dt.timedelta(seconds=1), 20.0)
        instructor, once = create_instructor("teacher2")
        change_password(instructor, once, PASSWORD, PASSWORD)
        book = course_gradebook(db.session, [(EXERCISE, 100.0), (QUIZ, 20.0)])
        plain_book, canvas_book = gradebook_csv(book), gradebook_csv(book, "canvas")
    client = app.test_client()
    assert client.post("/dashboard/login", data={"username": "teacher2", "password": PASSWORD}
                       ).status_code == 303
    exercise_csv = client.get(f"/dashboard/{EXERCISE}/grades.csv").get_data()
    exercise_canvas = client.get(f"/dashboard/{EXERCISE}/grades.csv?format=canvas").get_data()

    def cells(raw: bytes | str) -> list[list[str]]:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        assert text.startswith("\ufeff")
        return list(csv.reader(io.StringIO(text[1:])))

    blank = [""] * 9  # conv2, conv3, pool2, ... accuracy: not in these runs
    assert items[0] == "conv1" and items[3] == "pool1"

    def with_items(conv1: str, pool1: str) -> list[str]:
        return [conv1, "", "", pool1, *blank[:len(items) - 4]]

    assert cells(exercise_csv) == [
        ["student_id", "name", "email", "score", "raw", "penalty", "adjustment", "late", *items],
        ["s001", "Aoi Tanaka", "aoi@example.org", "80", "80", "0", "0", "", *with_items("74", "6")],
        ["s002", "Ben Carter", "ben@example.org", "72", "90", "18", "0", "yes",
         *with_items("84", "6")],
        ["s003", "Chie Sato", "chie@example.org", "85", "85", "0", "0", "",
         *with_items("79", "6")],
        # the item columns are the counted run's as graded; the correction is in adjustment
        ["s004", "Daiki Ito", "daiki@example.org", "48.2", "50", "10.8", "9", "yes",
         *with_items("44", "6")],
        ["s005", "Emi Mori", "emi@example.org", "61", "61", "0", "0", "",
         *with_items("55", "6")],
        ["s006", "Fumi Abe", "", "", "", "", "", "", *[""] * len(items)],
    ]
    assert cells(exercise_canvas) == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", EXERCISE],
        ["Points Possible", "", "", "", "", "100"],
        ["Aoi Tanaka", "", "s001", "aoi@example.org", "", "80"],
        ["Ben Carter", "", "s002", "ben@example.org", "", "72"],
        ["Chie Sato", "", "s003", "chie@example.org", "", "85"],
        ["Daiki Ito", "", "s004", "daiki@example.org", "", "48.2"],
        ["Emi Mori", "", "s005", "emi@example.org", "", "61"],
        ["Fumi Abe", "", "s006", "", "", ""],
    ]
    # The course total: (2 x final/100 + 1 x quiz/20) / 3, in percent.
    #   s001: (2 x 0.80  + 12/20) / 3 = 2.2 / 3   = 73.33
    #   s002: (2 x 0.72  + 0)     / 3 = 1.44 / 3  = 48
    #   s003: (2 x 0.85  + 18/20) / 3 = 2.6 / 3   = 86.67
    #   s004: (2 x 0.482 + 20/20) / 3 = 1.964 / 3 = 65.47
    #   s005: (2 x 0.61  + 0)     / 3 = 1.22 / 3  = 40.67
    #   s006: 0
    assert cells(plain_book) == [
        ["student_id", "name", "email", EXERCISE, QUIZ, "total"],
        ["s001", "Aoi Tanaka", "aoi@example.org", "80", "12", "73.33"],
        ["s002", "Ben Carter", "ben@example.org", "72", "", "48"],
        ["s003", "Chie Sato", "chie@example.org", "85", "18", "86.67"],
        ["s004", "Daiki Ito", "daiki@example.org", "48.2", "20", "65.47"],
        ["s005", "Emi Mori", "emi@example.org", "61", "", "40.67"],
        ["s006", "Fumi Abe", "", "", "", "0"],
    ]
    assert cells(canvas_book) == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", EXERCISE, QUIZ,
         "Course total"],
        ["Points Possible", "", "", "", "", "100", "20", "100"],
        ["Aoi Tanaka", "", "s001", "aoi@example.org", "", "80", "12", "73.33"],
        ["Ben Carter", "", "s002", "ben@example.org", "", "72", "", "48"],
        ["Chie Sato", "", "s003", "chie@example.org", "", "85", "18", "86.67"],
        ["Daiki Ito", "", "s004", "daiki@example.org", "", "48.2", "20", "65.47"],
        ["Emi Mori", "", "s005", "emi@example.org", "", "61", "", "40.67"],
        ["Fumi Abe", "", "s006", "", "", "", "", "0"],
    ]
    assert gradebook_csv(book, bom=False).startswith("student_id,")
    with pytest.raises(ValueError):
        gradebook_csv(book, "xlsx")
