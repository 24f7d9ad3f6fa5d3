"""Grading one notebook, as an ordered list of small steps (nbgrader's habit).

    read -> sanitise -> locate cells -> plan -> run in the sandbox -> validate the result
         -> classify the outcome -> score items -> report

:func:`execute_notebook` stops after classification (``grader build-reference`` uses it on the
solution); :func:`grade_notebook` goes on to score. Neither raises for anything a student can do:
every path ends in a :class:`~grader.report.GradeReport` with a status.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from grader.config import GraderConfig
from grader.limits import Limits
from grader.locate import Located, locate_items
from grader.notebook import NotebookError, read_notebook, strip_outputs
from grader.outcome import RunOutcome, classify_run
from grader.report import GradeReport, ItemResult, ItemStatus, RunStatus
from grader.results import ResultError, RunnerResult, read_runner_result
from grader.sandbox.base import Mount, Sandbox, SandboxRequest, SandboxResult
from grader.sanitize import Neutralised, sanitize_notebook
from grader.scoring import claimed_accuracy, score_items
from grader.spec import Exercise, Text

KERNEL_DIR = Path(__file__).resolve().parent / "kernel"
KERNEL_TARGET = "/opt/grader/kernel"
DATA_TARGET = "/data"
WORK_TARGET = "/job"
MAX_EXECUTED_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Progress:
    """A step of a run as it happens; ``kind``: ``kernel_ready``, ``cell``, ``probe``, ``done``."""

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
class Execution:
    """Everything a run produced, before scoring."""

    outcome: RunOutcome
    located: dict[str, Located | None]
    notes: list[Neutralised] = field(default_factory=list)
    runner: RunnerResult | None = None
    sandbox: SandboxResult | None = None
    executed: nbformat.NotebookNode | None = None
    timings: dict[str, float] = field(default_factory=dict)


def plan_probes(exercise: Exercise, located: dict[str, Located | None]) -> list[dict[str, Any]]:
    """Probe instructions for the runner: no expected values, only what to read and where."""
    probes = []
    for item in exercise.items:
        where = located.get(item.id)
        if where is None:
            continue
        args = {k: _sandbox_value(v) for k, v in item.extract.args.items()}
        probes.append({"item": item.id, "cell": where.index, "probe": item.extract.probe,
                       "fresh": item.extract.fresh, "args": args})
    return probes


def _sandbox_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("@dataset:"):
        return f"{DATA_TARGET}/{value.split(':', 1)[1]}.npz"
    if isinstance(value, dict):
        return {k: _sandbox_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sandbox_value(v) for v in value]
    return value


def execute_notebook(
    nb: nbformat.NotebookNode,
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    *,
    limits: Limits | None = None,
    on_progress: ProgressCallback | None = None,
) -> Execution:
    """Run a (parsed) notebook in the sandbox with the exercise's probes."""
    limits = limits or exercise.limits
    started = time.monotonic()
    nb = strip_outputs(nb)
    notes = sanitize_notebook(nb)
    located = locate_items(nb, exercise)
    workdir = Path(tempfile.mkdtemp(prefix="grader-run-"))
    last_cell: list[int | None] = [None]
    try:
        (workdir / "out").mkdir()
        nbformat.write(nb, workdir / "submission.ipynb")
        plan = {
            "notebook": f"{WORK_TARGET}/submission.ipynb",
            "executed": f"{WORK_TARGET}/out/executed.ipynb",
            "result": f"{WORK_TARGET}/out/result.json",
            "cwd": WORK_TARGET,
            "cell_timeout": limits.cell_timeout,
            "cell_output_bytes": limits.cell_output_bytes,
            "notebook_output_bytes": limits.notebook_output_bytes,
            "bootstrap": {
                "tf1": exercise.runtime.tf1,
                "datasets": {n: f"{DATA_TARGET}/{n}.npz" for n in exercise.runtime.datasets},
            },
            "probes": plan_probes(exercise, located),
        }
        (workdir / "plan.json").write_text(json.dumps(plan))
        for path in (workdir, workdir / "out"):
            path.chmod(0o777)  # the sandbox runs as an unprivileged user
        request = SandboxRequest(
            argv=[sys.executable, f"{KERNEL_TARGET}/runner.py", f"{WORK_TARGET}/plan.json"],
            workdir=workdir,
            workdir_target=WORK_TARGET,
            mounts=[Mount(KERNEL_DIR, KERNEL_TARGET), Mount(config.data_dir, DATA_TARGET)],
            env=_sandbox_env(),
            limits=limits,
        )

        def on_line(line: str) -> None:
            event = _parse_event(line)
            if event is None:
                return
            if event.kind == "cell":
                last_cell[0] = event.cell_index
            if on_progress is not None:
                on_progress(Progress(**{**event.__dict__, "elapsed": time.monotonic() - started}))

        t0 = time.monotonic()
        result = sandbox.run(request, on_line=on_line)
        sandbox_seconds = time.monotonic() - t0
        runner, problem = None, None
        if result.sandbox_error is None:
            try:
                runner = read_runner_result(workdir / "out" / "result.json")
            except ResultError as exc:
                problem = str(exc)
        outcome = classify_run(result, runner, problem, last_cell[0], limits.notebook_timeout)
        timings = {"sandbox": sandbox_seconds}
        if runner is not None:
            for key in ("kernel_start", "bootstrap", "cells", "probes"):
                if key in runner.timings:
                    timings[key] = runner.timings[key]
        return Execution(outcome, located, notes, runner, result,
                         _read_executed(workdir / "out" / "executed.ipynb"), timings)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _sandbox_env() -> dict[str, str]:
    return {
        "HOME": "/home/sandbox",
        "TMPDIR": "/tmp",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": "/tmp/ipython",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "KERAS_HOME": "/tmp/keras",
    }


def _parse_event(line: str) -> Progress | None:
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return None

    def integer(key: str) -> int | None:
        value = data.get(key)
        return value if isinstance(value, int) else None

    item, text = data.get("item"), data.get("text")
    return Progress(kind=data["event"][:40], cell_index=integer("index"),
                    position=integer("position"), count=integer("count"),
                    item=item[:80] if isinstance(item, str) else None,
                    text=text[:200] if isinstance(text, str) else None)


def _read_executed(path: Path) -> nbformat.NotebookNode | None:
    try:
        if path.stat().st_size > MAX_EXECUTED_BYTES:
            return None
        return nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    except Exception:  # the student can leave anything there; the notebook is a courtesy
        return None


def mnist_test_labels(config: GraderConfig) -> np.ndarray:
    """MNIST's test labels (host side only), verified once per change of the data file."""
    path = config.data_dir / "mnist.npz"
    return _test_labels(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _test_labels(path: Path, mtime_ns: int) -> np.ndarray:
    from grader.data import load_mnist

    return load_mnist(path).y_test


def load_expected(exercise: Exercise) -> dict[str, Any]:
    """The reference outputs (``grader build-reference``), item id -> probe result."""
    path = exercise.reference_dir / "expected.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run `grader build-reference {exercise.id}` first"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    return data["items"]


def grade_notebook(
    data: bytes,
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    *,
    limits: Limits | None = None,
    on_progress: ProgressCallback | None = None,
) -> GradeReport:
    """Grade a submission given as the bytes of a .ipynb file."""
    started = time.monotonic()
    expected = load_expected(exercise)
    try:
        nb = read_notebook(data)
    except NotebookError as exc:
        return invalid_report(exercise, exc)
    run = execute_notebook(nb, exercise, config, sandbox, limits=limits, on_progress=on_progress)
    return score_execution(run, exercise, config, expected, started)


def score_execution(
    run: Execution,
    exercise: Exercise,
    config: GraderConfig,
    expected: dict[str, Any],
    started: float,
) -> GradeReport:
    t0 = time.monotonic()
    labels = None
    if "mnist" in exercise.runtime.datasets:
        labels = mnist_test_labels(config)
    claimed = None
    accuracy_item = next((i for i in exercise.items if i.compare.kind == "accuracy"), None)
    if exercise.accuracy is not None and accuracy_item is not None:
        where = run.located.get(accuracy_item.id)
        claimed = claimed_accuracy(run.executed, where.index if where else None,
                                   exercise.accuracy.claimed_pattern)
    items = score_items(exercise, run.located, run.runner, expected, labels=labels,
                        claimed_accuracy=claimed, stop_reason=run.outcome.reason)
    measured = None
    if accuracy_item is not None:
        measured = next(i for i in items if i.id == accuracy_item.id).details.get(
            "measured_accuracy")
    timings = dict(run.timings)
    timings["scoring"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - started
    sandbox = run.sandbox
    diagnostics: dict[str, Any] = {
        "bootstrap": run.runner.bootstrap if run.runner else [],
        "located": {k: (v.how if v else None) for k, v in run.located.items()},
    }
    if sandbox is not None:
        diagnostics.update(
            exit_code=sandbox.exit_code, signal=sandbox.signal,
            peak_memory_bytes=sandbox.peak_memory_bytes,
            log_tail=sandbox.stderr[-4000:].decode("utf-8", "replace"),
        )
    return GradeReport(
        exercise=exercise.id,
        status=run.outcome.status,
        items=items,
        max_score=exercise.max_score,
        reason=run.outcome.reason,
        measured_accuracy=measured,
        claimed_accuracy=claimed,
        notes=[n.message for n in run.notes],
        timings=timings,
        diagnostics=diagnostics,
        executed_notebook=nbformat.writes(run.executed) if run.executed is not None else None,
    )


def invalid_report(exercise: Exercise, error: NotebookError) -> GradeReport:
    """The report for a file that is not a runnable notebook: nothing ran, every item 0."""
    text = Text(ja=f"ノートブックとして読み込めません: {error.reason_ja or error.reason}",
                en=f"Not a valid notebook: {error.reason}")
    items = [ItemResult(i.id, i.title, 0.0, i.points, ItemStatus.NOT_REACHED, [text])
             for i in exercise.items]
    return GradeReport(exercise.id, RunStatus.INVALID_NOTEBOOK, items, exercise.max_score,
                       reason=text)
