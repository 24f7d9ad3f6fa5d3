"""Grading one notebook, as an ordered list of small steps (nbgrader's habit).

    read -> sanitise -> locate cells -> read their sources -> run the notebook
         -> check the exports -> measure them in the clean room -> classify the outcome
         -> score items -> report

Running the notebook takes two sandboxes side by side (:mod:`grader.notebook_run`): the
student's kernel, and the grader's runner, which asks the kernel to export each answer. Then a
third, fresh sandbox, the clean room (:mod:`grader.clean_room`), measures the exports on inputs
the kernel never saw. What the kernel says is never a measurement: see ``docs/security.md``.

:func:`execute_notebook` stops after the measurements (``grader build-reference`` uses it on the
solution); :func:`grade_notebook` goes on to score. Neither raises for anything a student can
do: every path ends in a :class:`~grader.report.GradeReport` with an outcome.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from grader.clean_room import ImageSets, Measured, WarmCleanRoom, measure_exports, plan_jobs
from grader.comparators import prepare_inputs
from grader.config import GraderConfig
from grader.data import evaluation_images
from grader.deadline import Deadline
from grader.exports import ExportError, GraphExport, KerasExport, ValueExport, read_export
from grader.function_room import FunctionMeasured, function_items, measure_functions
from grader.kit import Kit, start_kit
from grader.limits import Limits
from grader.locate import Located
from grader.messages import bilingual
from grader.notebook import NotebookError, read_notebook
from grader.notebook_run import Progress, ProgressCallback, run_notebook
from grader.outcome import RunOutcome
from grader.preparation import DEFAULT_HOST_LIMITS, HostLimits, prepare_submission, results_deadline
from grader.reference import reference_exports, reference_timings, require_reference
from grader.report import GradeReport, ItemResult, ItemStatus, Outcome
from grader.results import RunnerResult
from grader.sandbox.base import Sandbox, SandboxResult
from grader.sanitize import Neutralised
from grader.scoring import Evidence, model_fingerprint, score_items
from grader.sourcecheck import SourceFacts
from grader.spec import Exercise, Text

logger = logging.getLogger(__name__)


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
    exports: dict[str, GraphExport | KerasExport | ValueExport | str] = field(
        default_factory=dict)
    #: Item id -> host path of the export file (kept for the clean room and the reference).
    export_files: dict[str, Path] = field(default_factory=dict)
    measured: Measured | None = None
    #: Function items (no kernel involved): item id -> what the function rooms measured.
    functions: dict[str, FunctionMeasured] = field(default_factory=dict)


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
    budgets: bool = True,
    kit: Kit | None = None,
    on_executed: Callable[[nbformat.NotebookNode], None] | None = None,
    host: HostLimits = DEFAULT_HOST_LIMITS,
) -> Execution:
    """Run a (parsed) notebook and measure its exports in the clean room.

    ``keep_exports``: a folder to copy the checked exports into; ``self_reference``: measure
    them against themselves instead of the reference's; ``budgets=False``: every cell gets the
    exercise's ``cell_timeout`` rather than a budget from the reference's timings (all three
    for ``build-reference``, which makes those timings). ``kit``: sandboxes started ahead for
    this exercise (:mod:`grader.warm_pool`), used here and closed by whoever handed it over
    (the one who took it from its pool); without one a kit is started now, on ``sandbox``, and
    closed here. ``on_executed`` hears the executed notebook as soon as the run ends,
    before the clean room measures (the service renders it meanwhile); it must not change it,
    and its failure is logged, not the grading's. ``host``: bounds on the host's own work
    (:mod:`grader.preparation`); a preparation past its deadline raises
    :class:`~grader.notebook.NotebookError`, before any sandbox starts."""
    limits = limits or exercise.limits
    started = time.monotonic()
    prepared = prepare_submission(nb, exercise, limits,
                                  reference_timings(exercise) if budgets else None, host)
    nb, notes, located, sources = (prepared.nb, prepared.notes, prepared.located,
                                   prepared.sources)
    # a kit started ahead: how long it waited (for the benchmarks' phase costs).
    waited = None if kit is None else time.monotonic() - kit.created
    with ExitStack() as owned:  # a kit started here is this function's to close
        if kit is None:
            kit = owned.enter_context(start_kit(exercise, config, sandbox, limits))
        rundir = kit.rundir
        # a backend lending GPUs says so (DockerSandbox.gpu_devices); the others have none
        gpu = bool(getattr(sandbox, "gpu_devices", ()))
        ran = run_notebook(nb, kit, prepared.plan, limits, started, on_progress, gpu=gpu,
                           deadline=(reading := results_deadline(host)))
        run = Execution(ran.outcome, located, notes, ran.runner, ran.sandbox, ran.executed,
                        ran.timings, sources)
        run.timings["prepare"] = prepared.seconds
        if waited is not None:
            run.timings["kit_age"] = waited
        _check_exports(run, rundir / "runner" / "out" / "exports", reading)
        if on_executed is not None and run.executed is not None:
            try:
                on_executed(run.executed)
            except Exception:  # a listener's failure is not the student's
                logger.exception("on_executed failed; grading goes on")
        if keep_exports is not None:
            keep_exports.mkdir(parents=True, exist_ok=True)
            for item_id, path in run.export_files.items():
                shutil.copyfile(path, keep_exports / f"{item_id}.json")
        if measure and run.outcome.outcome is not Outcome.SANDBOX_ERROR:
            if on_progress is not None:
                on_progress(Progress("measuring", elapsed=time.monotonic() - started))
            run.measured = measure_execution(run, exercise, config, sandbox, rundir,
                                             self_reference=self_reference,
                                             warm=kit.cleanroom)
            run.timings["cleanroom"] = run.measured.seconds
        if measure and function_items(exercise):
            # from the notebook's source, in sandboxes of their own: the kernel is not asked
            run.functions = measure_functions(exercise, nb, located, sandbox,
                                              rundir / "functions",
                                              reference_nb=nb if self_reference else None)
            run.timings["functions"] = sum(f.seconds for f in run.functions.values())
    return run


def _check_exports(run: Execution, folder: Path, deadline: Deadline) -> None:
    """Check each export the runner recorded; keep the usable ones, the reason for the rest
    (an export not read before ``deadline`` is unusable too)."""
    if run.runner is None:
        return
    for item_id, record in run.runner.exports.items():
        if deadline.passed:
            run.exports[item_id] = (f"not read: reading the run's results took more than "
                                    f"{deadline.seconds:g} s")
            continue
        if record.file is None:
            error = record.error
            run.exports[item_id] = f"{error.ename}: {error.evalue}" if error else "no export"
            continue
        path = folder / record.file
        try:
            run.exports[item_id] = read_export(path)
        except ExportError as exc:
            run.exports[item_id] = str(exc)
            continue
        run.export_files[item_id] = path


def measure_execution(run: Execution, exercise: Exercise, config: GraderConfig,
                      sandbox: Sandbox, rundir: Path, *, self_reference: bool = False,
                      warm: WarmCleanRoom | None = None) -> Measured:
    """Measure the run's graph exports, beside the reference's, in the clean room (``warm``:
    one started ahead in ``rundir / "cleanroom"``)."""
    student = {item_id: path for item_id, path in run.export_files.items()
               if _measurable(exercise, item_id, run.exports.get(item_id))
               and _cell_can_answer(run, item_id)}
    reference = dict(student) if self_reference else reference_exports(exercise)
    jobs = plan_jobs(exercise, student, reference)
    images = None
    if any(job.measure == "predictions" for job in jobs):
        images = ImageSets(evaluation_images(config.data_dir))
    return measure_exports(jobs, sandbox, rundir / "cleanroom", images=images, warm=warm)


def _measurable(exercise: Exercise, item_id: str, export: object) -> bool:
    """An export of the kind its item asks for: a Keras model for ``keras_model``, a graph for
    the others (the kernel chooses what it answers; a graph sent for a Keras item, or the
    reverse, is not measured)."""
    try:
        keras = exercise.item(item_id).extract.export == "keras_model"
    except KeyError:
        return False
    return isinstance(export, KerasExport if keras else GraphExport)


def _cell_can_answer(run: Execution, item_id: str) -> bool:
    facts = run.sources.get(item_id)
    return facts is not None and facts.syntax_error is None and facts.refused is None


def grade_notebook(
    data: bytes,
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    *,
    limits: Limits | None = None,
    on_progress: ProgressCallback | None = None,
    kit: Kit | None = None,
    on_executed: Callable[[nbformat.NotebookNode], None] | None = None,
    host: HostLimits = DEFAULT_HOST_LIMITS,
) -> GradeReport:
    """Grade a submission given as the bytes of a .ipynb file; ``kit``: sandboxes started
    ahead for it (used, never closed here: its owner closes it, whatever happens);
    ``on_executed``, ``host``: see :func:`execute_notebook`."""
    started = time.monotonic()
    require_reference(exercise)
    try:
        nb = read_notebook(data)
        run = execute_notebook(nb, exercise, config, sandbox, limits=limits,
                               on_progress=on_progress, kit=kit,
                               on_executed=on_executed, host=host)
    except NotebookError as exc:  # unreadable, or too costly to prepare
        return invalid_report(exercise, exc)
    except Exception as exc:  # a grader bug must still end in a report, never a traceback
        logger.exception("grading failed inside the grader")
        return failed_report(exercise, f"{type(exc).__name__}: {exc}")
    try:
        return score_execution(run, exercise, config, started)
    except Exception as exc:  # a grader bug must still end in a report, never a traceback
        logger.exception("grading failed inside the grader")
        return failed_report(exercise, f"{type(exc).__name__}: {exc}")


def score_execution(
    run: Execution,
    exercise: Exercise,
    config: GraderConfig,
    started: float,
) -> GradeReport:
    """Score a run item by item and make its report. Each comparator's ``prepare`` hook first
    builds the host-side inputs it needs (the accuracy item's labels and printed figure), so
    nothing here knows one kind of item from another."""
    t0 = time.monotonic()
    prepared = prepare_inputs(exercise, config, run.executed, run.located)
    evidence = Evidence(located=run.located, runner=run.runner, sources=run.sources,
                        exports=run.exports, measured=run.measured, prepared=prepared,
                        stop_reason=run.outcome.reason, functions=run.functions)
    items = score_items(exercise, evidence)
    claimed = next((p.claimed_accuracy for p in prepared.values()
                    if p.claimed_accuracy is not None), None)
    measured = next((i.details["measured_accuracy"] for i in items
                     if "measured_accuracy" in i.details), None)
    timings = dict(run.timings)
    timings["scoring"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - started
    sandbox = run.sandbox
    diagnostics: dict[str, Any] = {
        "bootstrap": run.runner.bootstrap if run.runner else [],
        "located": {k: (v.how if v else None) for k, v in run.located.items()},
    }
    if run.runner is not None and run.runner.dropped_messages:
        diagnostics["dropped_messages"] = run.runner.dropped_messages
    if run.measured is not None:
        diagnostics["cleanroom_runs"] = run.measured.runs
        diagnostics["cleanroom_cpu_seconds"] = round(run.measured.cpu_seconds, 3)
    if sandbox is not None:
        diagnostics.update(
            exit_code=sandbox.exit_code, signal=sandbox.signal,
            peak_memory_bytes=sandbox.peak_memory_bytes,
            log_tail=sandbox.stderr[-4000:].decode("utf-8", "replace"),
        )
    return GradeReport(
        exercise=exercise.id,
        outcome=run.outcome.outcome,
        items=items,
        max_score=exercise.max_score,
        reason=run.outcome.reason,
        measured_accuracy=measured,
        claimed_accuracy=claimed,
        notes=[n.message for n in run.notes],
        timings=timings,
        diagnostics=diagnostics,
        executed_notebook=nbformat.writes(run.executed) if run.executed is not None else None,
        fingerprint=(model_fingerprint(exercise, evidence)
                     if run.outcome.outcome is Outcome.GRADED else None),
    )


def failed_report(exercise: Exercise, detail: str) -> GradeReport:
    """The report of a run the grader itself could not finish (``sandbox_error``: the service
    retries it); the traceback is in the grader's log."""
    return unrun_report(exercise, Outcome.SANDBOX_ERROR, bilingual(
        "pipeline.grader_failed", detail=detail[:500]))


def invalid_report(exercise: Exercise, error: NotebookError) -> GradeReport:
    """The report for a file that is not a runnable notebook: nothing ran, every item 0."""
    return unrun_report(exercise, Outcome.INVALID_NOTEBOOK, bilingual(
        "pipeline.invalid_notebook", reason=error.text))


def unrun_report(exercise: Exercise, outcome: Outcome, reason: Text) -> GradeReport:
    """A report where no item was reached, each 0 with ``reason``."""
    items = [ItemResult(i.id, i.title, 0.0, i.points, ItemStatus.NOT_REACHED, [reason])
             for i in exercise.items]
    return GradeReport(exercise.id, outcome, items, exercise.max_score, reason=reason)
