"""``graph``: the model's output tensor: its op, its classes and the dense layer feeding it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.comparators.base import CompareInput, Judgement, register
from grader.messages import bilingual
from grader.report import ItemStatus
from grader.spec import Text


@register("graph")
def compare_graph(given: CompareInput) -> Judgement:
    facts = given.measured
    checks = graph_checks(facts, given.item.compare.options)
    passed = sum(ok for ok, _ in checks)
    feedback = [text for ok, text in checks if not ok]
    fraction = passed / len(checks)
    status = (ItemStatus.CORRECT if passed == len(checks) else
              ItemStatus.PARTIAL if passed else ItemStatus.INCORRECT)
    return Judgement(fraction, status, feedback, {"output_op": facts.get("op"),
                                                  "shape": facts.get("shape") or []})


def graph_checks(facts: Mapping[str, Any], options: Mapping[str, Any]) -> list[tuple[bool, Text]]:
    """Each structural check of a model's graph facts, with the text shown when it fails."""
    op = str(options.get("output_op", "Softmax"))
    classes = int(options.get("classes", 10))
    dense_in = int(options.get("dense_in", 800))
    shape = facts.get("shape") or []
    ops = [o for o in facts.get("ops") or [] if isinstance(o, dict)]
    checks: list[tuple[bool, Text]] = []
    checks.append((facts.get("op") == op, bilingual("graph.not_softmax", op=op,
                                                     actual=facts.get("op"))))
    checks.append((bool(shape) and shape[-1] == classes, bilingual(
        "graph.classes", shape=shape, classes=classes)))
    matmul = any(
        o.get("type") == "MatMul"
        and len(o.get("inputs") or []) == 2
        and (o["inputs"][0] or [None])[-1] == dense_in
        and o["inputs"][1] == [dense_in, classes]
        for o in ops
    )
    checks.append((matmul, bilingual("graph.no_dense", dense_in=dense_in, classes=classes)))
    return checks
