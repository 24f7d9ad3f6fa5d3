"""The host's work on a submission before and after its sandboxes, bounded in time and memory.

What the pool promises: any notebook the service accepts (``service/settings.py``: 20 MiB,
1,000 cells, 4 MiB a cell) is prepared for its run (outputs stripped, sanitised, graded cells
located and their sources read, budgets and the runner's plan) within
:attr:`HostLimits.prepare_seconds` (10 s), and the run's results (the runner's record, the
exports, the executed notebook) are read back within :attr:`HostLimits.results_seconds`. Past a
deadline the grading ends as data, never as a hang: a preparation that runs out is an
``invalid_notebook`` report saying so (:data:`PREPARE_TOO_SLOW`); a result that could not be
read in time is an item error (:func:`results_deadline`).

How: in the grading's own process, with no child. A child per submission (fork or spawn,
plus pickling the notebook both ways) would cost about as much as the whole preparation of an
honest notebook (0.05 s) several times over, on a warm path whose upload-to-verdict overhead
is 0.35 s. Instead every step is linear in what it reads, and what is not linear has a cap:

- the notebook is bounded when read (:class:`grader.notebook.ReadLimits`: bytes, cells,
  values, bytes a cell), so linear steps are bounded in time and memory by a small multiple of
  the upload (``make bench``: ``benchmarks/host_work.py`` measures both at the upload limits);
- the sanitiser and the locator match one line at a time (:mod:`grader.sanitize`,
  :mod:`grader.locate`), each markdown cell's headings read once;
- a graded cell's source is parsed only within :class:`grader.sourcecheck.SourceLimits`
  (IPython's transformers are magics x size);
- the files the runner leaves are read with size caps (:mod:`grader.results`,
  :mod:`grader.exports`, :data:`grader.notebook_run.MAX_EXECUTED_BYTES`).

A :class:`Deadline` is checked between cells and between steps: it bounds the sum of many
bounded steps (a step within one cell cannot be interrupted in-process; the caps bound it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import nbformat

from grader.budgets import CellTiming, cell_budgets
from grader.deadline import Deadline, DeadlinePassed
from grader.kernel.plan import RunPlan
from grader.limits import Limits
from grader.locate import Located, locate_items
from grader.messages import N_, bilingual
from grader.notebook import NotebookError, strip_outputs
from grader.notebook_run import build_plan
from grader.sanitize import Neutralised, sanitize_notebook
from grader.sourcecheck import DEFAULT_SOURCE_LIMITS, SourceFacts, SourceLimits, read_cell
from grader.spec import Exercise

#: The key of the :class:`~grader.notebook.NotebookError` of a preparation past its deadline.
PREPARE_TOO_SLOW = N_("preparation.too_slow")


@dataclass(frozen=True)
class HostLimits:
    """Bounds on the host's own work on one submission (not the sandboxes')."""

    #: Seconds to prepare a notebook for its run (strip, sanitise, locate, read sources, plan).
    prepare_seconds: float = 10.0
    #: Seconds to read back what the run left (the runner's record, exports, executed notebook).
    results_seconds: float = 10.0
    #: How much of a graded cell's source the host parses.
    source: SourceLimits = field(default_factory=lambda: DEFAULT_SOURCE_LIMITS)


DEFAULT_HOST_LIMITS = HostLimits()


@dataclass
class Preparation:
    """A notebook made ready for its run, and the host's facts about it."""

    nb: nbformat.NotebookNode
    notes: list[Neutralised]
    located: dict[str, Located | None]
    #: Item id -> what the cell's source says (host-side facts).
    sources: dict[str, SourceFacts]
    plan: RunPlan
    seconds: float = 0.0


def prepare_submission(nb: nbformat.NotebookNode, exercise: Exercise, limits: Limits,
                       timings: list[CellTiming] | None,
                       host: HostLimits = DEFAULT_HOST_LIMITS) -> Preparation:
    """Strip, sanitise, locate, read the graded sources and plan the run of ``nb``, within
    ``host.prepare_seconds``; ``timings``: the reference's cell seconds (``None``: every cell
    gets ``limits.cell_timeout``). Raises :class:`~grader.notebook.NotebookError`
    (:data:`PREPARE_TOO_SLOW`) past the deadline."""
    started = time.monotonic()
    deadline = Deadline(host.prepare_seconds)
    try:
        deadline.enter("strip")
        nb = strip_outputs(nb)
        deadline.enter("sanitise")
        notes = sanitize_notebook(nb, check=deadline.check)
        deadline.enter("locate")
        located = locate_items(nb, exercise, check=deadline.check)
        deadline.enter("sources")
        sources: dict[str, SourceFacts] = {}
        for item_id, where in located.items():
            if where is not None:
                deadline.check()
                sources[item_id] = read_cell(nb.cells[where.index].source, host.source)
        deadline.enter("plan")
        code_cells = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
        graded = {item_id: w.index for item_id, w in located.items() if w is not None}
        budget = cell_budgets(code_cells, graded, timings, limits.cell_timeout,
                              limits.budget_floor)
        plan = build_plan(exercise, limits, located, budget)
        deadline.check()
    except DeadlinePassed as passed:
        raise NotebookError(bilingual(PREPARE_TOO_SLOW, seconds=f"{passed.seconds:g}",
                                      step=passed.step), PREPARE_TOO_SLOW) from None
    return Preparation(nb, notes, located, sources, plan, time.monotonic() - started)


def results_deadline(host: HostLimits = DEFAULT_HOST_LIMITS) -> Deadline:
    """The deadline for reading back a run's results, started now."""
    return Deadline(host.results_seconds)
