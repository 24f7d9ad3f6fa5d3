"""One student's grade of one exercise under the course's rules, as arithmetic over plain values
(no database): which submission counts, its late penalty, the instructor's adjustments and the
final score. ``service.domain.gradebook`` feeds it from the database for every page, the CSVs
and the API; docs/course-rules.md states the same arithmetic with examples.

1. A submission is **allowed** when its time (when the service acknowledged the upload, never
   when it was graded) is within the student's dates (``Dates.window`` accepts it): a
   submission stored before the dates were moved, and now outside them, is kept and shown but
   never counts. Its **score** is its latest graded run's (a regrade replaces it, lower or
   not); its **value** is ``score * (1 - penalty fraction)`` (``LatePenalty.fraction`` of how
   late it was).
2. **Counts best**: the allowed submission of highest value (ties: the later one; values are
   compared rounded to 9 decimals, so floating point never decides a tie). **Counts
   last**: the latest allowed submission that has a score (one still queued or whose runs all
   failed is passed over until it has one).
3. The counted submission's item scores are **corrected** by the item adjustments in force
   (``set``: the item's score becomes N; ``add``: N is added, the item never below 0);
   ``corrected`` is their sum (``raw`` when there is none).
4. ``penalty = corrected * fraction``; ``subtotal = corrected - penalty``.
5. The total adjustment in force: ``set`` makes the final N; ``add`` makes it
   ``max(0, subtotal + N)``; none leaves it ``subtotal``.
6. The gradebook shows ``raw`` (the counted run's score as graded), ``penalty``,
   ``adjustment = final - (raw - penalty)`` (every correction and adjustment in one figure) and
   ``final``, so that ``raw - penalty + adjustment = final`` always reads true.

A student with no counted submission has ``raw`` None; with no adjustment either, ``final`` is
None (no grade); an adjustment gives them a final counted from 0: a total ``set`` N gives N
(work graded by hand), a total ``add`` N gives ``max(0, N)``, item adjustments their items'
values. There is no ceiling: a bonus may take the final above the exercise's points.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter

from service.domain.course_rules import Counts, Dates, LatePenalty, Window


class AdjustMode(StrEnum):
    ADD = "add"
    SET = "set"
    #: Takes back the adjustment in force on the same target.
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the rules need of one submission: its time and its counted run's score."""

    submission_id: int
    submitted_at: dt.datetime
    #: The latest graded run's score; None while none is graded.
    score: float | None
    run_id: int | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """An adjustment in force: on one item, or on the total (``item_id`` None)."""

    mode: AdjustMode
    points: float
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class Grade:
    """A student's grade of one exercise (see the module's docstring)."""

    counted: Attempt | None
    window: Window | None
    raw: float | None
    penalty: float
    adjustment: float
    final: float | None
    #: The counted submission's penalty share (0 on time).
    fraction: float = 0.0
    #: Allowed submissions, and all submissions.
    allowed: int = 0
    attempts: int = 0

    @property
    def late(self) -> bool:
        return self.window is Window.LATE


def in_force(changes: Iterable[Change | tuple[str | None, AdjustMode, float]]
             ) -> dict[str | None, Change]:
    """The adjustment in force per target (item id, or None for the total), from a student's
    adjustment rows oldest first: the latest row of each target wins, ``remove`` clears it."""
    current: dict[str | None, Change] = {}
    for change in changes:
        if not isinstance(change, Change):
            item_id, mode, points = change
            change = Change(AdjustMode(mode), points, item_id)
        if change.mode is AdjustMode.REMOVE:
            current.pop(change.item_id, None)
        else:
            current[change.item_id] = change
    return current


#: Oldest first; at the same time, the lower submission id first.
_ORDER = attrgetter("submitted_at", "submission_id")


def choose(attempts: Sequence[Attempt], dates: Dates, penalty: LatePenalty, counts: Counts
           ) -> tuple[Attempt | None, int]:
    """The counted submission among ``attempts`` (any order), and how many are allowed."""
    allowed = [a for a in attempts if dates.accepts(a.submitted_at)]
    scored = [a for a in allowed if a.score is not None]
    if not scored:
        return None, len(allowed)
    if counts is Counts.LAST:
        return max(scored, key=_ORDER), len(allowed)

    due = dates.due

    def value(attempt: Attempt) -> tuple[float, dt.datetime, int]:
        """The attempt's value, then its place in time: the highest wins, and of equal values
        the later (time, then id: no two attempts are equal)."""
        if due is None or attempt.submitted_at <= due:  # on time: no penalty to work out
            worth = round(attempt.score or 0.0, 9)
        else:
            fraction = penalty.fraction(dates.late_by(attempt.submitted_at))
            # rounded: 90 at 5%/day x 6 started days is worth 63 exactly, as much as 63 on
            # time, but 90 * (1 - 0.30000000000000004) = 62.99999999999999
            worth = round((attempt.score or 0.0) * (1 - fraction), 9)
        return worth, attempt.submitted_at, attempt.submission_id

    return max(scored, key=value), len(allowed)


def grade(attempts: Sequence[Attempt], dates: Dates, penalty: LatePenalty, counts: Counts,
          changes: Mapping[str | None, Change] | None = None,
          items: Mapping[str, float] | None = None) -> Grade:
    """A student's :class:`Grade` from their submissions of the exercise, their dates, the
    exercise's penalty and rule, the adjustments in force (:func:`in_force`) and the counted
    run's item scores (needed only when an item adjustment is in force)."""
    changes = changes or {}
    counted, allowed = choose(attempts, dates, penalty, counts)
    raw = counted.score if counted else None
    corrected = raw
    item_changes = {k: v for k, v in changes.items() if k is not None}
    if item_changes:
        scores = dict(items or {})
        corrected = raw or 0.0
        for item_id, change in item_changes.items():
            before = scores.get(item_id, 0.0)
            after = change.points if change.mode is AdjustMode.SET else max(
                0.0, before + change.points)
            corrected += after - before
    window = dates.window(counted.submitted_at) if counted else None
    fraction = penalty.fraction(dates.late_by(counted.submitted_at)) if counted else 0.0
    penalty_points = (corrected or 0.0) * fraction
    total = changes.get(None)
    final: float | None
    if total is not None and total.mode is AdjustMode.SET:
        final = total.points
    elif corrected is None:
        final = None if total is None else max(0.0, total.points)
    else:
        final = corrected - penalty_points
        if total is not None:
            final = max(0.0, final + total.points)
    adjustment = 0.0 if final is None else final - ((raw or 0.0) - penalty_points)
    return Grade(counted=counted, window=window, raw=raw, penalty=penalty_points,
                 adjustment=adjustment, final=final, fraction=fraction, allowed=allowed,
                 attempts=len(attempts))


@dataclass(frozen=True)
class CourseTotal:
    """The course total: the weighted mean of each exercise's final share of its points, in
    percent. An exercise with no final counts as 0; an exercise of weight 0 does not count."""

    percent: float | None
    #: Exercise id -> (final, max score, weight) that went into it.
    parts: Mapping[str, tuple[float | None, float, float]] = field(default_factory=dict)


def course_total(parts: Mapping[str, tuple[float | None, float, float]]) -> CourseTotal:
    """``parts``: exercise id -> (final or None, the exercise's max score, its weight)."""
    weights = sum(weight for _, maximum, weight in parts.values() if maximum > 0)
    if weights <= 0:
        return CourseTotal(None, parts)
    share = sum(weight * (final or 0.0) / maximum
                for final, maximum, weight in parts.values() if maximum > 0)
    return CourseTotal(100 * share / weights, parts)
