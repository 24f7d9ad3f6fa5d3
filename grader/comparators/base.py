"""What every comparator shares: its input, its verdict, the registry, and the hook that
prepares host-side inputs.

Kept apart from the package's ``__init__`` (which loads the built-in comparators) so that a
comparator module imports this and nothing imports it back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nbformat
import numpy as np

from grader.config import GraderConfig
from grader.report import ItemStatus
from grader.spec import Exercise, Item, Text


@dataclass
class Judgement:
    #: Share of the item's points earned, 0 to 1.
    fraction: float
    status: ItemStatus
    feedback: list[Text] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """Host-side inputs a comparator's ``prepare`` hook made for one item (never seen by a
    sandbox): labels by image set, the accuracy the notebook printed. Empty by default."""

    labels: Mapping[str, np.ndarray] | None = None
    claimed_accuracy: float | None = None
    #: The index of the cell that printed ``claimed_accuracy``.
    claimed_cell: int | None = None
    #: Feedback for when the comparator cannot judge the item (its cell missing, nothing
    #: measured): what was found instead (the accuracy printed with no trained model).
    unjudged: tuple[Text, ...] = ()


@dataclass(frozen=True)
class PrepareInput:
    """What a ``prepare`` hook may read of the run: the host's own configuration and the
    executed notebook (outputs capped), with the index of the item's cell in it."""

    exercise: Exercise
    item: Item
    config: GraderConfig
    executed: nbformat.NotebookNode | None
    cell_index: int | None


@dataclass(frozen=True)
class CompareInput:
    item: Item
    exercise: Exercise
    #: What the clean room measured of the student's export (validated).
    measured: dict[str, Any]
    #: What it measured of the reference solution's export on the same inputs, if anything.
    expected: dict[str, Any] | None
    #: The item's cell raised after producing an answer (ename, evalue), else None.
    cell_error: tuple[str, str] | None = None
    #: Host-side facts some comparators need (their ``prepare`` hook made them, see
    #: :class:`Prepared`): labels by image set, the printed accuracy.
    labels: Mapping[str, np.ndarray] | None = None
    claimed_accuracy: float | None = None


Comparator = Callable[[CompareInput], Judgement]
#: Builds a comparator's host-side inputs from the run; kinds without one get ``Prepared()``.
Prepare = Callable[[PrepareInput], Prepared]
COMPARATORS: dict[str, Comparator] = {}
PREPARERS: dict[str, Prepare] = {}


def register(kind: str, *, prepare: Prepare | None = None) -> Callable[[Comparator], Comparator]:
    """Register a comparator for ``kind``; ``prepare``, when the comparator needs host-side
    inputs (labels...), is run once per item before scoring so that scoring stays generic."""

    def decorate(function: Comparator) -> Comparator:
        COMPARATORS[kind] = function
        if prepare is not None:
            PREPARERS[kind] = prepare
        return function

    return decorate


def as_array(payload: Any) -> np.ndarray | None:
    """An array from a measurement's ``{"shape", "values"}``; ``None`` when malformed."""
    if not isinstance(payload, dict):
        return None
    shape, values = payload.get("shape"), payload.get("values")
    if not isinstance(shape, list) or not isinstance(values, list) or payload.get("truncated"):
        return None
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        return None
    try:
        array = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        return array.reshape(shape)
    except (TypeError, ValueError):
        return None


def shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"
