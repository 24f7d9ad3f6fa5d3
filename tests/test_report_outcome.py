"""A report's outcome in its JSON shape: written as ``outcome``, read under either name, so a
report stored (or printed by ``grader grade --json``) before the rename still says how its run
ended."""

from __future__ import annotations

import json

import pytest

from grader.report import GradeReport, ItemResult, ItemStatus, Outcome, stored_outcome
from grader.spec import Text


def report(outcome: Outcome = Outcome.TIMEOUT) -> GradeReport:
    item = ItemResult("conv1", Text(ja="畳み込み", en="Convolution"), 6.0, 6.0, ItemStatus.CORRECT)
    return GradeReport("chap06_cnn", outcome, [item], 100.0,
                       reason=Text(ja="時間切れ", en="timeout"))


def test_the_report_writes_its_outcome_under_its_name():
    shape = report().to_dict()

    assert shape["outcome"] == "timeout" and "status" not in shape
    assert shape["items"][0]["status"] == "correct"  # an item's verdict keeps its word
    assert stored_outcome(json.loads(json.dumps(shape))) is Outcome.TIMEOUT


def test_a_report_stored_before_the_rename_is_read():
    """The shape the service stored and the CLI printed until 2026-12: ``"status"``."""
    old = report(Outcome.OUT_OF_MEMORY).to_dict()
    old["status"] = old.pop("outcome")

    assert stored_outcome(old) is Outcome.OUT_OF_MEMORY


@pytest.mark.parametrize("shape", [
    {},  # a report cut short
    {"outcome": "melted"},  # a newer grader's word
    {"outcome": None},
    {"status": 3},
])
def test_a_report_without_a_known_outcome_reads_as_none(shape):
    assert stored_outcome(shape) is None


def test_the_new_name_wins_over_the_old_one():
    assert stored_outcome({"outcome": "graded", "status": "timeout"}) is Outcome.GRADED
