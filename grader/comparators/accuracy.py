"""``accuracy``: the trained model's accuracy, from the clean room's predictions and the
host's labels.

Its ``prepare`` hook reads, on the host, the labels of the image sets the clean room predicted
(:mod:`grader.data.evaluation`; a moved copy has its source's labels) and the accuracy the
notebook printed (feedback only, never the score)."""

from __future__ import annotations

import re

import nbformat
import numpy as np

from grader.comparators.base import CompareInput, Judgement, Prepared, PrepareInput, register
from grader.comparators.datapath import data_path_problems
from grader.comparators.graphs import graph_checks
from grader.comparators.keras_models import keras_checks
from grader.data.evaluation import evaluation_labels
from grader.data.perturb import source_name
from grader.messages import bilingual
from grader.report import ItemStatus
from grader.spec import Text

#: Counted accuracy this far below the plain images' (the moved copies pulled it down): named.
COLLAPSE_GAP = 0.05


def _structure_problems(given: CompareInput) -> list[Text]:
    """With ``structure = "<item id>"``: the checks of that item's ``graph`` comparator, run on
    the *trained* model the accuracy was measured on, that fail. A table of images dressed as
    a classifier measures well but is not the network the exercise teaches; nor is one whose
    data path (image to ``y``) holds anything else (:mod:`grader.comparators.datapath`),
    judged against the reference's path when it was measured (``expected``)."""
    item_id = given.item.compare.options.get("structure")
    if not item_id:
        return []
    options = given.exercise.item(str(item_id)).compare.options
    if given.exercise.item(str(item_id)).compare.kind == "keras_structure":
        keras_facts = given.measured.get("structure")
        if not isinstance(keras_facts, dict):
            return [bilingual("accuracy.structure_unreadable")]
        return [text for ok, text in keras_checks(keras_facts, options) if not ok]
    facts = given.measured.get("graph")
    if not isinstance(facts, dict):
        return [bilingual("accuracy.structure_unreadable")]
    return [*data_path_problems(facts, given.expected),
            *(text for ok, text in graph_checks(facts, options) if not ok)]


def accuracy_fraction(measured: float, threshold: float, floor: float) -> float:
    """Full credit at ``threshold``, none at ``floor`` or below, linear in between."""
    if measured >= threshold:
        return 1.0
    if measured <= floor:
        return 0.0
    return (measured - floor) / (threshold - floor)


def counted_accuracy(accuracies: dict[str, float], moved_error_ratio: float) -> float:
    """The figure that is scored: the lowest accuracy on the plain image sets, lowered further
    when the moved copies (:mod:`grader.data.perturb`) get more than ``moved_error_ratio``
    times that error wrong, as a table of exact pixels does and a CNN, trained fully or not,
    does not: then the plain accuracy their error implies, ``1 - (1 - moved) / ratio``."""
    plain = [a for name, a in accuracies.items() if source_name(name) == name]
    moved = [a for name, a in accuracies.items() if source_name(name) != name]
    counted = min(plain) if plain else min(moved, default=0.0)
    if moved:
        counted = min(counted, 1.0 - (1.0 - min(moved)) / moved_error_ratio)
    return counted


#: The image set the student's sandbox never had (the private leaderboard's).
HELD_OUT = "holdout"


def public_accuracy(details: dict) -> tuple[float, float] | None:
    """The accuracy an ``accuracy`` item would count on the public image sets alone (the
    held-out set and its moved copy left out) and the credit it would earn, from the item's
    ``details`` as the report keeps them: the provisional figure, like a public leaderboard's,
    shown while the held-out one is withheld. A wrong network (``structure_ok`` False) earns
    nothing. None when the details hold no public figure to count."""
    accuracies = details.get("accuracies")
    if not isinstance(accuracies, dict):
        return None
    public = {name: float(value) for name, value in accuracies.items()
              if source_name(str(name)) != HELD_OUT and isinstance(value, int | float)}
    try:
        ratio = float(details["moved_error_ratio"])
        threshold, floor = float(details["threshold"]), float(details["floor"])
    except (KeyError, TypeError, ValueError):
        return None
    if not public or ratio <= 0:
        return None
    measured = counted_accuracy(public, ratio)
    if details.get("structure_ok") is False:
        return measured, 0.0
    return measured, accuracy_fraction(measured, threshold, floor)


def claimed_accuracy(
    executed: nbformat.NotebookNode | None, cell_index: int | None, pattern: str
) -> float | None:
    """The last accuracy the notebook printed in the item's cell (never used for the score)."""
    if executed is None or cell_index is None or cell_index >= len(executed.cells):
        return None
    return _printed_accuracy(executed.cells[cell_index], pattern)


def claimed_anywhere(executed: nbformat.NotebookNode | None, pattern: str
                     ) -> tuple[float, int] | None:
    """The last accuracy the notebook printed in any code cell, and that cell's index: where
    the item's cell is missing, the figure is reported (never scored) with where it came from."""
    if executed is None:
        return None
    for index in range(len(executed.cells) - 1, -1, -1):
        cell = executed.cells[index]
        if cell.get("cell_type") == "code":
            value = _printed_accuracy(cell, pattern)
            if value is not None:
                return value, index
    return None


def _printed_accuracy(cell: nbformat.NotebookNode, pattern: str) -> float | None:
    text = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            text.append(output.get("text", ""))
        elif "data" in output:
            text.append(str(output["data"].get("text/plain", "")))
    matches = re.findall(pattern, "".join(text))
    if not matches:
        return None
    last = matches[-1]
    try:
        value = float(last if isinstance(last, str) else last[0])
    except ValueError:
        return None
    return value / 100 if 1 < value <= 100 else value


def prepare_accuracy(run: PrepareInput) -> Prepared:
    """The labels (by image set) and, when the exercise has an ``[accuracy]`` table, the
    accuracy printed in the item's cell, or in any cell when that cell is missing; and what to
    say when no trained model is measured (:func:`unjudged_feedback`)."""
    rule = run.exercise.accuracy
    labels = evaluation_labels(run.config.data_dir)
    if rule is None:
        return Prepared(labels=labels)
    if run.cell_index is not None:
        claimed = claimed_accuracy(run.executed, run.cell_index, rule.claimed_pattern)
        where = run.cell_index if claimed is not None else None
    else:
        found = claimed_anywhere(run.executed, rule.claimed_pattern)
        claimed, where = found if found is not None else (None, None)
    return Prepared(labels=labels, claimed_accuracy=claimed, claimed_cell=where,
                    unjudged=unjudged_feedback(run, claimed, where))


def unjudged_feedback(run: PrepareInput, claimed: float | None, where: int | None
                      ) -> tuple[Text, ...]:
    """What the feedback says when no trained model could be measured: that the training cell
    is not there (when it is not), and the figure the notebook printed, with its cell."""
    texts = []
    if run.cell_index is None:
        contains = ", ".join(f"`{text}`" for text in run.item.cell.contains) or "?"
        texts.append(bilingual("accuracy.no_training_cell", contains=contains))
    if claimed is not None and where is not None:
        texts.append(bilingual("accuracy.printed_unbacked", claimed=claimed, cell=where + 1))
    return tuple(texts)


@register("accuracy", prepare=prepare_accuracy)
def compare_accuracy(given: CompareInput) -> Judgement:
    """Accuracy on every image set the clean room measured (the test images, the held-out
    ones the student's sandbox never had, and moved copies of both); the lowest plain one
    counts, unless the moved copies fall further below it than an honest CNN's ever do
    (:func:`counted_accuracy`)."""
    rule = given.exercise.accuracy
    if rule is None:
        raise ValueError(f"{given.exercise.id}: an accuracy item needs an [accuracy] table")
    labels = given.labels
    if not labels:
        raise ValueError("labels are needed to measure accuracy")
    predictions = given.measured.get("predictions")
    if not isinstance(predictions, dict):
        predictions = {}
    accuracies: dict[str, float] = {}
    for name, truth in labels.items():
        got = predictions.get(name)
        if not isinstance(got, list) or len(got) != len(truth):
            n = len(got) if isinstance(got, list) else 0
            return Judgement(0.0, ItemStatus.ERROR, [bilingual(
                "accuracy.prediction_count", n=n, images=len(truth), name=name)])
        accuracies[name] = float(np.mean(np.asarray(got, dtype=np.int64) == truth))
    measured = counted_accuracy(accuracies, rule.moved_error_ratio)
    fraction = accuracy_fraction(measured, rule.threshold, rule.floor)
    details: dict = {"measured_accuracy": measured, "threshold": rule.threshold,
                     "floor": rule.floor, "claimed_accuracy": given.claimed_accuracy,
                     "accuracies": accuracies, "moved_error_ratio": rule.moved_error_ratio,
                     "parameters": given.measured.get("parameters")}
    feedback: list[Text] = []
    structure = _structure_problems(given)
    if structure:
        fraction = 0.0
        details["structure_ok"] = False
        feedback += [bilingual("accuracy.wrong_network"), *structure]
    elif fraction < 1:
        feedback.append(bilingual("accuracy.partial", measured=measured,
                                  threshold=rule.threshold, floor=rule.floor))
    test, held_out = accuracies.get("test"), accuracies.get("holdout")
    if test is not None and held_out is not None and test - held_out > 0.05:
        details["memorised"] = True
        feedback.append(bilingual("accuracy.memorised", test=test, held_out=held_out))
    plain = min((a for n, a in accuracies.items() if source_name(n) == n), default=measured)
    moved = min((a for n, a in accuracies.items() if source_name(n) != n), default=None)
    if moved is not None and plain - measured > COLLAPSE_GAP:
        details["collapsed"] = True
        feedback.append(bilingual("accuracy.collapsed", plain=plain, moved=moved))
    claimed = given.claimed_accuracy
    if claimed is not None and abs(claimed - measured) > rule.claimed_tolerance:
        details["claimed_mismatch"] = True
        feedback.append(bilingual("accuracy.claimed_mismatch", claimed=claimed,
                                  measured=measured))
    status = (ItemStatus.CORRECT if fraction >= 1 else
              ItemStatus.PARTIAL if fraction > 0 else ItemStatus.INCORRECT)
    return Judgement(fraction, status, feedback, details)
