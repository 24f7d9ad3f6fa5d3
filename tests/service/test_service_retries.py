"""Which failures the service runs again (issue 17): a sandbox error may pass (a busy machine),
so it is retried, but one that repeats the previous attempt's reason is final; a runner the
kernel pushed past its memory is the student's outcome (``grader/outcome.py``), stored at once.
``grade_notebook`` is replaced by a stub whose report comes from the real ``classify_run``."""

from __future__ import annotations

from typing import Any

import pytest

from grader import Outcome
from grader.outcome import classify_run
from grader.report import GradeReport
from grader.results import RunnerResult
from service.queue import claims, grading
from tests.runner_records import PARTIAL, ended
from tests.service.service_support import grade_run, in_session, only_run, tiny_notebook


def _stub(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> list[int]:
    calls: list[int] = []

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        outcome = outcomes[min(len(calls), len(outcomes) - 1)]
        calls.append(1)
        return GradeReport(exercise.id, outcome.outcome, [], exercise.max_score,
                           reason=outcome.reason)

    monkeypatch.setattr(grading, "grade_notebook", grade)
    return calls


def _attempt(app: Any, run_id: int) -> str:
    assert in_session(app, lambda s: claims.claim(s, run_id, "worker-A",
                                                  app.config["LEASE_SECONDS"])) is True
    return grade_run(app, run_id, "worker-A")


def test_a_runner_flooded_by_the_kernel_is_stored_not_retried(app, submit, monkeypatch):
    flooded = classify_run(ended(), ended(exit_code=-9, signal=9, oom_killed=True), PARTIAL,
                           None, 4, 600.0)
    assert flooded.outcome is Outcome.OUT_OF_MEMORY
    calls = _stub(monkeypatch, [flooded])
    submission_id = submit(tiny_notebook("flood"), via=app).get_json()["id"]
    run_id = only_run(app, submission_id)["id"]
    assert _attempt(app, run_id) == "graded"
    run = only_run(app, submission_id)
    assert (run["state"], run["outcome"], run["attempts"]) == ("graded", "out_of_memory", 1)
    assert "cell 5" in run["reason"]
    assert len(calls) == 1


def test_a_sandbox_error_that_repeats_is_final(app, submit, monkeypatch):
    """A runner that fails the same way in the same cell twice is not run a third time."""
    broken = classify_run(ended(), ended(exit_code=1), RunnerResult.model_validate(
        {"version": 2, "status": "runner_error", "cells": [],
         "error": {"ename": "KeyError", "evalue": "'execution_state'"}}), None, 4, 600.0)
    assert broken.outcome is Outcome.SANDBOX_ERROR and broken.reason is not None
    assert "cell 5" in broken.reason.en
    calls = _stub(monkeypatch, [broken])
    submission_id = submit(tiny_notebook("repeat"), via=app).get_json()["id"]
    run_id = only_run(app, submission_id)["id"]
    assert _attempt(app, run_id) == "queued"  # once may be the machine's
    assert _attempt(app, run_id) == "failed"  # the same again: final
    run = only_run(app, submission_id)
    assert (run["state"], run["attempts"]) == ("failed", 2)
    assert len(calls) == 2


def test_sandbox_errors_that_differ_are_retried_up_to_max_attempts(app, submit, monkeypatch):
    busy = [classify_run(ended(sandbox_error=f"sandbox did not start: try {n}"), None, None,
                         None, None, 600.0) for n in range(3)]
    assert {o.outcome for o in busy} == {Outcome.SANDBOX_ERROR}
    calls = _stub(monkeypatch, busy)
    submission_id = submit(tiny_notebook("busy"), via=app).get_json()["id"]
    run_id = only_run(app, submission_id)["id"]
    assert [_attempt(app, run_id) for _ in range(3)] == ["queued", "queued", "failed"]
    assert only_run(app, submission_id)["attempts"] == 3 == len(calls)


def test_a_report_holding_nul_characters_is_stored(app, submit, monkeypatch):
    """The kernel's words reach the report (an exception's message in an item's feedback, the
    diagnostics); PostgreSQL stores no NUL character in text or JSON, and a store that failed
    left the run to be taken again and again."""
    from grader.report import ItemResult, ItemStatus
    from grader.spec import Text

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        said = Text(ja="ValueError: a\x00b", en="ValueError: a\x00b")
        item = ItemResult("conv1", Text(ja="c", en="c"), 0.0, 6.0, ItemStatus.ERROR, [said],
                          details={"evalue": "a\x00b"})
        return GradeReport(exercise.id, Outcome.GRADED, [item], exercise.max_score,
                           diagnostics={"log_tail": "x\x00y"})

    monkeypatch.setattr(grading, "grade_notebook", grade)
    submission_id = submit(tiny_notebook("nul"), via=app).get_json()["id"]
    run_id = only_run(app, submission_id)["id"]
    assert _attempt(app, run_id) == "graded"
    run = only_run(app, submission_id)
    assert (run["state"], run["attempts"]) == ("graded", 1)


def test_a_report_holding_half_a_surrogate_pair_is_stored(app, submit, monkeypatch):
    """Issue 17 part 7 (red team 2): the kernel's words can hold half a surrogate pair (a
    message type the runner counts as dropped, ``"\\udc00 not used"``); PostgreSQL refuses
    one in JSON (``Unicode low surrogate must follow a high surrogate``) and no UTF-8 encoder
    takes it in text: the store failed and the run was taken again."""
    from grader.report import ItemResult, ItemStatus
    from grader.spec import Text

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        said = Text(ja="ValueError: a\udc00b", en="ValueError: a\ud800b")
        item = ItemResult("conv1", Text(ja="c", en="c"), 0.0, 6.0, ItemStatus.ERROR, [said],
                          details={"evalue": "a\udc00b"})
        return GradeReport(exercise.id, Outcome.GRADED, [item], exercise.max_score,
                           diagnostics={"dropped_messages": {"\udc00 not used": 1},
                                        "log_tail": "x\ud800"})

    monkeypatch.setattr(grading, "grade_notebook", grade)
    submission_id = submit(tiny_notebook("surrogate"), via=app).get_json()["id"]
    run_id = only_run(app, submission_id)["id"]
    assert _attempt(app, run_id) == "graded"
    run = only_run(app, submission_id)
    assert (run["state"], run["attempts"]) == ("graded", 1)
