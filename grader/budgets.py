"""Time budgets per cell, derived from how long the reference solution's cells took.

One ``cell_timeout`` for every cell (the exercise's ``[limits]``) must be long enough for the
training cell (minutes), so an endless loop in the first convolution cell held a worker for the
whole of it. ``grader build-reference`` records each code cell's seconds in ``expected.json``
(:func:`grader.reference.write_expected`); each cell of a submission then gets

    budget = min(cell_timeout, max(budget_floor, FACTOR x reference + MARGIN))

where *reference* is the longest reference cell of the **segment** the submission's cell falls
in. The graded cells cut both notebooks into segments: segment *k* runs from just after the
graded cell before item *k*'s cell up to and including it; cells after the last graded cell form
the tail. A cell the student added, moved or split therefore gets the budget of the graded cell
it precedes (training split over two cells before the graded one keeps the training's minutes),
and the ungraded set-up cells of the reference (imports, loading MNIST) count in the segment they
precede. Why these numbers: ``docs/cell-budgets.md``.

Without recorded timings (a reference built before they were kept) every cell gets
``cell_timeout``, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: No cell gets less (the default of the exercise's ``budget_floor``): TensorFlow's first
#: import and a cold cache on a busy machine take tens of seconds in a cell the reference ran
#: in one.
FLOOR = 60.0
#: Multiple of the reference's seconds: two workers on two cores, an older laptop's algorithm.
FACTOR = 3.0
#: Seconds added to every budget, for jitter the multiple does not cover on short cells.
MARGIN = 30.0
#: Segment name of the cells after the last graded cell.
TAIL = "*"


@dataclass(frozen=True)
class CellTiming:
    """One code cell of the reference run: its notebook index, the items it answers (none for
    an ungraded cell) and the seconds it took."""

    index: int
    items: tuple[str, ...]
    seconds: float


def budget_for(reference_seconds: float, ceiling: float, floor: float = FLOOR) -> float:
    """The budget of a cell whose segment took ``reference_seconds`` in the reference, at
    least ``floor`` and capped by the exercise's ``cell_timeout``."""
    return min(ceiling, max(floor, FACTOR * reference_seconds + MARGIN))


def segment_seconds(timings: Sequence[CellTiming]) -> dict[str, float]:
    """Item id (or :data:`TAIL`) -> the longest reference cell in the segment that ends with
    that item's cell."""
    segments: dict[str, float] = {}
    longest = 0.0
    for cell in sorted(timings, key=lambda c: c.index):
        longest = max(longest, cell.seconds)
        for item in cell.items:
            segments[item] = max(segments.get(item, 0.0), longest)
        if cell.items:
            longest = 0.0
    segments[TAIL] = longest
    return segments


def cell_budgets(code_cells: Sequence[int], graded: Mapping[str, int],
                 timings: Sequence[CellTiming] | None, ceiling: float,
                 floor: float = FLOOR) -> dict[int, float]:
    """Notebook cell index -> seconds, for each of a submission's ``code_cells``; ``graded``
    maps item ids to the cell the submission answers them in (located cells only). Every cell
    gets ``ceiling`` when there are no ``timings``."""
    if not timings:
        return {index: ceiling for index in code_cells}
    segments = segment_seconds(timings)
    # Items found in the submission, by the cell that answers them (several items may share
    # one cell: the longest segment counts). An item the submission lacks hands its segment on
    # to the next item it has, in the reference's order (its code is likely there), or the tail.
    ends: dict[int, float] = {}
    pending = 0.0
    for item in (i for c in sorted(timings, key=lambda c: c.index) for i in c.items):
        if item in graded:
            index = graded[item]
            ends[index] = max(ends.get(index, 0.0), segments[item], pending)
            pending = 0.0
        else:
            pending = max(pending, segments[item])
    tail = max(segments[TAIL], pending)
    budgets: dict[int, float] = {}
    for index in code_cells:
        later = [end for end in ends if end >= index]
        seconds = ends[min(later)] if later else tail
        budgets[index] = budget_for(seconds, ceiling, floor)
    return budgets


def read_timings(document: Mapping[str, object]) -> list[CellTiming] | None:
    """The cell timings of an ``expected.json`` document, or ``None`` when it has none (or
    they do not parse: a hand-edited file gives the exercise's ceiling, not a crash)."""
    raw = document.get("cell_seconds")
    if not isinstance(raw, list):
        return None
    timings = []
    for entry in raw:
        if not isinstance(entry, dict):
            return None
        index, items, seconds = entry.get("index"), entry.get("items"), entry.get("seconds")
        if (not isinstance(index, int) or not isinstance(seconds, int | float)
                or not isinstance(items, list) or not all(isinstance(i, str) for i in items)
                or seconds < 0):
            return None
        timings.append(CellTiming(index, tuple(items), float(seconds)))
    return timings or None
