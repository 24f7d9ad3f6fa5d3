"""A kit has one owner that closes it (issue 22): the grader closes the kit it started, never
one handed to it (the one who took it from its pool closes that one), and nothing on the run's
way closes a kit behind its owner's back (a kit that failed to start included).

The behaviour is checked with a kit faked at the pipeline's seam (``start_kit``), the close
sites by reading the code: no ``<kit>.close`` in ``grader/pipeline.py`` or
``grader/notebook_run.py`` (the pipeline closes what it started through a ``with``), and in the
service one site only, the run's seat (``service/queue/host.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader import pipeline
from grader.clean_room import Measured
from grader.kernel.plan import RunPlan
from grader.notebook_run import NotebookRun, run_notebook
from grader.outcome import RunOutcome
from grader.report import Outcome

ROOT = Path(__file__).resolve().parent.parent


class OwnedKit:
    """A kit as the pipeline sees it, counting its closes."""

    def __init__(self, rundir: Path, failure: str | None = None) -> None:
        self.rundir, self.cleanroom, self.failure = rundir, None, failure
        self.runner = None if failure else object()
        self.kernel_result: list[Any] = []
        self.handed_over = False
        self.closes = 0
        self.created = 0.0

    def close(self, closers: Any = None) -> None:
        self.closes += 1

    def __enter__(self) -> OwnedKit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[OwnedKit]:
    """The kits the pipeline starts itself; the run and the clean room faked."""
    made: list[OwnedKit] = []

    def start_kit(*args: Any, **kw: Any) -> OwnedKit:
        made.append(OwnedKit(tmp_path))
        return made[-1]

    def run(nb: nbformat.NotebookNode, kit: Any, *args: Any, **kw: Any) -> NotebookRun:
        return NotebookRun(RunOutcome(Outcome.GRADED, None), None, None, nb, {})

    monkeypatch.setattr(pipeline, "start_kit", start_kit)
    monkeypatch.setattr(pipeline, "run_notebook", run)
    monkeypatch.setattr(pipeline, "measure_execution",
                        lambda *args, **kw: Measured(seconds=0.0))
    return made


def _data() -> bytes:
    return nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print(1)")])).encode()


def test_the_grader_closes_the_kit_it_started_once(started, exercise, config):
    report = pipeline.grade_notebook(_data(), exercise, config, None)
    assert report.outcome is not Outcome.SANDBOX_ERROR, report.reason
    (kit,) = started
    assert kit.closes == 1


def test_the_grader_closes_the_kit_it_started_when_the_run_raises(started, exercise, config,
                                                                   monkeypatch):
    def broken(*args: Any, **kw: Any) -> NotebookRun:
        raise RuntimeError("a grader bug")

    monkeypatch.setattr(pipeline, "run_notebook", broken)
    report = pipeline.grade_notebook(_data(), exercise, config, None)
    assert report.outcome is Outcome.SANDBOX_ERROR  # the grader failed: a report
    (kit,) = started
    assert kit.closes == 1


def test_a_kit_handed_over_is_used_and_left_to_its_owner(started, exercise, config, tmp_path):
    handed = OwnedKit(tmp_path)
    pipeline.grade_notebook(_data(), exercise, config, None, kit=handed)  # type: ignore[arg-type]
    assert started == []  # none started: the handed kit ran it
    assert handed.closes == 0
    unreadable = OwnedKit(tmp_path)  # the grading ends before any sandbox is asked
    pipeline.grade_notebook(b"not a notebook", exercise, config, None,
                            kit=unreadable)  # type: ignore[arg-type]
    assert unreadable.closes == 0


def test_a_kit_that_failed_to_start_is_not_closed_behind_its_owner(exercise, tmp_path):
    kit = OwnedKit(tmp_path, failure="the kernel's sandbox never came up")
    ran = run_notebook(nbformat.v4.new_notebook(), kit,  # type: ignore[arg-type]
                       RunPlan(cell_timeout=10, cell_output_bytes=1, notebook_output_bytes=1),
                       exercise.limits, 0.0, None)
    assert ran.outcome.outcome is Outcome.SANDBOX_ERROR
    assert kit.handed_over and kit.closes == 0


# --- the close sites, read from the code ---------------------------------------------------

def _kit_close_references(path: Path) -> list[int]:
    """Lines naming ``<something kit>.close`` (called, or handed on as a callback)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "close":
            owner = node.value
            name = (owner.id if isinstance(owner, ast.Name)
                    else owner.attr if isinstance(owner, ast.Attribute) else "")
            if "kit" in name.lower():
                lines.append(node.lineno)
    return lines


def test_the_pipeline_and_the_run_close_no_kit_by_hand():
    for module in ("grader/pipeline.py", "grader/notebook_run.py"):
        assert _kit_close_references(ROOT / module) == [], module


def test_the_service_closes_a_kit_in_one_place_the_runs_seat():
    sites = {str(path.relative_to(ROOT)): lines
             for path in sorted((ROOT / "service").rglob("*.py"))
             if (lines := _kit_close_references(path))}
    assert list(sites) == ["service/queue/host.py"] and len(sites["service/queue/host.py"]) == 1


def test_no_module_of_the_kits_holds_threads_or_a_mutable_global():
    """Kits closing in the background are their owner's (``KitClosers``, a pool's), not a
    module's: ``grader/kit.py`` and ``grader/warm_pool.py`` bind no module-level thread, lock,
    set, list or dict, and declare no ``global``."""
    found = []
    for module in ("grader/kit.py", "grader/warm_pool.py"):
        tree = ast.parse((ROOT / module).read_text(), module)
        for node in tree.body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if value is None:
                continue
            made = ast.unparse(value.func) if isinstance(value, ast.Call) else ""
            if (isinstance(value, ast.Set | ast.List | ast.Dict)
                    or made in ("set", "list", "dict") or made.startswith("threading.")):
                found.append(f"{module}:{node.lineno} {ast.unparse(node)}")
        found += [f"{module}:{node.lineno} global" for node in ast.walk(tree)
                  if isinstance(node, ast.Global)]
    assert found == []
