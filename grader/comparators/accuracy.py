"""``accuracy``: the trained model's test accuracy, measured from its predictions on the host."""

from __future__ import annotations

import numpy as np

from grader.comparators import CompareInput, Judgement, register
from grader.report import ItemStatus
from grader.spec import Text


def accuracy_fraction(measured: float, threshold: float, floor: float) -> float:
    """Full credit at ``threshold``, none at ``floor`` or below, linear in between."""
    if measured >= threshold:
        return 1.0
    if measured <= floor:
        return 0.0
    return (measured - floor) / (threshold - floor)


@register("accuracy")
def compare_accuracy(given: CompareInput) -> Judgement:
    rule = given.exercise.accuracy
    if rule is None:
        raise ValueError(f"{given.exercise.id}: an accuracy item needs an [accuracy] table")
    labels = given.labels
    if labels is None:
        raise ValueError("the MNIST test labels are needed to measure accuracy")
    predictions = given.probe.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(labels):
        n = len(predictions) if isinstance(predictions, list) else 0
        return Judgement(0.0, ItemStatus.ERROR, [Text(
            ja=f"予測の数が {n} 件で、テスト画像 {len(labels)} 枚と合いません。",
            en=f"Got {n} predictions for {len(labels)} test images.",
        )])
    try:
        preds = np.asarray(predictions, dtype=np.int64)
    except (TypeError, ValueError):
        return Judgement(0.0, ItemStatus.ERROR, [Text(ja="予測を読み取れませんでした。",
                                                      en="The predictions could not be read.")])
    measured = float(np.mean(preds == labels))
    fraction = accuracy_fraction(measured, rule.threshold, rule.floor)
    details: dict = {"measured_accuracy": measured, "threshold": rule.threshold,
                     "floor": rule.floor, "claimed_accuracy": given.claimed_accuracy,
                     "variables_from": given.probe.get("source")}
    feedback: list[Text] = []
    if fraction < 1:
        feedback.append(Text(
            ja=f"テスト精度は {measured:.4f} でした。満点は {rule.threshold:.3f} 以上、"
            f"{rule.floor:.2f} 以下は0点です。",
            en=f"Measured test accuracy {measured:.4f}. Full points from {rule.threshold:.3f}; "
            f"none at {rule.floor:.2f} or below.",
        ))
    claimed = given.claimed_accuracy
    if claimed is not None and abs(claimed - measured) > rule.claimed_tolerance:
        details["claimed_mismatch"] = True
        feedback.append(Text(
            ja=f"ノートブックには精度 {claimed:.3f} と表示されていますが、採点での測定値は "
            f"{measured:.4f} です。",
            en=f"The notebook printed accuracy {claimed:.3f}, but the grader measured "
            f"{measured:.4f}.",
        ))
    status = (ItemStatus.CORRECT if fraction >= 1 else
              ItemStatus.PARTIAL if fraction > 0 else ItemStatus.INCORRECT)
    return Judgement(fraction, status, feedback, details)
