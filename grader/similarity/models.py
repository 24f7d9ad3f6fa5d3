"""Every pair of a class's trained models compared by how they err (docs/model-fingerprints.md).

Independent trainings of the same network reach the same accuracy but err on partly different
images, and pick different wrong classes there; a model passed from one student to another errs
on the same images the same way. For each pair, over the images either model gets wrong
(``union``), ``same`` counts those both put in the same wrong class, and ``agreement`` is
``same / union`` — exactly :func:`grader.fingerprints.error_agreement` for that pair, computed
for all pairs at once with matrix products.

A pair is flagged by :func:`grader.fingerprints.flag_reason`'s rule, for all pairs at once:
identical trained values, or an agreement of at least :data:`~grader.fingerprints.AGREEMENT_FLAG`
over at least :data:`~grader.fingerprints.MIN_UNION` errors; never when a model is under
:data:`~grader.fingerprints.MIN_ACCURACY` (untrained models that predict one class everywhere
agree on everything, and say nothing) or is a common model or alike one (the template's seeds
train everyone's expected code to one model: :func:`~grader.fingerprints.common_models`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grader.fingerprints import (
    AGREEMENT_FLAG,
    MIN_ACCURACY,
    MIN_UNION,
    ModelFingerprint,
    alike,
    common_models,
)

#: Rows (models) of the error matrices multiplied at once.
BLOCK_ROWS = 512


@dataclass(frozen=True, slots=True)
class ModelPair:
    a: str
    b: str
    #: ``same / union``; None when neither model errs on any image both were measured on.
    agreement: float | None
    same: int
    union: int
    identical_weights: bool
    flagged: bool


def compare_models(fingerprints: Mapping[str, ModelFingerprint],
                   labels: Mapping[str, np.ndarray], *,
                   common: Sequence[ModelFingerprint] | None = None,
                   min_accuracy: float = MIN_ACCURACY,
                   agreement_flag: float = AGREEMENT_FLAG) -> list[ModelPair]:
    """Every pair of ``fingerprints`` (keyed by student), flagged first, then by agreement,
    highest first. ``labels``: the true class of each image, per image set. ``common``: the
    common models (default: :func:`~grader.fingerprints.common_models` of ``fingerprints``;
    a caller holding the reference's fingerprint graded on the same workers adds it)."""
    keys = list(fingerprints)
    n = len(keys)
    if n < 2:
        return []
    same = np.zeros((n, n), dtype=np.int64)
    union = np.zeros((n, n), dtype=np.int64)
    lowest = np.full(n, np.inf)  # each model's lowest accuracy over the sets it holds
    for name, truth in labels.items():
        truth = np.asarray(truth, dtype=np.uint8)
        has = np.array([_holds(fingerprints[k], name, len(truth)) for k in keys])
        if not has.any():
            continue
        rows = np.flatnonzero(has)
        predictions = np.stack([fingerprints[keys[r]].labels(name) for r in rows])
        set_same, set_union, wrong = _set_counts(predictions, truth)
        same[np.ix_(rows, rows)] += set_same
        union[np.ix_(rows, rows)] += set_union
        lowest[rows] = np.minimum(lowest[rows], 1 - wrong / len(truth))

    shared = common_models(fingerprints.values()) if common is None else list(common)
    exempt = np.array([any(alike(fingerprints[k], model, labels, agreement_flag)
                           for model in shared) for k in keys], dtype=bool)
    accurate = np.isfinite(lowest) & (lowest >= min_accuracy) & ~exempt
    weights = [fingerprints[k].weights for k in keys]
    pairs: list[ModelPair] = []
    for i in range(n):
        for j in range(i + 1, n):
            u, s = int(union[i, j]), int(same[i, j])
            agreement = s / u if u else None
            identical = bool(weights[i]) and weights[i] == weights[j]
            flagged = bool(accurate[i] and accurate[j]) and (identical or (
                u >= MIN_UNION and agreement is not None and agreement >= agreement_flag))
            pairs.append(ModelPair(keys[i], keys[j], agreement, s, u,
                                   identical, flagged))
    pairs.sort(key=lambda p: (not p.flagged, -(p.agreement if p.agreement is not None else -1.0),
                              p.a, p.b))
    return pairs


def _holds(fingerprint: ModelFingerprint, name: str, length: int) -> bool:
    return len(fingerprint.predictions.get(name, b"")) == length


def _set_counts(predictions: np.ndarray,
                truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For models' ``predictions`` (models x images) on one image set: the pairs' ``same`` and
    ``union`` counts, and each model's error count."""
    wrong = predictions != truth[None, :]
    # only images some model gets wrong matter; (image, wrong class) columns for ``same``
    erring = np.flatnonzero(wrong.any(axis=0))
    wrong = wrong[:, erring]
    predicted = predictions[:, erring].astype(np.int64)
    cell = np.flatnonzero(wrong.ravel())
    model_of, image_of = np.divmod(cell, len(erring)) if len(erring) else (cell, cell)
    classes, column = np.unique(image_of * 256 + predicted.ravel()[cell], return_inverse=True)
    one_hot = np.zeros((len(predictions), len(classes)), dtype=np.float32)
    one_hot[model_of, column] = 1.0
    as_float = wrong.astype(np.float32)
    count = as_float.sum(axis=1).astype(np.int64)
    n = len(predictions)
    both = np.zeros((n, n), dtype=np.int64)
    same = np.zeros((n, n), dtype=np.int64)
    for lo in range(0, n, BLOCK_ROWS):
        both[lo:lo + BLOCK_ROWS] = np.rint(as_float[lo:lo + BLOCK_ROWS] @ as_float.T)
        same[lo:lo + BLOCK_ROWS] = np.rint(one_hot[lo:lo + BLOCK_ROWS] @ one_hot.T)
    union = count[:, None] + count[None, :] - both
    return same, union, count
