"""``graph``: the model's output tensor: its op, its classes and the dense layer feeding it;
and the path the image takes to it (:mod:`grader.comparators.datapath`): a model that is not
the network asked for on that path earns nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.comparators.base import CompareInput, Judgement, register
from grader.comparators.datapath import data_path_problems, dense_logits_ok, path_facts, path_kinds
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
    path = path_facts(facts)
    details = {"output_op": facts.get("op"), "shape": facts.get("shape") or [],
               "data_path_kinds": sorted(path_kinds(path)) if path is not None else []}
    problems = data_path_problems(facts, given.expected)
    details["data_path_ok"] = not problems
    if problems:
        return Judgement(0.0, ItemStatus.INCORRECT,
                         [bilingual("datapath.wrong_network"), *problems, *feedback], details)
    return Judgement(fraction, status, feedback, details)


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
        # h's width may be unknown statically (dropout with a keep_prob of unknown shape);
        # W's [dense_in, classes] makes it dense_in whenever the product runs
        and (o["inputs"][0] or [None])[-1] in (dense_in, None)
        and o["inputs"][1] == [dense_in, classes]
        for o in ops
    ) and dense_logits_ok(facts, dense_in, classes)
    checks.append((matmul, bilingual("graph.no_dense", dense_in=dense_in, classes=classes)))
    return checks
