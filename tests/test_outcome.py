"""``grader/outcome.py`` on the runner's failures (issue 17, part 4): what the kernel can push
the runner into is the student's outcome; the grader's own failures stay ``sandbox_error``."""

from __future__ import annotations

from grader.outcome import classify_run
from grader.report import Outcome
from grader.results import RunnerResult
from tests.runner_records import PARTIAL, ended

OOM_KILLED = ended(exit_code=-9, signal=9, oom_killed=True)


def test_a_runner_killed_by_memory_while_a_cell_ran_is_the_students_out_of_memory():
    outcome = classify_run(ended(), OOM_KILLED, PARTIAL, None, 4, 600.0)
    assert outcome.outcome is Outcome.OUT_OF_MEMORY and outcome.cell_index == 4
    assert outcome.reason is not None and "cell 5" in outcome.reason.en
    assert "grader" in outcome.reason.en and outcome.reason.ja != outcome.reason.en


def test_the_runners_other_failures_stay_sandbox_errors():
    # killed by memory before any cell of the notebook ran (bootstrap, waiting for it)
    assert classify_run(ended(), OOM_KILLED, PARTIAL, None, None,
                        600.0).outcome is Outcome.SANDBOX_ERROR
    # killed by memory with no record to keep
    assert classify_run(ended(), OOM_KILLED, None, "the runner's result is missing", 4,
                        600.0).outcome is Outcome.SANDBOX_ERROR
    # an exception in the runner: the grader's bug, its reason naming the cell
    failed = RunnerResult.model_validate({"version": 2, "status": "runner_error", "cells": [],
                                          "error": {"ename": "KeyError", "evalue": "'x'"}})
    outcome = classify_run(ended(), ended(exit_code=0), failed, None, 4, 600.0)
    assert outcome.outcome is Outcome.SANDBOX_ERROR
    assert outcome.reason is not None and "cell 5" in outcome.reason.en
    assert "KeyError" in outcome.reason.en
    # the kernel's own memory comes first
    assert classify_run(ended(oom_killed=True), OOM_KILLED, PARTIAL, None, 4,
                        600.0).outcome is Outcome.OUT_OF_MEMORY
