"""From measurements to item scores: outside every sandbox, on validated data.

For each item, in order, the first fact that settles it:

1. no cell found, or the run stopped before the cell: missing / not reached;
2. the cell's source is too large for the host to read (:mod:`grader.sourcecheck`'s limits),
   or does not parse (read on the host): error, whatever the kernel said;
3. no usable export (none, malformed, or no tensor at all): error;
4. the clean room refused or failed to measure it (an op off the allow-list, a crash...):
   error, with the reason;
5. otherwise the comparator for the item's kind judges the student's measurement against the
   reference's (both taken in the same clean room, on the same inputs).

A comparator that trips over an odd value makes its item an error, never a failed run. When
1 to 4 settle an item, what its comparator's ``prepare`` hook found instead is said too (the
accuracy item: that no cell trains the network, the figure the notebook printed and in which
cell); it never scores.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader.clean_room import Measured
from grader.comparators import CompareInput, Prepared, get_comparator
from grader.exports import Export, GraphExport, KerasExport, ValueExport
from grader.fingerprints import ModelFingerprint, fingerprint_of
from grader.function_room import FunctionMeasured
from grader.locate import Located
from grader.measurements import MeasurementFailure
from grader.messages import N_, bilingual
from grader.report import ItemResult, ItemStatus
from grader.results import RunnerResult
from grader.sourcecheck import SourceFacts
from grader.spec import Exercise, Item, Text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evidence:
    """Everything scoring reads of one run."""

    located: Mapping[str, Located | None]
    runner: RunnerResult | None
    sources: Mapping[str, SourceFacts]
    exports: Mapping[str, GraphExport | KerasExport | ValueExport | str]
    measured: Measured | None
    #: Item id -> the host-side inputs its comparator's ``prepare`` hook made (labels...).
    prepared: Mapping[str, Prepared] = field(default_factory=dict)
    stop_reason: Text | None = None
    #: Function items: item id -> what the function rooms measured (no kernel involved).
    functions: Mapping[str, FunctionMeasured] = field(default_factory=dict)


def score_items(exercise: Exercise, evidence: Evidence) -> list[ItemResult]:
    """One :class:`ItemResult` per item; items the run never reached get 0 with its reason."""
    return [_score_item(exercise, item, evidence) for item in exercise.items]


def model_fingerprint(exercise: Exercise, evidence: Evidence) -> ModelFingerprint | None:
    """The trained model's fingerprint (:mod:`grader.fingerprints`), from the first
    ``accuracy`` item's measurement and its labels; None when the clean room refused or
    failed to measure the model, or its output does not hold one. Never part of a score."""
    measured = evidence.measured
    for item in exercise.items:
        if item.compare.kind != "accuracy" or measured is None:
            continue
        mine = measured.get(item.id, "student")
        labels = (evidence.prepared.get(item.id) or Prepared()).labels
        if mine is None or isinstance(mine, MeasurementFailure) or not labels:
            return None
        return fingerprint_of(mine, labels)
    return None


def _add_unjudged(out: ItemResult, prepared: Prepared | None) -> None:
    """What was found instead of an answer the comparator could judge (for the accuracy: that
    the training cell is not there, the figure the notebook printed and in which cell), from
    the comparator's ``prepare`` hook; feedback and details only, never the score."""
    if prepared is None:
        return
    if prepared.unjudged:
        if out.status is ItemStatus.MISSING:  # says more than "the cell was not found"
            out.feedback = list(prepared.unjudged)
        else:
            out.feedback.extend(prepared.unjudged)
    if prepared.claimed_accuracy is not None:
        out.details["claimed_accuracy"] = prepared.claimed_accuracy
        out.details["claimed_cell_index"] = prepared.claimed_cell


def _score_item(exercise: Exercise, item: Item, evidence: Evidence) -> ItemResult:
    out = ItemResult(item.id, item.title, 0.0, item.points, ItemStatus.MISSING)
    found = evidence.prepared.get(item.id)
    where = evidence.located.get(item.id)
    if where is None:
        out.feedback.append(bilingual("scoring.cell_not_found"))
        _add_unjudged(out, found)
        return out
    out.cell_index = where.index
    if item.extract.export == "function":
        return _score_function(out, exercise, item, evidence, found)
    runner = evidence.runner
    cell = runner.cell(where.index) if runner is not None else None
    if cell is None or cell.status in ("timeout", "kernel_died"):
        out.status = ItemStatus.NOT_REACHED
        out.feedback.append(evidence.stop_reason or bilingual("scoring.cell_not_run"))
        _add_unjudged(out, found)
        return out
    cell_error = (cell.ename or "", cell.evalue or "") if cell.status == "error" else None
    facts = evidence.sources.get(item.id)
    if facts is not None and facts.refused is not None:
        return _error(out, item, found, facts.refused)
    if facts is not None and facts.syntax_error is not None:
        return _error(out, item, found, bilingual("scoring.syntax_error", error=facts.syntax_error))
    export = evidence.exports.get(item.id)
    if export is None or isinstance(export, str):
        return _error(out, item, found, _export_text(item, cell_error, export))
    if isinstance(export, ValueExport):
        name = item.extract.args.get("expr", "")
        key = (N_("scoring.not_a_keras_model") if item.extract.export == "keras_model"
               else N_("scoring.not_a_tensor"))
        return _error(out, item, found, bilingual(key, name=name, type=export.type))
    measured = evidence.measured
    mine = measured.get(item.id, "student") if measured is not None else None
    if mine is None or isinstance(mine, MeasurementFailure):
        return _error(out, item, found, _failure_text(mine))
    theirs = measured.get(item.id, "reference") if measured is not None else None
    if isinstance(theirs, MeasurementFailure):
        return _error(out, item, found,
                      bilingual("scoring.reference_unmeasured", detail=theirs.detail))
    view, expected = _comparator_views(item, mine, theirs, export, evidence, measured)
    prepared = evidence.prepared.get(item.id) or Prepared()
    return _judge(out, item, found, CompareInput(
        item=item, exercise=exercise, measured=view, expected=expected,
        cell_error=cell_error, labels=prepared.labels,
        claimed_accuracy=prepared.claimed_accuracy,
    ))


def _judge(out: ItemResult, item: Item, found: Prepared | None, given: CompareInput,
           details: dict[str, Any] | None = None) -> ItemResult:
    """``out`` scored by the item's comparator on ``given`` (with ``details`` added)."""
    try:
        judgement = get_comparator(item.compare.kind)(given)
    except Exception:  # a comparator must never turn an odd answer into a failed run
        logger.exception("comparator %s failed on item %s", item.compare.kind, item.id)
        return _error(out, item, found, bilingual("scoring.comparator_failed"))
    out.score = round(item.points * max(0.0, min(1.0, float(judgement.fraction))), 4)
    out.status = judgement.status
    out.feedback.extend(judgement.feedback)
    out.details.update(judgement.details)
    out.details.update(details or {})
    if judgement.fraction < 1:
        _add_hint(out, item)
    return out


def _score_function(out: ItemResult, exercise: Exercise, item: Item, evidence: Evidence,
                    found: Prepared | None) -> ItemResult:
    """A function item: settled by the cell's source and the function rooms, whatever the
    kernel did (its cell need not have run: the function is taken from the source)."""
    facts = evidence.sources.get(item.id)
    if facts is not None and facts.refused is not None:
        return _error(out, item, found, facts.refused)
    measured = evidence.functions.get(item.id)
    if measured is None:
        return _error(out, item, found, bilingual("scoring.unmeasured"))
    if measured.student_failure is not None:
        return _error(out, item, found, measured.student_failure.text)
    if measured.reference_failure is not None or measured.reference is None:
        return _error(out, item, found, bilingual(
            "scoring.reference_unmeasured",
            detail=measured.reference_failure or bilingual("scoring.unmeasured")))
    return _judge(out, item, found, CompareInput(
        item=item, exercise=exercise,
        measured={"cases": measured.cases, "student": measured.student},
        expected={"reference": measured.reference}),
        details={"seconds": round(measured.seconds, 3)})


def _comparator_views(item: Item, mine: Any, theirs: Any, export: Export,
                      evidence: Evidence, measured: Measured | None
                      ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The measurements as the comparators read them (plain dicts)."""
    view = mine.model_dump()
    expected = theirs.model_dump() if theirs is not None else None
    if item.compare.kind == "op_output":
        view = {"output": view["outputs"][0], "fresh_outputs": view["outputs"][1:],
                "fed": view["fed"], "fresh": _assigned(item, evidence)}
        if expected is not None:
            expected = {"output": expected["outputs"][0],
                        "fresh_outputs": expected["outputs"][1:]}
        context = _reference_context(measured, item)
        view["inputs"] = context
        if expected is not None:
            expected["inputs"] = context
    return view, expected


def _assigned(item: Item, evidence: Evidence) -> bool:
    """The answer comes from this cell: its source binds the name (measured on the host) and
    the kernel saw the name bound anew (its word, feedback only)."""
    name = item.extract.fresh
    if not name:
        return True
    facts = evidence.sources.get(item.id)
    runner_says = evidence.runner.fresh.get(item.id, True) if evidence.runner else True
    return bool(facts is not None and name in facts.bound and runner_says)


def _reference_context(measured: Measured | None, item: Item) -> dict[str, Any]:
    """The exercise's image and filter as the grader fed them (for explaining a mistake)."""
    images = (measured.inputs.get(item.id) or {}).get("images") if measured else None
    context: dict[str, Any] = {}
    if images:
        image = np.asarray(images[0], dtype=np.float64)
        context["sample_image"] = {"shape": list(image.shape), "values": image.ravel().tolist()}
    for name, value in (measured.inputs.get(item.id) or {}).items() if measured else ():
        if name != "images":
            array = np.asarray(value, dtype=np.float64)
            context[name] = {"shape": list(array.shape), "values": array.ravel().tolist()}
    return context


def _error(out: ItemResult, item: Item, found: Prepared | None, text: Text) -> ItemResult:
    out.status = ItemStatus.ERROR
    out.feedback.append(text)
    _add_unjudged(out, found)
    _add_hint(out, item)
    return out


FAILURES = {
    "op_not_allowed": N_("scoring.failure.op_not_allowed"),
    "oversized_constant": N_("scoring.failure.oversized_constant"),
    "too_many_parameters": N_("scoring.failure.too_many_parameters"),
    "untrained": N_("scoring.failure.untrained"),
    "no_input": N_("scoring.failure.no_input"),
    "budget": N_("scoring.failure.budget"),
    "wrong_shape": N_("scoring.failure.wrong_shape"),
    "keras_layer_not_allowed": N_("scoring.failure.keras_layer_not_allowed"),
    "keras_custom_object": N_("scoring.failure.keras_custom_object"),
    "keras_not_sequential": N_("scoring.failure.keras_not_sequential"),
    "keras_no_input": N_("scoring.failure.keras_no_input"),
    "keras_bad_config": N_("scoring.failure.keras_bad_config"),
    "keras_wrong_weights": N_("scoring.failure.keras_wrong_weights"),
}


def _failure_text(failure: MeasurementFailure | None) -> Text:
    if failure is None:
        return bilingual("scoring.unmeasured")
    ops = ", ".join(failure.ops) or "?"
    if failure.code in FAILURES:
        return bilingual(FAILURES[failure.code], ops=ops, detail=failure.detail)
    return bilingual("scoring.unmeasured_because", code=failure.code, detail=failure.detail)


def _export_text(item: Item, cell_error: tuple[str, str] | None, problem: str | None) -> Text:
    if cell_error is not None:
        ename, evalue = cell_error
        return bilingual("cell.raised", ename=ename, evalue=evalue)
    if problem and problem.startswith("NameError"):
        return bilingual("scoring.name_error", problem=problem)
    return bilingual("scoring.unreadable",
                     problem=problem or bilingual("scoring.nothing_exported"))


def _add_hint(out: ItemResult, item: Item) -> None:
    if item.hint is not None:
        out.feedback.append(bilingual("scoring.hint", hint=item.hint))

