"""The service's one seam onto ``grader.similarity``: a notebook's code, both comparisons, and
their two lists merged into one, ranked. Plain values in, plain values out: no database, no
storage, no request (``service.domain.similarity_check`` feeds it, ``service.queue.similarity``
carries it). Every call into ``grader.similarity`` is here and nowhere else.

**Merging.** The code comparison scores every pair (``CodePair``), the model comparison every
pair of students who both have a fingerprint (``ModelPair``). A pair is listed when either
signal reports it: its code is flagged or at least :data:`CODE_REPORT_FLOOR`, or its models are
flagged, have identical weights, or agree at least :data:`MODEL_REPORT_FLOOR`. Each listed pair
carries both signals: ``code`` is ``None`` when the code comparison gave no figure for the pair
(a notebook that could not be read), ``model`` when a side has no usable fingerprint (or
neither model errs, so there is nothing to compare on). ``flagged = code_flagged or
model_flagged``.

**Ranking.** Flagged pairs first, then the stronger signal (``max(code, model)``) highest
first, then the student ids, so the same inputs always give the same order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grader import ModelFingerprint, similarity

#: A code pair not flagged is listed from this share of shared code up (honest variants of the
#: solution reach 0.75; independent notebooks stay far below), the share from which the code
#: comparison marks the matching parts: a listed pair can be shown side by side.
CODE_REPORT_FLOOR = 0.5
#: A model pair neither flagged nor of identical weights is listed (when the code does not list
#: it) from this error agreement up: well above independent trainings, below a shared model.
MODEL_REPORT_FLOOR = 0.5


@dataclass(frozen=True)
class Pair:
    """Two students (keys ``a`` < ``b``) and both signals."""

    a: str
    b: str
    #: Shared code beyond the template (0..1); ``None``: the code comparison did not report it.
    code: float | None = None
    #: Shared k-grams neither the template's nor expected.
    distinctive: int | None = None
    #: The models' error agreement (0..1); ``None``: no model signal for this pair.
    model: float | None = None
    identical_weights: bool = False
    code_flagged: bool = False
    model_flagged: bool = False
    #: The matching parts of ``a``'s and ``b``'s code (offsets into :func:`code_text`'s text).
    spans_a: list[tuple[int, int]] = field(default_factory=list)
    spans_b: list[tuple[int, int]] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return self.code_flagged or self.model_flagged

    @property
    def strength(self) -> float:
        """The stronger of the two signals (0 when neither is known)."""
        return max((v for v in (self.code, self.model) if v is not None), default=0.0)


@dataclass(frozen=True)
class Comparison:
    #: Listed pairs, ranked (see the module's docstring).
    pairs: list[Pair]
    #: Pairs of students the code comparison looked at, and the model comparison.
    code_pairs: int
    model_pairs: int
    #: Seconds of each phase: ``code``, ``models``.
    seconds: dict[str, float]


def code_text(data: bytes) -> str:
    """The code of a notebook as the code comparison reads it (its code cells joined)."""
    return similarity.notebook_code(data).text


def thresholds() -> dict[str, float]:
    """The numbers the comparisons decide by (``grader.similarity``'s public constants, and
    this module's floor), recorded with each run."""
    found: dict[str, float] = {}
    for name, value in vars(similarity).items():
        if name.isupper() and not name.startswith("_") and isinstance(value, int | float) \
                and not isinstance(value, bool):
            found[name.lower()] = value
    found["code_report_floor"] = CODE_REPORT_FLOOR
    found["model_report_floor"] = MODEL_REPORT_FLOOR
    return found


def _ordered(a: str, b: str) -> tuple[str, str, bool]:
    return (a, b, False) if a <= b else (b, a, True)


def compare(codes: Mapping[str, str], template: str, expected: Sequence[str],
            fingerprints: Mapping[str, ModelFingerprint],
            labels: Mapping[str, np.ndarray] | None) -> Comparison:
    """Compare the students' code (``codes``: key -> :func:`code_text`) against each other
    beyond ``template`` and ``expected``, and their models (``fingerprints``: key -> the
    model's, against ``labels``; ``None`` when the labels are not available: no model signal),
    and merge both into ranked :class:`Pair` s."""
    seconds: dict[str, float] = {}
    began = time.monotonic()
    students = [similarity.CodeSubmission(key, code) for key, code in sorted(codes.items())]
    code_pairs = similarity.compare_code(students, template, tuple(expected))
    seconds["code"] = time.monotonic() - began

    began = time.monotonic()
    models: dict[tuple[str, str], Any] = {}
    if labels is not None and len(fingerprints) >= 2:
        for found in similarity.compare_models(dict(fingerprints), dict(labels)):
            a, b, _ = _ordered(found.a, found.b)
            models[(a, b)] = found
    seconds["models"] = time.monotonic() - began

    code: dict[tuple[str, str], dict[str, Any]] = {}
    listed: set[tuple[str, str]] = set()
    for pair in code_pairs:
        a, b, swapped = _ordered(pair.a, pair.b)
        spans_a, spans_b = (pair.spans_b, pair.spans_a) if swapped else (pair.spans_a,
                                                                          pair.spans_b)
        code[(a, b)] = {"code": float(pair.code), "distinctive": int(pair.distinctive),
                        "code_flagged": bool(pair.flagged),
                        "spans_a": [tuple(s) for s in spans_a],
                        "spans_b": [tuple(s) for s in spans_b]}
        if pair.flagged or pair.code >= CODE_REPORT_FLOOR:
            listed.add((a, b))
    for key, found in models.items():
        if found.flagged or found.identical_weights or (
                found.agreement is not None and found.agreement >= MODEL_REPORT_FLOOR):
            listed.add(key)
    pairs: list[Pair] = []
    for a, b in listed:
        signals = code.get((a, b), {})
        model = models.get((a, b))
        agreement: float | None
        if model is not None:
            agreement, same_weights, flagged = model.agreement, model.identical_weights, \
                model.flagged
        elif labels is not None and a in fingerprints and b in fingerprints:
            agreement = similarity.error_agreement(fingerprints[a], fingerprints[b],
                                                   dict(labels)).agreement
            same_weights, flagged = fingerprints[a].weights == fingerprints[b].weights, False
        else:
            agreement, same_weights, flagged = None, False, False
        pairs.append(Pair(a, b, model=None if agreement is None else float(agreement),
                          identical_weights=bool(same_weights), model_flagged=bool(flagged),
                          **signals))
    pairs.sort(key=lambda p: (not p.flagged, -p.strength, p.a, p.b))
    n, m = len(codes), (len(fingerprints) if labels is not None else 0)
    return Comparison(pairs, n * (n - 1) // 2, m * (m - 1) // 2,
                      {k: round(v, 3) for k, v in seconds.items()})
