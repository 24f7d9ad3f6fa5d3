"""Comparators: pure functions that judge one item from the student's and the reference's
measurements.

Chosen by the ``kind`` written in the exercise spec (``compare = { kind = "op_output", ... }``),
as CTFd chooses its challenge classes. A comparator never raises on odd student data: it returns
a :class:`Judgement` whose feedback says what is wrong, in Japanese and English.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
class CompareInput:
    item: Item
    exercise: Exercise
    #: What the clean room measured of the student's export (validated).
    measured: dict[str, Any]
    #: What it measured of the reference solution's export on the same inputs, if anything.
    expected: dict[str, Any] | None
    #: The item's cell raised after producing an answer (ename, evalue), else None.
    cell_error: tuple[str, str] | None = None
    #: Host-side facts some comparators need: labels by image set, the printed accuracy.
    labels: Mapping[str, np.ndarray] | None = None
    claimed_accuracy: float | None = None


Comparator = Callable[[CompareInput], Judgement]
COMPARATORS: dict[str, Comparator] = {}


def register(kind: str) -> Callable[[Comparator], Comparator]:
    def decorate(function: Comparator) -> Comparator:
        COMPARATORS[kind] = function
        return function

    return decorate


def get_comparator(kind: str) -> Comparator:
    _load_builtin()
    try:
        return COMPARATORS[kind]
    except KeyError:
        known = ", ".join(sorted(COMPARATORS))
        raise KeyError(f"unknown comparator kind '{kind}' (known: {known})") from None


def _load_builtin() -> None:
    from grader.comparators import accuracy, arrays, graphs, layers  # noqa: F401


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
