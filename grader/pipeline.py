"""Grading one notebook, as an ordered list of small steps (nbgrader's habit).

    read -> sanitise -> locate cells -> read their sources -> run the notebook
         -> check the exports -> measure them in the clean room -> classify the outcome
         -> score items -> report

Running the notebook takes two sandboxes side by side: the student's kernel (a plain ipykernel,
as the student's user, with the data set and a private size-limited ``/job``), and the grader's
runner (nbclient, as the grader's user), which joins the kernel's loopback network, executes the
cells, asks the kernel to export each answer and writes what it saw where the kernel cannot
reach. Then a third, fresh sandbox, the clean room (:mod:`grader.clean_room`), measures the
exports on inputs the kernel never saw. What the kernel says is never a measurement: see
``docs/security.md``.

:func:`execute_notebook` stops after the measurements (``grader build-reference`` uses it on the
solution); :func:`grade_notebook` goes on to score. Neither raises for anything a student can
do: every path ends in a :class:`~grader.report.GradeReport` with a status.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from grader.artefacts import ArtefactError, GraphExport, ValueExport, read_artefact
from grader.clean_room import ImageSets, Measured, measure_artefacts, plan_jobs
from grader.config import GraderConfig
from grader.limits import GiB, Limits
from grader.locate import Located, locate_items
from grader.notebook import NotebookError, read_notebook, strip_outputs
from grader.outcome import RunOutcome, classify_run
from grader.report import GradeReport, ItemResult, ItemStatus, RunStatus
from grader.results import ResultError, RunnerResult, read_runner_result
from grader.sandbox.base import Mount, Sandbox, SandboxRequest, SandboxResult, SandboxUser
from grader.sanitize import Neutralised, sanitize_notebook
from grader.scoring import Evidence, claimed_accuracy, score_items
from grader.sourcecheck import SourceFacts, read_cell
from grader.spec import Exercise, Text

KERNEL_DIR = Path(__file__).resolve().parent / "kernel"
KERNEL_TARGET = "/opt/grader/kernel"
DATA_TARGET = "/data"
WORK_TARGET = "/job"
MAX_EXECUTED_BYTES = 32 * 1024 * 1024
#: The runner is the grader's own small process: it needs little, whatever the exercise.
RUNNER_MEMORY = 2 * GiB
#: Seconds the runner may outlive the kernel's notebook limit (to write what it saw).
RUNNER_GRACE = 60.0


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
class Execution:
    """Everything a run produced, before scoring."""

    outcome: RunOutcome
    located: dict[str, Located | None]
    notes: list[Neutralised] = field(default_factory=list)
    runner: RunnerResult | None = None
    sandbox: SandboxResult | None = None
    executed: nbformat.NotebookNode | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Item id -> what the cell's source says (host-side facts).
    sources: dict[str, SourceFacts] = field(default_factory=dict)
    #: Item id -> the checked export, or the reason it is unusable.
    exports: dict[str, GraphExport | ValueExport | str] = field(default_factory=dict)
    #: Item id -> host path of the export file (kept for the clean room and the reference).
    export_files: dict[str, Path] = field(default_factory=dict)
    measured: Measured | None = None


def plan_exports(exercise: Exercise, located: dict[str, Located | None]) -> list[dict[str, Any]]:
    """Export instructions for the runner: only what to export and after which cell."""
    exports = []
    for item in exercise.items:
        where = located.get(item.id)
        if where is None:
            continue
        exports.append({"item": item.id, "cell": where.index, "export": item.extract.export,
                        "fresh": item.extract.fresh, "args": dict(item.extract.args)})
    return exports


def free_ports(count: int) -> list[int]:
    """Ports free on this host's loopback now (the kernel's own network is fresh anyway)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def kernel_connection() -> dict[str, Any]:
    import secrets

    shell, iopub, stdin, control, hb = free_ports(5)
    return {"ip": "127.0.0.1", "transport": "tcp", "shell_port": shell, "iopub_port": iopub,
            "stdin_port": stdin, "control_port": control, "hb_port": hb,
            "key": secrets.token_hex(32), "signature_scheme": "hmac-sha256"}


def kernel_argv(connection: dict[str, Any]) -> list[str]:
    """The student's kernel: a plain ipykernel bound to the given loopback ports."""
    return [sys.executable, "-m", "ipykernel_launcher", f"--ip={connection['ip']}",
            "--transport=tcp", f"--shell={connection['shell_port']}",
            f"--iopub={connection['iopub_port']}", f"--stdin={connection['stdin_port']}",
            f"--control={connection['control_port']}", f"--hb={connection['hb_port']}",
            f"--Session.key={connection['key']}",
            f"--Session.signature_scheme={connection['signature_scheme']}",
            "--IPKernelApp.connection_file=/tmp/jupyter-runtime/kernel.json"]


def execute_notebook(
    nb: nbformat.NotebookNode,
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    *,
    limits: Limits | None = None,
    on_progress: ProgressCallback | None = None,
    measure: bool = True,
    keep_exports: Path | None = None,
    self_reference: bool = False,
) -> Execution:
    """Run a (parsed) notebook and measure its exports in the clean room.

    ``keep_exports``: a folder to copy the checked exports into; ``self_reference``: measure
    them against themselves instead of the reference's (both for ``build-reference``)."""
    limits = limits or exercise.limits
    started = time.monotonic()
    nb = strip_outputs(nb)
    notes = sanitize_notebook(nb)
    located = locate_items(nb, exercise)
    sources = {item_id: read_cell(nb.cells[where.index].source)
               for item_id, where in located.items() if where is not None}
    from grader.sandbox.staging import create_run_dir

    with create_run_dir() as rundir:
        run = _run_notebook(nb, exercise, config, sandbox, limits, located, rundir, started,
                            on_progress)
        run.notes, run.sources = notes, sources
        _check_exports(run, rundir / "runner" / "out" / "artefacts")
        if keep_exports is not None:
            keep_exports.mkdir(parents=True, exist_ok=True)
            for item_id, path in run.export_files.items():
                shutil.copyfile(path, keep_exports / f"{item_id}.json")
        if measure and run.outcome.status is not RunStatus.SANDBOX_ERROR:
            if on_progress is not None:
                on_progress(Progress("measuring", elapsed=time.monotonic() - started))
            run.measured = measure_execution(run, exercise, config, sandbox, rundir,
                                             self_reference=self_reference)
            run.timings["cleanroom"] = run.measured.seconds
    return run


def _run_notebook(
    nb: nbformat.NotebookNode,
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    limits: Limits,
    located: dict[str, Located | None],
    rundir: Path,
    started: float,
    on_progress: ProgressCallback | None,
) -> Execution:
    from grader.data import sandbox_data_dir

    workdir = rundir / "runner"
    (workdir / "out" / "control").mkdir(parents=True)
    nbformat.write(nb, workdir / "submission.ipynb")
    connection = kernel_connection()
    plan = {
        "notebook": "submission.ipynb",
        "out": "out",
        "connection": connection,
        "cell_timeout": limits.cell_timeout,
        "cell_output_bytes": limits.cell_output_bytes,
        "notebook_output_bytes": limits.notebook_output_bytes,
        "bootstrap": {
            "tf1": exercise.runtime.tf1,
            "datasets": {n: f"{DATA_TARGET}/{n}.npz" for n in exercise.runtime.datasets},
        },
        "exports": plan_exports(exercise, located),
    }
    (workdir / "plan.json").write_text(json.dumps(plan))
    kernel_request = SandboxRequest(
        argv=kernel_argv(connection),
        workdir=None,
        workdir_target=WORK_TARGET,
        mounts=[Mount(sandbox_data_dir(config.data_dir), DATA_TARGET)],
        env=_kernel_env(),
        limits=limits,
        user=SandboxUser.STUDENT,
    )
    last_cell: list[int | None] = [None]

    def on_line(line: str) -> None:
        event = _parse_event(line)
        if event is None:
            return
        if event.kind == "cell":
            last_cell[0] = event.cell_index
        if on_progress is not None:
            on_progress(Progress(**{**event.__dict__, "elapsed": time.monotonic() - started}))

    t0 = time.monotonic()
    exited = workdir / "out" / "control" / "kernel-exited"
    with sandbox.start(kernel_request) as kernel:
        kernel_result: list[SandboxResult] = []

        def watch() -> None:
            kernel_result.append(kernel.wait())
            exited.touch()

        watcher = threading.Thread(target=watch, name="kernel-watch", daemon=True)
        watcher.start()
        try:
            peer = kernel.network_peer()
        except Exception as exc:  # the kernel's sandbox never came up
            kernel.stop()
            watcher.join()
            result = kernel_result[0] if kernel_result else None
            reason = (result.sandbox_error if result and result.sandbox_error else str(exc))
            outcome = classify_run(_failed(reason), None, None, None, None,
                                   limits.notebook_timeout)
            return Execution(outcome, located, sandbox=result)
        runner_request = SandboxRequest(
            argv=[sys.executable, f"{KERNEL_TARGET}/runner.py", "plan.json"],
            workdir=workdir,
            workdir_target=WORK_TARGET,
            mounts=[Mount(KERNEL_DIR, KERNEL_TARGET)],
            env={"PYTHONDONTWRITEBYTECODE": "1", "JUPYTER_PLATFORM_DIRS": "1",
                 "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime", "IPYTHONDIR": "/tmp/ipython"},
            limits=limits.replace(memory_bytes=RUNNER_MEMORY,
                                  notebook_timeout=limits.notebook_timeout + RUNNER_GRACE),
            user=SandboxUser.GRADER,
            join_network=peer,
        )
        runner_sandbox = sandbox.run(runner_request, on_line=on_line)
        kernel.stop()
        watcher.join()
    kernel_sandbox = kernel_result[0]
    seconds = time.monotonic() - t0
    runner, problem = None, None
    if runner_sandbox.sandbox_error is None:
        try:
            runner = read_runner_result(workdir / "out" / "result.json")
        except ResultError as exc:
            problem = str(exc)
    outcome = classify_run(kernel_sandbox, runner_sandbox, runner, problem, last_cell[0],
                           limits.notebook_timeout)
    timings = {"sandbox": seconds}
    if runner is not None:
        for key in ("kernel_start", "bootstrap", "cells", "exports"):
            if key in runner.timings:
                timings[key] = runner.timings[key]
    return Execution(outcome, located, [], runner, kernel_sandbox,
                     _read_executed(workdir / "out" / "executed.ipynb"), timings)


def _failed(reason: str) -> SandboxResult:
    from grader.sandbox.process import error_result

    return error_result(reason)


def _check_exports(run: Execution, folder: Path) -> None:
    """Check each export the runner recorded; keep the usable ones, the reason for the rest."""
    if run.runner is None:
        return
    for item_id, record in run.runner.exports.items():
        if record.file is None:
            error = record.error
            run.exports[item_id] = f"{error.ename}: {error.evalue}" if error else "no export"
            continue
        path = folder / record.file
        try:
            run.exports[item_id] = read_artefact(path)
        except ArtefactError as exc:
            run.exports[item_id] = str(exc)
            continue
        run.export_files[item_id] = path


def measure_execution(run: Execution, exercise: Exercise, config: GraderConfig,
                      sandbox: Sandbox, rundir: Path, *, self_reference: bool = False
                      ) -> Measured:
    """Measure the run's graph exports, beside the reference's, in the clean room."""
    student = {item_id: path for item_id, path in run.export_files.items()
               if isinstance(run.exports.get(item_id), GraphExport)
               and _cell_can_answer(run, item_id)}
    reference = dict(student) if self_reference else reference_artefacts(exercise)
    jobs = plan_jobs(exercise, student, reference)
    images = None
    if any(job.measure == "predictions" for job in jobs):
        images = ImageSets(evaluation_images(config))
    return measure_artefacts(jobs, sandbox, rundir / "cleanroom", images=images)


def _cell_can_answer(run: Execution, item_id: str) -> bool:
    facts = run.sources.get(item_id)
    return facts is not None and facts.syntax_error is None


def reference_artefacts(exercise: Exercise) -> dict[str, Path]:
    """Item id -> the reference solution's export (``grader build-reference`` writes them)."""
    folder = exercise.reference_dir / "artefacts"
    return {item.id: folder / f"{item.id}.json" for item in exercise.items
            if (folder / f"{item.id}.json").is_file()}


def _kernel_env() -> dict[str, str]:
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
    except Exception:  # the kernel shaped its outputs; the notebook is a courtesy
        return None


def mnist_test_labels(config: GraderConfig) -> np.ndarray:
    """MNIST's test labels (host side only), verified once per change of the data file."""
    return _mnist(config.data_dir / "mnist.npz").y_test


def evaluation_images(config: GraderConfig) -> dict[str, np.ndarray]:
    """The images the trained model is measured on: the 10,000 test images and the training
    images kept back from the student's sandbox (``docs/data.md``)."""
    from grader.data import load_holdout

    return {"test": _mnist(config.data_dir / "mnist.npz").x_test,
            "holdout": load_holdout(config.data_dir)[0]}


def evaluation_labels(config: GraderConfig) -> dict[str, np.ndarray]:
    """Their labels, which never leave the host."""
    from grader.data import load_holdout

    return {"test": mnist_test_labels(config), "holdout": load_holdout(config.data_dir)[1]}


def _mnist(path: Path) -> Any:
    return _load_mnist(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load_mnist(path: Path, mtime_ns: int) -> Any:
    from grader.data import load_mnist

    return load_mnist(path)


def require_reference(exercise: Exercise) -> None:
    """``FileNotFoundError`` naming the command to run when the reference's exports are
    missing (``grader build-reference`` makes them)."""
    if not (exercise.reference_dir / "expected.json").exists() or not reference_artefacts(
            exercise):
        raise FileNotFoundError(
            f"the reference of {exercise.id} is missing: run `grader build-reference "
            f"{exercise.id}` first")


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
    require_reference(exercise)
    try:
        nb = read_notebook(data)
    except NotebookError as exc:
        return invalid_report(exercise, exc)
    run = execute_notebook(nb, exercise, config, sandbox, limits=limits, on_progress=on_progress)
    return score_execution(run, exercise, config, started)


def score_execution(
    run: Execution,
    exercise: Exercise,
    config: GraderConfig,
    started: float,
) -> GradeReport:
    t0 = time.monotonic()
    claimed = None
    accuracy_item = next((i for i in exercise.items if i.compare.kind == "accuracy"), None)
    labels = evaluation_labels(config) if accuracy_item is not None else None
    if exercise.accuracy is not None and accuracy_item is not None:
        where = run.located.get(accuracy_item.id)
        claimed = claimed_accuracy(run.executed, where.index if where else None,
                                   exercise.accuracy.claimed_pattern)
    evidence = Evidence(located=run.located, runner=run.runner, sources=run.sources,
                        exports=run.exports, measured=run.measured, labels=labels,
                        claimed_accuracy=claimed, stop_reason=run.outcome.reason)
    items = score_items(exercise, evidence)
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
    if run.measured is not None:
        diagnostics["cleanroom_runs"] = run.measured.runs
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
