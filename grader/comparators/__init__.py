"""Comparators: pure functions that judge one item from the student's and the reference's
measurements.

Chosen by the ``kind`` written in the exercise spec (``compare = { kind = "op_output", ... }``),
as CTFd chooses its challenge classes. A comparator never raises on odd student data: it returns
a :class:`Judgement` whose feedback says what is wrong, in Japanese and English.
"""

from __future__ import annotations

from collections.abc import Mapping

import nbformat

from grader.comparators import accuracy, arrays, functions, graphs, keras_models, layers
from grader.comparators.base import (
    COMPARATORS,
    PREPARERS,
    Comparator,
    CompareInput,
    Judgement,
    Prepare,
    Prepared,
    PrepareInput,
    as_array,
    register,
    shape_text,
)
from grader.config import GraderConfig
from grader.locate import Located
from grader.spec import Exercise

#: The built-in comparators, registered by importing them.
BUILTIN = (accuracy, arrays, functions, graphs, keras_models, layers)

__all__ = [
    "COMPARATORS",
    "PREPARERS",
    "Comparator",
    "CompareInput",
    "Judgement",
    "Prepare",
    "PrepareInput",
    "Prepared",
    "as_array",
    "get_comparator",
    "prepare_inputs",
    "register",
    "shape_text",
]


def get_comparator(kind: str) -> Comparator:
    try:
        return COMPARATORS[kind]
    except KeyError:
        known = ", ".join(sorted(COMPARATORS))
        raise KeyError(f"unknown comparator kind '{kind}' (known: {known})") from None


def prepare_inputs(exercise: Exercise, config: GraderConfig,
                   executed: nbformat.NotebookNode | None, located: Mapping[str, Located | None]) -> dict[str, Prepared]:
    """Item id -> the host-side inputs its comparator asked for (``Prepared()`` when none)."""
    prepared = {}
    for item in exercise.items:
        prepare = PREPARERS.get(item.compare.kind)
        if prepare is None:
            prepared[item.id] = Prepared()
            continue
        where = located.get(item.id)
        prepared[item.id] = prepare(PrepareInput(exercise, item, config, executed,
                                             where.index if where else None))
    return prepared
