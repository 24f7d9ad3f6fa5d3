"""Running a notebook: the student's kernel in one sandbox, the grader's runner in another.

The kernel (a plain ipykernel) runs as the student's user with the student's data set and a
private, size-limited ``/job``; it is started first, and lends its loopback network to the
runner (``grader/kernel/runner.py``, nbclient), which runs as the grader's user, executes the
cells, asks the kernel for each item's export, and writes what it saw into its own folder, which
the kernel cannot see. Both are started together as a kit (:mod:`grader.kit`), for this
submission or ahead of it; :func:`run_notebook` hands the notebook over. The host tells the
runner when the kernel's sandbox has ended (``out/control/kernel-exited``), and classifies the
run from both sandboxes' facts and the runner's record (:func:`grader.outcome.classify_run`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat

from grader.deadline import Deadline
from grader.kernel.events import read_event
from grader.kernel.plan import ExportStep, RunPlan
from grader.kit import RUNNER_GRACE, Kit
from grader.limits import Limits
from grader.locate import Located
from grader.outcome import RunOutcome, classify_run
from grader.results import ResultError, RunnerResult, read_runner_result
from grader.sandbox.base import SandboxResult
from grader.sandbox.runs import wait_within
from grader.spec import Exercise

MAX_EXECUTED_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Progress:
    """A step of a run as it happens; ``kind``: ``kernel_ready``, ``cell``, ``output``,
    ``export``, ``measuring``, ``done``."""

    kind: str
    cell_index: int | None = None
    position: int | None = None
    count: int | None = None
    item: str | None = None
    #: For ``output``: the last line the cell printed (an epoch's accuracy, say).
    text: str | None = None
    elapsed: float = 0.0


ProgressCallback = Callable[[Progress], None]

@dataclass
class NotebookRun:
    """What the two sandboxes produced: the outcome, the runner's record, the kernel's sandbox
    facts, the executed notebook (outputs capped), timings."""

    outcome: RunOutcome
    runner: RunnerResult | None
    sandbox: SandboxResult | None
    executed: nbformat.NotebookNode | None
    timings: dict[str, float] = field(default_factory=dict)


def plan_exports(exercise: Exercise, located: dict[str, Located | None]) -> list[ExportStep]:
    """Export instructions for the runner: only what to export and after which cell."""
    return [ExportStep(item=item.id, cell=where.index, export=item.extract.export,
                       fresh=item.extract.fresh, args=dict(item.extract.args))
            for item in exercise.items if (where := located.get(item.id)) is not None
            and item.extract.export != "function"]  # taken from the source, on the host


def build_plan(exercise: Exercise, limits: Limits, located: dict[str, Located | None],
               cell_budgets: dict[int, float] | None = None) -> RunPlan:
    """The runner's plan for one submission: budgets capped by ``limits.cell_timeout``, the
    output caps, the exports."""
    return RunPlan(
        notebook="submission.ipynb",
        cell_timeout=limits.cell_timeout,
        cell_budgets={i: min(s, limits.cell_timeout) for i, s in (cell_budgets or {}).items()},
        cell_output_bytes=limits.cell_output_bytes,
        notebook_output_bytes=limits.notebook_output_bytes,
        exports=plan_exports(exercise, located),
    )


def run_notebook(
    nb: nbformat.NotebookNode,
    kit: Kit,
    plan: RunPlan,
    limits: Limits,
    started: float,
    on_progress: ProgressCallback | None,
    *,
    gpu: bool = False,
    deadline: Deadline | None = None,
) -> NotebookRun:
    """Hand ``nb`` and its ``plan`` over to ``kit`` (started cold or warm, :mod:`grader.kit`)
    and follow the run to its end; what both sandboxes saw, classified. The notebook's wall
    clock (``limits.notebook_timeout``) runs from the hand-over: the host stops the kernel then,
    and the runner ``RUNNER_GRACE`` seconds later. ``gpu``: the kernel had a GPU lent.
    ``deadline``: for reading the results back, restarted when the run ends; the executed
    notebook (a courtesy) is not read once it has passed. The kit stays its owner's to close
    (whoever started it, or took it from its pool), whatever happens here."""
    if kit.handed_over:
        raise ValueError("a kit serves one submission only")
    kit.handed_over = True
    if kit.failure is not None or kit.runner is None:  # its owner closes it
        result = kit.kernel_result[0] if kit.kernel_result else None
        outcome = classify_run(_failed(kit.failure or "the kit did not start"), None, None,
                               None, None, limits.notebook_timeout)
        return NotebookRun(outcome, None, result, None, {})
    workdir = kit.rundir / "runner"
    last_cell: list[int | None] = [None]

    def on_line(line: str) -> None:
        event = _parse_event(line)
        if event is None or event.kind == "warm":
            return
        if event.kind == "cell":
            last_cell[0] = event.cell_index
        if on_progress is not None:
            on_progress(Progress(**{**event.__dict__, "elapsed": time.monotonic() - started}))

    t0 = time.monotonic()
    nbformat.write(nb, workdir / "submission.ipynb")
    kit.runner_relay.target = on_line
    partial = workdir / "plan.json.part"
    partial.write_text(plan.model_dump_json())
    os.replace(partial, workdir / "plan.json")  # the runner starts on this rename
    kernel_late = threading.Event()

    def end_kernel() -> None:
        kernel_late.set()
        kit.kernel.stop()

    clock = threading.Timer(limits.notebook_timeout, end_kernel)
    clock.daemon = True
    clock.start()
    try:
        runner_sandbox = wait_within(kit.runner, limits.notebook_timeout + RUNNER_GRACE)
    finally:
        clock.cancel()
    kit.kernel.stop()
    if kit.watcher is not None:
        kit.watcher.join()
    kernel_sandbox = kit.kernel_result[0]
    if kernel_late.is_set():
        kernel_sandbox = replace(kernel_sandbox, timed_out=True, stopped=False)
    seconds = time.monotonic() - t0
    if deadline is not None:
        deadline.restart()
    runner, problem = None, None
    if runner_sandbox.sandbox_error is None:
        try:
            runner = read_runner_result(workdir / "out" / "result.json")
        except ResultError as exc:
            problem = str(exc)
    outcome = classify_run(kernel_sandbox, runner_sandbox, runner, problem, last_cell[0],
                           limits.notebook_timeout, gpu=gpu)
    timings = {"sandbox": seconds}
    if runner is not None:
        for key in ("kernel_start", "bootstrap", "wait", "cells", "exports"):
            if key in runner.timings:
                timings[key] = runner.timings[key]
    executed = (None if deadline is not None and deadline.passed
                else _read_executed(workdir / "out" / "executed.ipynb"))
    return NotebookRun(outcome, runner, kernel_sandbox, executed, timings)


def _failed(reason: str) -> SandboxResult:
    from grader.sandbox.process import error_result

    return error_result(reason)


def _parse_event(line: str) -> Progress | None:
    """The runner's progress event on ``line`` (:mod:`grader.kernel.events`) as the host's
    :class:`Progress`; ``None`` for any line that is not one, which is skipped."""
    event = read_event(line)
    if event is None:
        return None
    return Progress(kind=event.event, cell_index=event.index, position=event.position,
                    count=event.count, item=event.item, text=event.text)


def _read_executed(path: Path) -> nbformat.NotebookNode | None:
    try:
        if path.stat().st_size > MAX_EXECUTED_BYTES:
            return None
        return nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    except Exception:  # the kernel shaped its outputs; the notebook is a courtesy
        return None


