"""A trained model's fingerprint: what the clean room measured of it, kept to compare models
across students (:mod:`grader.similarity`), never to score.

Two facts, both measured outside the student's process: a hash of the trained values the clean
room froze into the graph it ran (names left out, so renaming the variables does not change it),
and the class it predicted for every image of each plain image set (one byte an image: about
15,000 bytes for the test and held-out sets). Two fingerprints are compared by their error
agreement; which pairs are flagged (:func:`flag_reason`) and the measurements behind its
constants: docs/model-fingerprints.md."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader.data.perturb import source_name
from grader.measurements import HEX_DIGEST


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


def fingerprint_of(measured: Any, labels: Mapping[str, np.ndarray]) -> ModelFingerprint | None:
    """The fingerprint of a validated ``predictions`` measurement (anything with ``weights``
    and ``predictions``): the weights' digest and the predictions on each plain image set
    ``labels`` knows (moved copies are left out: they are drawn anew for every run). None
    when any of it is not what the clean room writes: no 64-hex digest, a plain set missing,
    a list of another length than the set's labels, a prediction that is not an int 0..9."""
    weights = getattr(measured, "weights", None)
    predictions = getattr(measured, "predictions", None)
    if not isinstance(weights, str) or not HEX_DIGEST.fullmatch(weights):
        return None
    if not isinstance(predictions, Mapping):
        return None
    kept: dict[str, bytes] = {}
    for name, truth in labels.items():
        if source_name(name) != name:
            continue
        got = predictions.get(name)
        if not isinstance(got, list) or len(got) != len(truth):
            return None
        if not all(type(p) is int and 0 <= p <= 9 for p in got):
            return None
        kept[name] = np.asarray(got, dtype=np.uint8).tobytes()
    return ModelFingerprint(weights, kept) if kept else None


# --- when a pair is flagged (docs/model-fingerprints.md: the figures behind each number) ------

#: Error agreement at or above which two models are flagged (docs/model-fingerprints.md,
#: "The threshold"). Each run trains on its own order of the images (``[runtime] data_order``),
#: so two honest runs of the same code at the template's fixed seeds share only their initial
#: weights: they agree on 0.57 to 0.745 of their errors (15 pairs, mean 0.647, sd 0.047), more
#: than trainings with other seeds (0.36 to 0.52, 250 pairs). The highest honest pair + 0.15,
#: rounded up to 0.05: 0.745 + 0.15 -> 0.90. A model shared (pasted weights, one training
#: handed in twice) agrees 1.0 or has the same digest.
AGREEMENT_FLAG = 0.90
#: Fewest images either model gets wrong for the agreement to count: on a handful of errors a
#: high agreement is chance (two near-perfect models sharing three hard digits).
MIN_UNION = 50
#: A model below this accuracy (the lower plain image set) is never flagged, by either rule:
#: untrained or barely trained models answer alike (one constant class, the template's own
#: initial weights), whoever wrote them. The exercise's accuracy floor, where credit ends.
MIN_ACCURACY = 0.90
#: The most shared weights digest, when more runs than this share it, is a *common model*
#: (:func:`common_models`): the template fixes its seeds and training is deterministic on one
#: machine, so every student who writes the expected code and keeps those seeds gets the very
#: same weights, and one who writes it a little differently (``tf.nn.bias_add`` for ``+ b``)
#: a model that agrees with it on 0.99 of its errors. A model identical or that close to a
#: common model is never flagged.
COMMON_MODEL = 3


def common_models(fingerprints: Iterable[ModelFingerprint], limit: int = COMMON_MODEL
                  ) -> list[ModelFingerprint]:
    """The template's model as the class's runs show it: the most shared weights digest of
    ``fingerprints`` (one per student: the student's counted run), when more than ``limit``
    share it (ties: each); to pass to :func:`flag_reason`. Only the most shared one, so that a
    ring of copies smaller than the template's own cluster stays flagged. A caller that has the
    reference solution's fingerprint, graded on the same workers, passes it too (the robust
    way: a class may have no digest that many students share)."""
    found: dict[str, ModelFingerprint] = {}
    counts: Counter[str] = Counter()
    for fp in fingerprints:
        counts[fp.weights] += 1
        found.setdefault(fp.weights, fp)
    most = max(counts.values(), default=0)
    return [found[digest] for digest, n in counts.items() if n == most and n > limit]


def fingerprint_accuracy(fp: ModelFingerprint, labels: Mapping[str, np.ndarray]
                         ) -> float | None:
    """The lowest accuracy over the plain image sets ``fp`` and ``labels`` both hold."""
    found = [float(np.mean(fp.labels(name) == truth)) for name, truth in labels.items()
             if name in fp.predictions and len(fp.predictions[name]) == len(truth)]
    return min(found) if found else None


def alike(a: ModelFingerprint, b: ModelFingerprint, labels: Mapping[str, np.ndarray],
          agreement_flag: float = AGREEMENT_FLAG) -> bool:
    """The same weights, or error agreement of at least ``agreement_flag``
    (:data:`AGREEMENT_FLAG`) over at least :data:`MIN_UNION` errors."""
    if a.weights == b.weights:
        return True
    found = error_agreement(a, b, dict(labels))
    return found.union >= MIN_UNION and found.agreement is not None and (
        found.agreement >= agreement_flag)


def flag_reason(a: ModelFingerprint, b: ModelFingerprint, labels: Mapping[str, np.ndarray],
                common: Sequence[ModelFingerprint] = ()) -> str | None:
    """Why the pair is flagged: ``"identical_weights"`` (the same trained values),
    ``"agreement"`` (error agreement of at least :data:`AGREEMENT_FLAG` over at least
    :data:`MIN_UNION` errors), or None. Never when either model is below
    :data:`MIN_ACCURACY`, or is a common model or alike one (``common``: see
    :func:`common_models`). A flag asks an instructor to look; it never changes a score."""
    for fp in (a, b):
        accuracy = fingerprint_accuracy(fp, labels)
        if accuracy is None or accuracy < MIN_ACCURACY:
            return None
        if any(alike(fp, model, labels) for model in common):
            return None
    if a.weights == b.weights:
        return "identical_weights"
    return "agreement" if alike(a, b, labels) else None
