"""The host's side of the function room: one function item measured without the kernel.

For each function item the host builds the function's module from the notebook's source
(:mod:`grader.function_source`), draws the run's cases from a secret seed
(:mod:`grader.function_cases`), and runs ``grader/functionroom/main.py`` in fresh sandboxes:

- the reference's module (from ``reference/<id>/solution.ipynb``, extracted the same way)
  first, as the grader's user, one pass over the cases;
- then the student's, as the student's user, in a sandbox of its own (another process,
  another work directory: the reference's outputs are never in it), two passes (the second in
  the reverse order), each output held to a few times the reference's size (with ``returns``,
  each part to a few times the reference's part).

Each sandbox: no network (a namespace with loopback only), no reference mounted, a private
``/tmp``, and tight :data:`LIMITS` (wall ``seconds`` from the spec, CPU, memory, processes).
What it hands back (``out.jsonl``) is read with a size cap and checked here
(:mod:`grader.function_records`); the comparator (``grader/comparators/functions.py``) judges.
"""

from __future__ import annotations

import json
import math
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from grader.function_cases import Case, FunctionCompare, draw_cases, read_compare
from grader.function_records import CallRecord, SideResult, read_records
from grader.function_source import (
    MISSING,
    ExtractedFunction,
    ExtractionFailure,
    ExtractLimits,
    extract_function,
)
from grader.limits import Limits, MiB
from grader.locate import Located, locate_cell
from grader.messages import bilingual
from grader.sandbox.base import Mount, Sandbox, SandboxRequest, SandboxResult, SandboxUser
from grader.spec import Exercise, Item, Text

ROOM_DIR = Path(__file__).resolve().parent / "functionroom"
ROOM_TARGET = "/opt/grader/functionroom"
WORK_TARGET = "/job"
#: One side's sandbox: ``notebook_timeout`` is replaced by the spec's ``seconds``.
LIMITS = Limits(cell_timeout=20.0, notebook_timeout=20.0, cpu_seconds=40,
                memory_bytes=1024 * MiB, max_processes=16, file_size_bytes=64 * MiB + 1,
                scratch_bytes=16 * MiB, log_bytes=64 * 1024)
#: A student's output may hold this many times the reference's values for the same case
#: (and at least :data:`MIN_VALUES`): every honest shape mistake fits, a flood does not.
OUTPUT_SLACK = 4
MIN_VALUES = 1024
#: A case whose reference failed: its student output is held to this many times its inputs.
INPUT_SLACK = 16
#: The most values any output may hold.
MAX_VALUES = 4_000_000
STUDENT_PASSES = 2
#: The most bytes of one side's ``out.jsonl`` the host reads (also the room's largest file):
#: records past it are "no result".
MAX_RESULT_BYTES = 64 * MiB


@dataclass
class FunctionMeasured:
    """One function item's facts for the comparator: the cases, and both sides' calls."""

    cases: list[Case] = field(default_factory=list)
    reference: SideResult | None = None
    student: SideResult | None = None
    #: The student's module could not be built (feedback), or the reference's.
    student_failure: ExtractionFailure | None = None
    reference_failure: Text | None = None
    seed: int = 0
    seconds: float = 0.0


def function_items(exercise: Exercise) -> list[Item]:
    return [item for item in exercise.items if item.extract.export == "function"]


def room_request(workdir: Path, limits: Limits, user: SandboxUser) -> SandboxRequest:
    """A function room: its code, its folder, nothing else; no network."""
    return SandboxRequest(
        argv=[sys.executable, f"{ROOM_TARGET}/main.py", "plan.json"],
        workdir=workdir,
        workdir_target=WORK_TARGET,
        mounts=[Mount(ROOM_DIR, ROOM_TARGET)],
        env={"PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
             "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
        limits=limits,
        user=user,
    )


def measure_functions(
    exercise: Exercise,
    nb: nbformat.NotebookNode,
    located: Mapping[str, Located | None],
    sandbox: Sandbox,
    workdir: Path,
    *,
    reference_nb: nbformat.NotebookNode | None = None,
    seed: int | None = None,
    extract_limits: ExtractLimits | None = None,
) -> dict[str, FunctionMeasured]:
    """Item id -> what the function rooms measured, for every function item whose cell was
    found. ``reference_nb``: the solution notebook (default: the exercise's); ``seed``: the
    run's secret (default: drawn here, never from the notebook)."""
    items = [item for item in function_items(exercise) if located.get(item.id) is not None]
    if not items:
        return {}
    if reference_nb is None:
        try:
            reference_nb = nbformat.read(exercise.reference_dir / "solution.ipynb",
                                         as_version=4)
        except (OSError, ValueError) as exc:  # the course's files, not the student's
            missing = bilingual("functions.no_reference", detail=f"{exc}"[:300])
            return {item.id: FunctionMeasured(reference_failure=missing) for item in items}
    master = np.random.default_rng(secrets.randbits(63) if seed is None else seed)
    limits = extract_limits or ExtractLimits()
    results = {}
    for item in items:
        where = located[item.id]
        assert where is not None
        results[item.id] = measure_function(
            item, nb, where.index, reference_nb, sandbox, workdir / item.id,
            int(master.integers(0, 2**62)), limits)
    return results


def measure_function(item: Item, nb: nbformat.NotebookNode, cell_index: int,
                     reference_nb: nbformat.NotebookNode, sandbox: Sandbox, workdir: Path,
                     seed: int, limits: ExtractLimits) -> FunctionMeasured:
    started = time.monotonic()
    spec = read_compare(item.compare.kind, dict(item.compare.options))
    name = str(item.extract.args.get("name", ""))
    measured = FunctionMeasured(seed=seed)
    student = extract_function(nb, cell_index, name, limits)
    if isinstance(student, ExtractionFailure):
        measured.student_failure = student
        measured.seconds = time.monotonic() - started
        return measured
    where = locate_cell(reference_nb, item.cell)
    reference = (extract_function(reference_nb, where.index, name, limits) if where else
                 ExtractionFailure("missing", bilingual(MISSING, name=name)))
    if isinstance(reference, ExtractionFailure):
        measured.reference_failure = reference.text
        measured.seconds = time.monotonic() - started
        return measured
    measured.cases = draw_cases(spec, seed)
    inputs, arguments = _inputs(measured.cases)
    caps = [[min(MAX_VALUES, max(MIN_VALUES, INPUT_SLACK * case.input_values))]
            * len(spec.returns or [None]) for case in measured.cases]
    measured.reference = run_side(reference, arguments, caps, inputs, spec, sandbox,
                                  workdir / "reference", SandboxUser.GRADER, passes=1)
    caps = _student_caps(measured.reference, caps)
    measured.student = run_side(student, arguments, caps, inputs, spec, sandbox,
                                workdir / "student", SandboxUser.STUDENT,
                                passes=STUDENT_PASSES)
    measured.seconds = time.monotonic() - started
    return measured


def _inputs(cases: list[Case]) -> tuple[dict[str, np.ndarray], list[list[dict[str, Any]]]]:
    """The arrays of every case by key (``c3a1``), and each case's arguments as the room
    reads them (a key, or a literal value)."""
    arrays: dict[str, np.ndarray] = {}
    arguments = []
    for n, case in enumerate(cases):
        args: list[dict[str, Any]] = []
        for m, arg in enumerate(case.args):
            if isinstance(arg, np.ndarray):
                arrays[f"c{n}a{m}"] = arg
                args.append({"key": f"c{n}a{m}"})
            else:
                args.append({"value": arg})
        arguments.append(args)
    return arrays, arguments


def _student_caps(reference: SideResult, caps: list[list[int]]) -> list[list[int]]:
    """Each case's caps (one per part) for the student: :data:`OUTPUT_SLACK` times the
    reference's output."""
    out = [list(parts) for parts in caps]
    for record in reference.calls.get(0, {}).values():
        if not record.ok or record.case >= len(out):
            continue
        outputs = record.parts if record.parts is not None else (record,)
        for n, part in enumerate(outputs[:len(out[record.case])]):
            if part.ok and part.array is not None:
                out[record.case][n] = min(MAX_VALUES, max(MIN_VALUES,
                                                          OUTPUT_SLACK * int(part.array.size)))
    return out


def run_side(extracted: ExtractedFunction, arguments: list[list[dict[str, Any]]],
             caps: list[list[int]], inputs: Mapping[str, np.ndarray], spec: FunctionCompare,
             sandbox: Sandbox, workdir: Path, user: SandboxUser, *, passes: int) -> SideResult:
    """One side's sandbox run, and what it wrote, checked. ``caps``: each case's most values,
    one per output (one, or one per name of ``spec.returns``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "module.py").write_text(extracted.source, encoding="utf-8")
    np.savez(workdir / "inputs.npz", **inputs)  # type: ignore[arg-type]
    returns = spec.returns
    plan = {"source": "module.py", "name": extracted.name, "inputs": "inputs.npz",
            "out": "out.jsonl", "passes": passes, "returns": returns,
            "cases": [{"args": args, "max_values": cap if returns is not None else cap[0]}
                      for args, cap in zip(arguments, caps, strict=True)]}
    (workdir / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    current: dict[str, int] = {}

    def on_line(line: str) -> None:
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):  # the student's process may print anything
            return
        if isinstance(event, dict) and event.get("event") == "case":
            current["case"] = int(event.get("case", -1)) if isinstance(
                event.get("case"), int) else -1
            current["pass"] = int(event["pass"]) if isinstance(event.get("pass"), int) else 0
        elif isinstance(event, dict) and event.get("event") == "done":
            current.clear()

    limits = LIMITS.replace(notebook_timeout=spec.seconds,
                            cell_timeout=spec.seconds,
                            cpu_seconds=max(1, math.ceil(2 * spec.seconds)))
    result = sandbox.run(room_request(workdir, limits, user), on_line=on_line)
    limit = min(MAX_RESULT_BYTES, passes * sum(_record_bytes(cap) for parts in caps
                                               for cap in parts) + 64 * 1024)
    side = (read_records(workdir / "out.jsonl", limit, passes, len(caps), caps, returns)
            if returns is not None else
            read_records(workdir / "out.jsonl", limit, passes, len(caps),
                         [parts[0] for parts in caps]))
    side.ending = _ending(result, spec.seconds)
    if side.ending is not None and "case" in current:
        side.stopped_in = (current.get("pass", 0), current["case"])
    side.wall_seconds = result.wall_seconds
    return side


def _record_bytes(values: int) -> int:
    """The most bytes a call's line may take: its values as 8-byte numbers in base64."""
    return math.ceil(values * 8 / 3) * 4 + 1024


def _ending(result: SandboxResult, seconds: float) -> Text | None:
    """Why the run ended early, or ``None`` when it ended by itself."""
    if result.sandbox_error:
        return bilingual("functions.sandbox_error", detail=result.sandbox_error[:300])
    if result.oom_killed:
        return bilingual("functions.out_of_memory")
    if result.timed_out or result.signal in (signal.SIGXCPU, signal.SIGKILL):
        return bilingual("functions.timed_out", seconds=f"{seconds:g}")
    if result.signal is not None:
        return bilingual("functions.killed", signal=result.signal)
    if result.exit_code not in (0, None):
        return bilingual("functions.exited", code=result.exit_code)
    return None


__all__ = ["LIMITS", "CallRecord", "FunctionMeasured", "function_items", "measure_functions",
           "room_request", "run_side"]
