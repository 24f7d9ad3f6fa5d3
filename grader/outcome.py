"""The one place where sandbox, kernel and runner failures become a run status.

::

    RunStatus
    ├── graded            every cell ran (cells may have raised: that is the student's answer)
    ├── timeout           a cell ran past the per-cell limit, or the notebook past its limit
    ├── out_of_memory     the run's cgroup hit its memory limit (the OOM killer ran)
    ├── kernel_died       the kernel process ended (segfault, os._exit, killed)
    ├── invalid_notebook  the file is not a notebook (decided before any sandbox)
    └── sandbox_error     the sandbox could not run, or the runner wrote nothing usable

Like httpx's transport seam: nbclient's exceptions are turned into data by the runner inside its
sandbox, the backends report OS facts of both sandboxes (the kernel's: signal, OOM, wall clock;
the runner's: whether it could run at all), and :func:`classify_run` merges them here, so no
other module guesses a status from a string. The runner is the grader's: anything wrong with
it (killed, out of memory, no result, a result that does not parse) is ``sandbox_error``, which
the service retries, never ``graded`` from what was left behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from grader.report import RunStatus
from grader.results import RunnerResult
from grader.sandbox.base import SandboxResult
from grader.spec import Text


@dataclass(frozen=True)
class RunOutcome:
    status: RunStatus
    #: Why the run stopped, for the report and for items not reached; None when graded.
    reason: Text | None
    #: The cell that was running when the run stopped, where known.
    cell_index: int | None = None


def _cell_text(index: int | None) -> tuple[str, str]:
    if index is None:
        return "", ""
    return f"（セル {index + 1}）", f" (cell {index + 1})"


def classify_run(
    sandbox: SandboxResult,
    runner_sandbox: SandboxResult | None,
    runner: RunnerResult | None,
    result_problem: str | None,
    last_cell: int | None,
    notebook_timeout: float,
) -> RunOutcome:
    """Status and reason of a run. ``sandbox`` is the kernel's, ``runner_sandbox`` the
    runner's; ``last_cell`` is the last cell the runner's progress stream started."""
    for box in (sandbox, runner_sandbox):
        if box is not None and box.sandbox_error:
            return RunOutcome(RunStatus.SANDBOX_ERROR, Text(
                ja=f"採点環境を起動できませんでした: {box.sandbox_error}",
                en=f"The sandbox could not run: {box.sandbox_error}",
            ))
    if sandbox.oom_killed:
        ja, en = _cell_text(last_cell)
        return RunOutcome(RunStatus.OUT_OF_MEMORY, Text(
            ja=f"メモリの上限を超えたため停止しました{ja}。",
            en=f"The notebook ran out of memory and was stopped{en}.",
        ), last_cell)
    if sandbox.timed_out:
        ja, en = _cell_text(last_cell)
        return RunOutcome(RunStatus.TIMEOUT, Text(
            ja=f"ノートブック全体の制限時間 {notebook_timeout:.0f} 秒を超えました{ja}。",
            en=f"The notebook ran past its {notebook_timeout:.0f} s limit{en}.",
        ), last_cell)
    if runner is not None and runner.status == "timeout":
        ja, en = _cell_text(runner.timeout_cell)
        return RunOutcome(RunStatus.TIMEOUT, Text(
            ja=f"セルの制限時間を超えました{ja}。無限ループや長すぎる学習がないか確認してください。",
            en=f"A cell ran past its time limit{en}: look for an endless loop or overlong "
            "training.",
        ), runner.timeout_cell)
    if runner is not None and runner.status == "kernel_died":
        index = runner.died_cell if runner.died_cell is not None else last_cell
        ja, en = _cell_text(index)
        return RunOutcome(RunStatus.KERNEL_DIED, Text(
            ja=f"カーネルが停止しました{ja}（プロセスの強制終了やクラッシュ）。",
            en=f"The kernel died{en} (the process crashed or exited).",
        ), index)
    runner_broke = runner_sandbox is not None and (
        runner_sandbox.oom_killed or runner_sandbox.timed_out or runner_sandbox.exit_code != 0)
    if runner is None or runner.status in ("runner_error", "running") or runner_broke:
        detail = result_problem or (
            f"{runner.error.ename}: {runner.error.evalue}" if runner and runner.error else
            "the run ended early"
        )
        if runner_sandbox is not None and runner_sandbox.signal is not None:
            detail += f" (signal {runner_sandbox.signal})"
        return RunOutcome(RunStatus.SANDBOX_ERROR, Text(
            ja=f"実行結果を得られませんでした: {detail}",
            en=f"The run produced no usable result: {detail}",
        ), last_cell)
    return RunOutcome(RunStatus.GRADED, None)
