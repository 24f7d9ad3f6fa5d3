"""A trained model's fingerprint: what the clean room measured of it, kept to compare models
across students (:mod:`grader.similarity`), never to score.

Two facts, both measured outside the student's process: a hash of the trained values the clean
room froze into the graph it ran (names left out, so renaming the variables does not change it),
and the class it predicted for every image of each plain image set (one byte an image: about
15,000 bytes for the test and held-out sets)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelFingerprint:
    #: blake2b-256 (hex) of the trained values, in the canonical order the clean room gives them.
    weights: str
    #: Image set name (``test``, ``holdout``) -> the predicted class of each image, one uint8 each.
    predictions: dict[str, bytes]

    def labels(self, image_set: str) -> np.ndarray:
        """The predictions on ``image_set`` as a uint8 array (a view of the bytes)."""
        return np.frombuffer(self.predictions[image_set], dtype=np.uint8)


@dataclass(frozen=True)
class ErrorAgreement:
    """How two models err: over the images either gets wrong (``union``), on how many they
    predict the same (wrong) class (``same``). Independent trainings err on different images;
    one model shared errs on the same ones, the same way."""

    same: int
    union: int

    @property
    def agreement(self) -> float | None:
        """``same / union``; None when neither model errs (nothing to compare on)."""
        return self.same / self.union if self.union else None


def error_agreement(a: ModelFingerprint, b: ModelFingerprint,
                    labels: dict[str, np.ndarray]) -> ErrorAgreement:
    """The :class:`ErrorAgreement` of two fingerprints over the image sets both hold and
    ``labels`` knows (one pair; :mod:`grader.similarity` computes all pairs at once)."""
    same = union = 0
    for name, truth in labels.items():
        if name not in a.predictions or name not in b.predictions:
            continue
        pa, pb = a.labels(name), b.labels(name)
        if len(pa) != len(truth) or len(pb) != len(truth):
            continue
        wrong = (pa != truth) | (pb != truth)
        union += int(wrong.sum())
        same += int((wrong & (pa == pb)).sum())
    return ErrorAgreement(same, union)
