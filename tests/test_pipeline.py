"""The pipeline's order, with fakes at its seams (no sandbox): the notebook's run and the clean
room's measurement are replaced, the steps between them are real."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader import pipeline
from grader.clean_room import Measured
from grader.notebook_run import NotebookRun
from grader.outcome import RunOutcome
from grader.report import RunStatus


class FakeKit:
    """What the pipeline asks of a kit when the run itself is faked: a folder, no clean room."""

    def __init__(self, rundir: Path) -> None:
        self.rundir, self.cleanroom, self.closed = rundir, None, False

    def close(self, background: bool = False) -> None:
        self.closed = True


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The steps as they happen: ``run`` (the notebook ran) and ``measure`` (the clean room)."""
    seen: list[str] = []
    monkeypatch.setattr(pipeline, "start_kit", lambda *args, **kw: FakeKit(tmp_path))

    def run_notebook(nb: nbformat.NotebookNode, *args: Any, **kw: Any) -> NotebookRun:
        seen.append("run")
        return NotebookRun(RunOutcome(RunStatus.GRADED, None), None, None, nb, {"cells": 0.1})

    def measure_execution(*args: Any, **kw: Any) -> Measured:
        seen.append("measure")
        return Measured(seconds=0.2)

    monkeypatch.setattr(pipeline, "run_notebook", run_notebook)
    monkeypatch.setattr(pipeline, "measure_execution", measure_execution)
    return seen


def _notebook() -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])


def test_on_executed_hears_the_executed_notebook_before_the_clean_room_measures(
        steps, exercise, config):
    heard: list[nbformat.NotebookNode] = []

    def on_executed(executed: nbformat.NotebookNode) -> None:
        steps.append("executed")
        heard.append(executed)

    run = pipeline.execute_notebook(_notebook(), exercise, config, None, on_executed=on_executed)
    assert steps == ["run", "executed", "measure"]
    assert heard == [run.executed]
    assert run.timings["cleanroom"] == 0.2


def test_a_failing_on_executed_is_logged_and_grading_goes_on(steps, exercise, config, caplog):
    def on_executed(executed: nbformat.NotebookNode) -> None:
        raise RuntimeError("a listener's bug")

    with caplog.at_level(logging.ERROR, logger="grader.pipeline"):
        run = pipeline.execute_notebook(_notebook(), exercise, config, None,
                                        on_executed=on_executed)
    assert steps == ["run", "measure"] and run.measured is not None
    assert "on_executed failed" in caplog.text
