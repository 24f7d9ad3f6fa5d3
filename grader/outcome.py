"""The one place where sandbox, kernel and runner failures become a run's outcome.

::

    Outcome
    ├── graded            every cell ran (cells may have raised: that is the student's answer)
    ├── timeout           a cell ran past the per-cell limit, or the notebook past its limit
    ├── out_of_memory     the run's cgroup hit its memory limit (the OOM killer ran), or the
    │                     runner's did while a notebook cell ran (what the kernel sent it)
    ├── gpu_out_of_memory a cell raised ResourceExhausted on a run given a GPU (the model or
    │                     batch does not fit the device's memory)
    ├── kernel_died       the kernel process ended (segfault, os._exit, killed)
    ├── invalid_notebook  the file is not a notebook (decided before any sandbox)
    └── sandbox_error     the sandbox could not run, or the runner wrote nothing usable

Like httpx's transport seam: nbclient's exceptions are turned into data by the runner inside its
sandbox, the backends report OS facts of both sandboxes (the kernel's: signal, OOM, wall clock;
the runner's: whether it could run at all), and :func:`classify_run` merges them here, so no
other module guesses an outcome from a string. The runner is the grader's: anything wrong with
it (killed, no result, a result that does not parse) is ``sandbox_error``, which the service
retries, never ``graded`` from what was left behind, with one exception below.

**What the kernel can do to the runner is the student's outcome.** The kernel talks to the
runner over ZMQ and can send anything there. The runner handles or drops every message
(``grader/kernel/channel.py``: malformed ones are dropped and counted, never raised), keeps
outputs, display updates and nothing of comms within the caps, and bounds its own memory
(message size, queue length, decoded size): with an honest or hostile kernel alike it ends with
a record, and the run is ``graded`` (or ``timeout``, ...) with the items reached. One thing ZMQ
cannot bound is a message of many frames, which it holds whole: a kernel can still push the
runner past its memory limit. A runner killed by its memory limit *while a notebook cell (or that
cell's export) ran* is therefore ``out_of_memory`` for that cell, the student's: the runner's
record up to the cell before is kept (items reached keep their scores), and the service does not
run it again. Killed that way anywhere else (bootstrap, waiting for the notebook), or failing in
any other way, the runner stays ``sandbox_error``: a bug of the grader's, which the tests would
show on honest notebooks too. Its reason names the cell that ran, and the service
(``service/queue/grading.py``) takes a sandbox error that repeats the previous attempt's reason
word for word as final, so even an unforeseen kernel-caused failure holds a worker at most
twice.

``gpu_out_of_memory`` is read from the kernel's own error (the runner's record of the cell:
its exception's name), so the student can fake it by raising such an error. That only hurts
them: the outcome changes nothing of the scores (items are judged as on a ``graded`` run), and
the service does not run it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from grader.messages import bilingual
from grader.report import Outcome
from grader.results import RunnerResult
from grader.sandbox.base import SandboxResult
from grader.spec import Text


@dataclass(frozen=True)
class RunOutcome:
    """An :class:`~grader.report.Outcome` with its reason and, where known, its cell."""

    outcome: Outcome
    #: Why the run stopped, for the report and for items not reached; None when graded.
    reason: Text | None
    #: The cell that was running when the run stopped, where known.
    cell_index: int | None = None


def _cell_text(index: int | None) -> Text:
    if index is None:
        return Text(ja="", en="")
    return bilingual("outcome.in_cell", cell=index + 1)


#: What an exception's name or message holds when a device's memory ran out (TensorFlow's
#: ``ResourceExhaustedError``, XLA's ``RESOURCE_EXHAUSTED``, CUDA's out-of-memory error).
GPU_OOM_MARKERS = ("ResourceExhausted", "RESOURCE_EXHAUSTED", "CUDA_ERROR_OUT_OF_MEMORY")


def gpu_oom_cell(runner: RunnerResult) -> int | None:
    """The first cell that failed for want of device memory, if any."""
    for record in runner.cells:
        if record.status == "error" and any(
                marker in (record.ename or "") or (record.evalue or "").startswith(marker)
                for marker in GPU_OOM_MARKERS):
            return record.index
    return None


def classify_run(
    sandbox: SandboxResult,
    runner_sandbox: SandboxResult | None,
    runner: RunnerResult | None,
    result_problem: str | None,
    last_cell: int | None,
    notebook_timeout: float,
    gpu: bool = False,
) -> RunOutcome:
    """Outcome and reason of a run. ``sandbox`` is the kernel's, ``runner_sandbox`` the
    runner's; ``last_cell`` is the last cell the runner's progress stream started; ``gpu``
    whether the kernel was given a GPU (only then is a ``ResourceExhausted`` a GPU's)."""
    for box in (sandbox, runner_sandbox):
        if box is not None and box.sandbox_error:
            return RunOutcome(Outcome.SANDBOX_ERROR, bilingual(
                "outcome.sandbox_failed", error=box.sandbox_error))
    if sandbox.oom_killed:
        return RunOutcome(Outcome.OUT_OF_MEMORY, bilingual(
            "outcome.out_of_memory", where=_cell_text(last_cell)), last_cell)
    if sandbox.timed_out:
        return RunOutcome(Outcome.TIMEOUT, bilingual(
            "outcome.notebook_timeout", limit=notebook_timeout, where=_cell_text(last_cell)),
            last_cell)
    # ``runner.status`` is the runner's own record of where it stopped (``grader/results.py``,
    # written inside the sandbox), a fact read here, not the run's outcome.
    if runner is not None and runner.status == "timeout":
        if runner.timeout_cell is not None and runner.timeout_budget is not None:
            return RunOutcome(Outcome.TIMEOUT, bilingual(
                "outcome.cell_budget", budget=runner.timeout_budget,
                where=_cell_text(runner.timeout_cell)), runner.timeout_cell)
        return RunOutcome(Outcome.TIMEOUT, bilingual(
            "outcome.cell_timeout", where=_cell_text(runner.timeout_cell)), runner.timeout_cell)
    if runner is not None and runner.status == "kernel_died":
        index = runner.died_cell if runner.died_cell is not None else last_cell
        return RunOutcome(Outcome.KERNEL_DIED, bilingual(
            "outcome.kernel_died", where=_cell_text(index)), index)
    if (runner_sandbox is not None and runner_sandbox.oom_killed and runner is not None
            and last_cell is not None):  # what the kernel sent it: the student's (docstring)
        return RunOutcome(Outcome.OUT_OF_MEMORY, bilingual(
            "outcome.runner_flooded", where=_cell_text(last_cell)), last_cell)
    runner_broke = runner_sandbox is not None and (
        runner_sandbox.oom_killed or runner_sandbox.timed_out or runner_sandbox.exit_code != 0)
    if runner is None or runner.status in ("runner_error", "running") or runner_broke:
        detail = result_problem or (
            f"{runner.error.ename}: {runner.error.evalue}" if runner and runner.error else
            "the run ended early"
        )
        if runner_sandbox is not None and runner_sandbox.signal is not None:
            detail += f" (signal {runner_sandbox.signal})"
        if last_cell is not None:
            return RunOutcome(Outcome.SANDBOX_ERROR, bilingual(
                "outcome.no_result_in_cell", detail=detail, where=_cell_text(last_cell)),
                last_cell)
        return RunOutcome(Outcome.SANDBOX_ERROR, bilingual(
            "outcome.no_result", detail=detail), last_cell)
    if gpu and (oom_cell := gpu_oom_cell(runner)) is not None:
        return RunOutcome(Outcome.GPU_OUT_OF_MEMORY, bilingual(
            "outcome.gpu_out_of_memory", where=_cell_text(oom_cell)), oom_cell)
    return RunOutcome(Outcome.GRADED, None)
