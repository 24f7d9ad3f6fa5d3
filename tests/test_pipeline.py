"""The pipeline's order, with fakes at its seams (no sandbox): the notebook's run and the clean
room's measurement are replaced, the steps between them are real."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader import pipeline
from grader.clean_room import Measured
from grader.notebook_run import NotebookRun
from grader.outcome import RunOutcome
from grader.report import Outcome


class FakeKit:
    """What the pipeline asks of a kit when the run itself is faked: a folder, no clean room."""

    def __init__(self, rundir: Path) -> None:
        self.rundir, self.cleanroom, self.closed = rundir, None, False

    def close(self, closers: object = None) -> None:
        self.closed = True

    def __enter__(self) -> FakeKit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The steps as they happen: ``run`` (the notebook ran) and ``measure`` (the clean room)."""
    seen: list[str] = []
    monkeypatch.setattr(pipeline, "start_kit", lambda *args, **kw: FakeKit(tmp_path))

    def run_notebook(nb: nbformat.NotebookNode, *args: Any, **kw: Any) -> NotebookRun:
        seen.append("run")
        return NotebookRun(RunOutcome(Outcome.GRADED, None), None, None, nb, {"cells": 0.1})

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


# --- issue 17 part 3: the host's own work on a hostile notebook, bounded --------------------

@pytest.fixture
def ran_cells(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """A faked run in which every cell ran without error and nothing was exported."""
    from grader.results import RunnerResult

    seen: list[str] = []
    monkeypatch.setattr(pipeline, "start_kit", lambda *args, **kw: FakeKit(tmp_path))

    def run_notebook(nb: nbformat.NotebookNode, *args: Any, **kw: Any) -> NotebookRun:
        seen.append("run")
        runner = RunnerResult.model_validate({
            "version": 2, "status": "completed",
            "cells": [{"index": i, "status": "ok"} for i in range(len(nb.cells))]})
        return NotebookRun(RunOutcome(Outcome.GRADED, None), runner, None, nb, {})

    monkeypatch.setattr(pipeline, "run_notebook", run_notebook)
    monkeypatch.setattr(pipeline, "measure_execution",
                        lambda *args, **kw: Measured(seconds=0.0))
    return seen


def _hostile_seed(exercise) -> bytes:
    """The seed notebook at the upload's limits: a 4 MiB cell of blank lines after the set-up,
    conv1's graded cell padded with 4 MiB of magics, conv2's with five magics (beyond what the
    host passes to IPython's transformers), and pool1's left as the course wrote it."""
    from grader.locate import locate_items
    from tests.conftest import FIXTURES

    nb = nbformat.read(FIXTURES / "chap06_seed_copy.ipynb", as_version=4)
    located = locate_items(nb, exercise)
    conv1, conv2 = located["conv1"].index, located["conv2"].index
    nb.cells[conv1].source = "%time\n" * 600_000 + nb.cells[conv1].source
    nb.cells[conv2].source = "%pwd\n" * 5 + nb.cells[conv2].source
    blank = nbformat.v4.new_code_cell("x = 1\n" + "\n" * 2_000_000)
    del blank["id"]  # the seed is nbformat 4.4
    nb.cells.insert(1, blank)
    return json.dumps(nb).encode()  # each source one string, as an upload may hold it


@pytest.mark.timeout(120)  # before issue 17 the blank lines alone cost the host hours
def test_blank_lines_and_magic_padded_cells_end_in_item_errors_not_hours(
        ran_cells, exercise, config):
    report = pipeline.grade_notebook(_hostile_seed(exercise), exercise, config, None)
    assert ran_cells == ["run"]
    assert report.outcome is Outcome.GRADED, report.reason
    for item_id, cause in (("conv1", "600,000 lines with magics"), ("conv2", " 5 lines with magics")):
        item = report.item(item_id)
        assert item.status.value == "error", item_id
        text = item.feedback[0]
        assert "too large for the grader to check" in text.en and cause in text.en, text.en
        assert "65,536 bytes" in text.en and "大きすぎて" in text.ja
    # the course's own cells are read as before: no export (the run was faked), no size error
    assert "too large" not in " ".join(t.en for t in report.item("pool1").feedback)


def test_a_preparation_past_its_deadline_is_a_report_and_runs_nothing(
        ran_cells, exercise, config):
    from grader.preparation import HostLimits

    data = nbformat.writes(_notebook()).encode()
    report = pipeline.grade_notebook(data, exercise, config, None,
                                     host=HostLimits(prepare_seconds=0.0))
    assert ran_cells == []
    assert report.outcome is Outcome.INVALID_NOTEBOOK
    assert "preparing the notebook for its run took more than 0 s" in report.reason.en
    assert "実行準備" in report.reason.ja
    assert all(item.score == 0 for item in report.items)


def test_results_not_read_before_their_deadline_are_item_errors(
        monkeypatch, tmp_path, exercise, config):
    from grader.preparation import HostLimits
    from grader.results import RunnerResult

    monkeypatch.setattr(pipeline, "start_kit", lambda *args, **kw: FakeKit(tmp_path))
    folder = tmp_path / "runner" / "out" / "exports"
    folder.mkdir(parents=True)
    (folder / "0.json").write_text('{"kind": "value", "type": "int"}')
    nb = _notebook()

    def run_notebook(nb: nbformat.NotebookNode, *args: Any, **kw: Any) -> NotebookRun:
        runner = RunnerResult.model_validate({
            "version": 2, "status": "completed", "cells": [{"index": 0, "status": "ok"}],
            "exports": {"conv1": {"file": "0.json"}}})
        return NotebookRun(RunOutcome(Outcome.GRADED, None), runner, None, nb, {})

    monkeypatch.setattr(pipeline, "run_notebook", run_notebook)
    run = pipeline.execute_notebook(nb, exercise, config, None, measure=False,
                                    host=HostLimits(results_seconds=0.0))
    assert run.exports["conv1"] == "not read: reading the run's results took more than 0 s"
    # with time to read it, the same export is read
    run = pipeline.execute_notebook(nb, exercise, config, None, measure=False,
                                    host=HostLimits(results_seconds=60.0))
    assert run.exports["conv1"].kind == "value"


# --- issue 17 part 7 (red team 2): lines IPython rewrites that the source limits missed -----


@pytest.mark.timeout(120)
def test_graded_cells_of_autocall_escapes_are_item_errors_within_the_preparations_bound(
        ran_cells, exercise, config):
    """Every graded cell of the seed padded with 900 lines of ``/f`` (IPython's autocall:
    ``f()``), within 8 KiB and 1,000 lines: the host counted only ``% ! ?`` as lines IPython
    rewrites, and IPython took 500 passes over each such cell (about 4 s each here): the
    preparation went past its 10 s and the whole notebook was refused (``invalid_notebook``),
    where the promise is a few seconds and an item error for the cell too large to check."""
    from grader.locate import locate_items
    from tests.conftest import FIXTURES

    nb = nbformat.read(FIXTURES / "chap06_seed_copy.ipynb", as_version=4)
    padded = []
    for item_id, where in locate_items(nb, exercise).items():
        if where is not None and nb.cells[where.index].cell_type == "code":
            nb.cells[where.index].source = "/f\n" * 900 + nb.cells[where.index].source
            padded.append(item_id)
    assert len(padded) >= 3
    run = pipeline.execute_notebook(
        nbformat.reads(json.dumps(nb), as_version=4), exercise, config, None, measure=False)
    assert run.timings["prepare"] < 3.0
    report = pipeline.grade_notebook(json.dumps(nb).encode(), exercise, config, None)
    assert report.outcome is Outcome.GRADED, report.reason
    for item_id in padded:
        text = report.item(item_id).feedback[0].en
        assert "too large for the grader to check" in text, (item_id, text)
