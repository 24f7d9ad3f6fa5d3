"""Running the solution: ``grader build-reference`` and ``grader calibrate``.

``build_reference`` runs the solution through the same sandboxes as a submission and keeps
what it exported and what the clean room measured of it (the files themselves, and their
reading, are :mod:`grader.reference`); nobody types expected values by hand.
``calibrate_accuracy`` runs the solution with several seeds to see how its accuracy spreads,
which is how the accuracy threshold in ``exercise.toml`` is chosen.

Apart from :mod:`grader.reference` because this drives the pipeline, which itself reads the
reference: together they would import each other.
"""

from __future__ import annotations

import copy
import re
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grader.budgets import CellTiming
from grader.comparators.accuracy import counted_accuracy
from grader.config import GraderConfig
from grader.data.perturb import source_name
from grader.exports import GraphExport, KerasExport
from grader.measurements import MeasurementFailure
from grader.notebook import read_notebook
from grader.pipeline import Execution, ProgressCallback, execute_notebook, score_execution
from grader.reference import solution_path, write_expected
from grader.report import Outcome
from grader.sandbox.base import Sandbox
from grader.spec import Exercise


class ReferenceBuildError(RuntimeError):
    """The solution did not run cleanly, so no reference can be made from it."""


def _check_clean(run: Execution, exercise: Exercise) -> None:
    if run.outcome.outcome is not Outcome.GRADED:
        reason = run.outcome.reason.en if run.outcome.reason else ""
        raise ReferenceBuildError(f"the solution ended with {run.outcome.outcome}: {reason}")
    assert run.runner is not None
    for item in exercise.items:
        where = run.located.get(item.id)
        if where is None:
            raise ReferenceBuildError(f"the solution has no cell for item {item.id}")
        cell = run.runner.cell(where.index)
        if cell is None or cell.status != "ok":
            detail = f"{cell.ename}: {cell.evalue}" if cell else "not run"
            raise ReferenceBuildError(f"the solution's cell for {item.id} failed: {detail}")
        if item.extract.export == "function":
            continue  # no export: measured from the source, judged by the score below
        export = run.exports.get(item.id)
        if not isinstance(export, GraphExport | KerasExport):
            raise ReferenceBuildError(f"the solution's export for {item.id} is unusable: {export}")
        measured = run.measured.get(item.id, "student") if run.measured else None
        if measured is None or isinstance(measured, MeasurementFailure):
            raise ReferenceBuildError(f"the clean room could not measure {item.id} of the "
                                 f"solution: {measured}")


def build_reference(
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    *,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Run the solution, keep its exports as ``reference/<id>/exports/`` and write
    ``expected.json`` (what the clean room measured of them); return its path.

    The solution is graded against its own exports, and must earn full marks: a reference
    that its own grader would fail is refused."""
    source = solution_path(exercise)
    data = source.read_bytes()
    staging = exercise.reference_dir / "exports.new"
    shutil.rmtree(staging, ignore_errors=True)
    started = time.monotonic()
    run = execute_notebook(read_notebook(data), exercise, config, sandbox,
                           on_progress=on_progress, keep_exports=staging, self_reference=True,
                           budgets=False)
    try:
        _check_clean(run, exercise)
        report = score_execution(run, exercise, config, started)
        short = [f"{i.id} {i.score:g}/{i.max_score:g}: " + " / ".join(t.en for t in i.feedback)
                 for i in report.items if i.score < i.max_score]
        if short:
            raise ReferenceBuildError("the solution does not earn full marks against itself: "
                                 + "; ".join(short))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    target_dir = exercise.reference_dir / "exports"
    shutil.rmtree(target_dir, ignore_errors=True)
    staging.rename(target_dir)
    return write_expected(exercise, report, data, cell_timings(run))


def cell_timings(run: Execution) -> list[CellTiming]:
    """Each code cell the solution ran: its index, the items it answers and its seconds
    (rounded to 0.1 s), from which submissions' per-cell budgets derive."""
    assert run.runner is not None
    answers: dict[int, list[str]] = {}
    for item_id, where in run.located.items():
        if where is not None:
            answers.setdefault(where.index, []).append(item_id)
    return [CellTiming(cell.index, tuple(answers.get(cell.index, ())),
                       round(cell.seconds or 0.0, 1)) for cell in run.runner.cells]


SEED_PATTERNS = [
    re.compile(r"(RandomState\()(\d+)(\))"),
    re.compile(r"(random_state\s*=\s*)(\d+)()"),
    re.compile(r"((?:set_random_seed|random\.seed|set_seed)\()(\d+)(\))"),
]


def reseed(source: str, offset: int) -> str:
    """The solution's source with every literal seed shifted by ``offset``."""
    for pattern in SEED_PATTERNS:
        source = pattern.sub(lambda m: f"{m.group(1)}{int(m.group(2)) + offset}{m.group(3)}",
                             source)
    return source


@dataclass(frozen=True)
class Calibration:
    accuracies: list[float]
    #: The solution's total score in each run (full marks expected every time).
    scores: list[float] = field(default_factory=list)
    #: Each run's accuracy on every image set measured (plain and moved, by set name).
    sets: list[dict[str, float]] = field(default_factory=list)

    @property
    def error_ratios(self) -> list[float]:
        """Per run, the moved copies' error (of the lower moved set) over the plain sets' (of
        the lower plain set), :mod:`grader.data.perturb`: what a moved pixel does to an honest
        CNN."""
        ratios = []
        for run in self.sets:
            plain = [a for n, a in run.items() if source_name(n) == n]
            moved = [a for n, a in run.items() if source_name(n) != n]
            if plain and moved and min(plain) < 1:
                ratios.append((1 - min(moved)) / (1 - min(plain)))
        return ratios

    def suggested_error_ratio(self, margin_stdevs: float = 3.0, step: float = 0.25
                              ) -> float | None:
        """``max(mean + k*stdev, max + step)`` of the error ratios, rounded up to ``step``:
        the reference's moved copies stay within it in nearly every run, a lookup's do not."""
        ratios = self.error_ratios
        if not ratios:
            return None
        spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
        raw = max(statistics.fmean(ratios) + margin_stdevs * spread, max(ratios) + step)
        return float(np.ceil(round(raw / step, 6)) * step)

    def recounted(self, moved_error_ratio: float) -> Calibration:
        """The same runs with each counted figure taken again under ``moved_error_ratio``
        (:func:`~grader.comparators.accuracy.counted_accuracy`): the runs were scored under the
        spec's ratio, the default 1 for an exercise not yet calibrated, which counts the moved
        copies' accuracy itself and so suggests a threshold below the one the suggested ratio
        calls for. Runs without the image sets keep their figure."""
        accuracies = [counted_accuracy(found, moved_error_ratio) if found else accuracy
                      for accuracy, found in zip(self.accuracies, self.sets, strict=False)]
        return Calibration(accuracies, self.scores, self.sets)

    @property
    def summary(self) -> dict[str, float]:
        values = self.accuracies
        return {
            "runs": len(values),
            "min": min(values),
            "max": max(values),
            "mean": statistics.fmean(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        }

    def suggested_threshold(self, margin_stdevs: float = 3.0, step: float = 0.005) -> float:
        """``min(mean - k*stdev, min - step)`` rounded down to ``step``: the reference clears it
        in nearly every run, a model trained a few epochs short does not."""
        s = self.summary
        raw = min(s["mean"] - margin_stdevs * s["stdev"], s["min"] - step)
        return float(np.floor(raw / step) * step)


def calibrate_accuracy(
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    runs: int,
    *,
    on_run: Any = None,
    on_progress: ProgressCallback | None = None,
) -> Calibration:
    """Grade the solution ``runs`` times with shifted seeds: the measured accuracies (the
    accuracy item's counted figure: the lower of test and held-out, unless the moved copies
    got more than ``moved_error_ratio`` times the plain error wrong), each image set's accuracy,
    and the scores."""
    nb = read_notebook(solution_path(exercise).read_bytes())
    accuracies: list[float] = []
    scores: list[float] = []
    sets: list[dict[str, float]] = []
    accuracy_ids = [i.id for i in exercise.items if i.compare.kind == "accuracy"]
    for offset in range(runs):
        variant = copy.deepcopy(nb)
        for cell in variant.cells:
            if cell.cell_type == "code":
                cell.source = reseed(cell.source, offset)
        started = time.monotonic()
        run = execute_notebook(variant, exercise, config, sandbox, on_progress=on_progress)
        _check_clean(run, exercise)
        report = score_execution(run, exercise, config, started)
        if report.measured_accuracy is None:
            raise ReferenceBuildError(f"run {offset + 1}: no accuracy was measured")
        accuracies.append(report.measured_accuracy)
        scores.append(report.score)
        found = report.item(accuracy_ids[0]).details.get("accuracies") if accuracy_ids else None
        sets.append(dict(found) if isinstance(found, dict) else {})
        if on_run is not None:
            on_run(offset, report.measured_accuracy, report)
    return Calibration(accuracies, scores, sets)
