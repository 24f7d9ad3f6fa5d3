"""Running a notebook: the student's kernel in one sandbox, the grader's runner in another.

The kernel (a plain ipykernel) runs as the student's user with the student's data set and a
private, size-limited ``/job``; it is started first, and lends its loopback network to the
runner (``grader/kernel/runner.py``, nbclient), which runs as the grader's user, executes the
cells, asks the kernel for each item's export, and writes what it saw into its own folder, which
the kernel cannot see. The host tells the runner when the kernel's sandbox has ended
(``out/control/kernel-exited``), and classifies the run from both sandboxes' facts and the
runner's record (:func:`grader.outcome.classify_run`).
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grader.config import GraderConfig
from grader.data import sandbox_data_dir
from grader.kernel.plan import BootstrapConfig, ExportStep, KernelConnection, RunPlan
from grader.limits import GiB, Limits
from grader.locate import Located
from grader.outcome import RunOutcome, classify_run
from grader.results import ResultError, RunnerResult, read_runner_result
from grader.sandbox.base import Mount, Sandbox, SandboxRequest, SandboxResult, SandboxUser
from grader.spec import Exercise

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
            for item in exercise.items if (where := located.get(item.id)) is not None]


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


def kernel_connection() -> KernelConnection:
    """Fresh loopback ports and a fresh message key for one run's kernel."""
    shell, iopub, stdin, control, hb = free_ports(5)
    return KernelConnection(ip="127.0.0.1", transport="tcp", shell_port=shell,
                            iopub_port=iopub, stdin_port=stdin, control_port=control,
                            hb_port=hb, key=secrets.token_hex(32),
                            signature_scheme="hmac-sha256")


def kernel_argv(connection: KernelConnection) -> list[str]:
    """The student's kernel: a plain ipykernel bound to the given loopback ports."""
    return [sys.executable, "-m", "ipykernel_launcher", f"--ip={connection.ip}",
            "--transport=tcp", f"--shell={connection.shell_port}",
            f"--iopub={connection.iopub_port}", f"--stdin={connection.stdin_port}",
            f"--control={connection.control_port}", f"--hb={connection.hb_port}",
            f"--Session.key={connection.key}",
            f"--Session.signature_scheme={connection.signature_scheme}",
            "--IPKernelApp.connection_file=/tmp/jupyter-runtime/kernel.json"]


def run_notebook(
    nb: nbformat.NotebookNode,
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    limits: Limits,
    located: dict[str, Located | None],
    rundir: Path,
    started: float,
    on_progress: ProgressCallback | None,
    cell_budgets: dict[int, float] | None = None,
) -> NotebookRun:
    """Run ``nb`` in the student's kernel sandbox, driven by the runner in the grader's
    sandbox (``rundir/runner`` is the runner's folder); what both saw, classified.
    ``cell_budgets``: seconds per code cell (:mod:`grader.budgets`), ``limits.cell_timeout``
    for a cell without one."""
    workdir = rundir / "runner"
    (workdir / "out" / "control").mkdir(parents=True)
    nbformat.write(nb, workdir / "submission.ipynb")
    connection = kernel_connection()
    plan = RunPlan(
        notebook="submission.ipynb",
        out="out",
        connection=connection,
        cell_timeout=limits.cell_timeout,
        cell_budgets={i: min(s, limits.cell_timeout) for i, s in (cell_budgets or {}).items()},
        cell_output_bytes=limits.cell_output_bytes,
        notebook_output_bytes=limits.notebook_output_bytes,
        bootstrap=BootstrapConfig(
            tf1=exercise.runtime.tf1,
            datasets={n: f"{DATA_TARGET}/{n}.npz" for n in exercise.runtime.datasets},
        ),
        exports=plan_exports(exercise, located),
    )
    (workdir / "plan.json").write_text(plan.model_dump_json())
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
            return NotebookRun(outcome, None, result, None, {})
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
    # a backend lending GPUs says so (DockerSandbox.gpu_devices); the others have none
    gpu = bool(getattr(sandbox, "gpu_devices", ()))
    outcome = classify_run(kernel_sandbox, runner_sandbox, runner, problem, last_cell[0],
                           limits.notebook_timeout, gpu=gpu)
    timings = {"sandbox": seconds}
    if runner is not None:
        for key in ("kernel_start", "bootstrap", "cells", "exports"):
            if key in runner.timings:
                timings[key] = runner.timings[key]
    return NotebookRun(outcome, runner, kernel_sandbox,
                       _read_executed(workdir / "out" / "executed.ipynb"), timings)


def _failed(reason: str) -> SandboxResult:
    from grader.sandbox.process import error_result

    return error_result(reason)


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


