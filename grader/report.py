"""The grading report: the one value every run ends in, whatever went wrong.

A run's :class:`Outcome` says how it ended; items reached keep their scores whatever the
outcome, and items not reached get 0 with a reason. The JSON shape (``GradeReport.to_dict``) is
what the CLI prints with ``--json`` and what the service stores; its field names are kept stable,
with one rename: reports written before the word *outcome* hold it under ``"status"``, and
:func:`stored_outcome` reads both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from grader.fingerprints import ModelFingerprint
from grader.spec import Text


class Outcome(StrEnum):
    """How a run ended, the grader's verdict on the notebook (``grader/outcome.py`` draws the
    tree). Not the service's ``RunState``, where a run is in the queue."""

    GRADED = "graded"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    #: A cell ran out of GPU memory (TensorFlow's ``ResourceExhaustedError``) on a lent GPU.
    GPU_OUT_OF_MEMORY = "gpu_out_of_memory"
    KERNEL_DIED = "kernel_died"
    INVALID_NOTEBOOK = "invalid_notebook"
    SANDBOX_ERROR = "sandbox_error"


class ItemStatus(StrEnum):
    CORRECT = "correct"
    PARTIAL = "partial"
    INCORRECT = "incorrect"
    #: The item's cell raised, its answer could not be exported, or not measured.
    ERROR = "error"
    #: No cell for the item was found in the notebook.
    MISSING = "missing"
    #: The run stopped (timeout, memory, dead kernel) before the item's cell.
    NOT_REACHED = "not_reached"


@dataclass
class ItemResult:
    id: str
    title: Text
    score: float
    max_score: float
    status: ItemStatus
    feedback: list[Text] = field(default_factory=list)
    #: Facts behind the score (expected and submitted shapes, accuracies...).
    details: dict[str, Any] = field(default_factory=dict)
    cell_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": {"ja": self.title.ja, "en": self.title.en},
            "score": round(self.score, 4),
            "max_score": self.max_score,
            "status": str(self.status),
            "feedback": {
                "ja": "\n".join(t.ja for t in self.feedback),
                "en": "\n".join(t.en for t in self.feedback),
            },
            "details": self.details,
            "cell_index": self.cell_index,
        }


@dataclass
class GradeReport:
    exercise: str
    outcome: Outcome
    items: list[ItemResult]
    max_score: float
    #: One line saying why the run ended as it did, when not simply graded.
    reason: Text | None = None
    measured_accuracy: float | None = None
    claimed_accuracy: float | None = None
    notes: list[Text] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: Extra facts for instructors: sandbox log tail, peak memory, bootstrap notes...
    diagnostics: dict[str, Any] = field(default_factory=dict)
    executed_notebook: str | None = None
    #: The trained model's fingerprint (:mod:`grader.fingerprints`): a graded run whose model
    #: the clean room measured; never scored, compared across students by the similarity work.
    fingerprint: ModelFingerprint | None = None

    @property
    def score(self) -> float:
        return round(sum(item.score for item in self.items), 4)

    def item(self, item_id: str) -> ItemResult:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "exercise": self.exercise,
            "outcome": str(self.outcome),
            "score": self.score,
            "max_score": self.max_score,
            "reason": None if self.reason is None else {"ja": self.reason.ja, "en": self.reason.en},
            "items": [item.to_dict() for item in self.items],
            "measured_accuracy": self.measured_accuracy,
            "claimed_accuracy": self.claimed_accuracy,
            "notes": [{"ja": n.ja, "en": n.en} for n in self.notes],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "diagnostics": self.diagnostics,
            "fingerprint": None if self.fingerprint is None else {
                "weights": self.fingerprint.weights,
                "images": {name: len(labels)
                           for name, labels in self.fingerprint.predictions.items()}},
        }


#: The key of a report's outcome before it was called so (reports stored until 2026-12).
LEGACY_OUTCOME_KEY = "status"


def stored_outcome(report: Mapping[str, Any]) -> Outcome | None:
    """The outcome a stored report (``GradeReport.to_dict``, as the service keeps it or the CLI
    printed it) holds, under ``"outcome"`` or, written before the rename, ``"status"``;
    ``None`` when it holds none this grader knows (a report cut short, a newer grader's word)."""
    value = report.get("outcome", report.get(LEGACY_OUTCOME_KEY))
    try:
        return Outcome(value) if isinstance(value, str) else None
    except ValueError:
        return None
