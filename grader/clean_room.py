"""The host's side of the clean room: what to measure, on which inputs, and reading it back.

After the student's notebook has run, the exports it left (untrusted data, already checked by
:mod:`grader.exports`) are measured in a second, fresh sandbox that holds no student code:
``grader/cleanroom/main.py`` in a new interpreter, as the grader's sandbox user, with no
network. The grader chooses the inputs here, per run and from a secret seed: the exercise's own
image plus fresh images for each convolution and pooling answer, weights and inputs for the
layer classes, the MNIST test images and the held-out images for the trained model, and moved
copies of both (shifted, noisy) made from the same seed, which never leaves the host. The
reference solution's exports are measured alongside on the same inputs, so a comparator
always compares two measurements of the same kind.

A student's graph can crash TensorFlow: the clean room announces each job before it starts,
so when it dies the job it was in is recorded as a failure and the rest are measured again
in a new clean room (:func:`measure_exports`).

One budget per submission: :data:`LIMITS`' ``notebook_timeout`` (wall) and ``cpu_seconds``
hold for every clean room of the submission together, however many jobs it has and however
often it crashes. Each new clean room gets only what is left (the deadline's remaining wall,
the CPU allowance less what the earlier ones reported); when nothing is left, the jobs not
measured yet are failures with code ``budget``.

What each job may hand back is bounded by what it is expected to be: an answer's outputs by
the exercise's input and filter (and in the clean room by the reference's output for the same
input), a layer's by its input shape, the predictions by the number of images. The clean room
refuses a larger output (``wrong_shape``) before writing it, and the host reads no measurement
file larger than its job's expected shapes need (:func:`grader.measurements.max_measurement_bytes`).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grader.data.perturb import DEFAULT_PERTURBATION, Perturbation, moved_copies
from grader.limits import GiB, Limits
from grader.measurements import (
    LayerMeasurement,
    MeasurementError,
    MeasurementFailure,
    PredictionsMeasurement,
    TensorMeasurement,
    max_measurement_bytes,
    parse_measurement,
)
from grader.results import read_capped_json
from grader.sandbox.base import (
    Mount,
    Sandbox,
    SandboxRequest,
    SandboxResult,
    SandboxRun,
    SandboxUser,
)
from grader.sandbox.runs import LineRelay, wait_within
from grader.spec import Exercise, Item
from grader.tensorflow_env import TENSORFLOW_ENV

CLEANROOM_DIR = Path(__file__).resolve().parent / "cleanroom"
CLEANROOM_TARGET = "/opt/grader/cleanroom"
WORK_TARGET = "/job"
#: What each comparator kind needs measured.
MEASURES = {"op_output": "tensor", "layer": "layer", "graph": "graph", "accuracy": "predictions",
            "keras_structure": "keras_structure"}
#: Fresh images per convolution or pooling answer, besides the exercise's own.
FRESH_IMAGES = 4
#: A tensor answer's output may hold this many times the values of the exercise's input (per
#: output channel of its filter), and a student's answer this many times the reference's
#: output for the same input: every stride and padding mistake fits, a flood does not.
SHAPE_SLACK = 4
#: A layer's output may hold this many times the values of its input (channels may grow).
LAYER_SLACK = 64
#: A new clean room is not started with less than this left of the budget (it could not even
#: import TensorFlow): its jobs are failures with code ``budget`` at once.
MIN_ATTEMPT_SECONDS = 2.0
#: CPU seconds short of the allowance at which a clean room killed by ``RLIMIT_CPU`` counts as
#: having spent it (its last report comes up to one report interval before the kill).
CPU_SLACK = 2.0
#: The submission's one clean-room budget, for every clean room it needs together:
#: ``notebook_timeout`` (wall seconds from the start of the measuring) and ``cpu_seconds``.
LIMITS = Limits(cell_timeout=300.0, notebook_timeout=300.0, cpu_seconds=1200,
                memory_bytes=3 * GiB, max_processes=128, log_bytes=256 * 1024)


@dataclass(frozen=True)
class Job:
    id: str
    item: Item
    side: str  # "student" or "reference"
    measure: str
    export: Path
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Measured:
    """The clean room's results, by job id (``<item>/student``, ``<item>/reference``)."""

    results: dict[str, Any] = field(default_factory=dict)
    #: Extra facts per item the comparators need (the inputs the grader chose).
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    #: CPU seconds the clean rooms reported (charged to the budget).
    cpu_seconds: float = 0.0
    runs: int = 0
    sandbox: SandboxResult | None = None

    def get(self, item_id: str, side: str) -> Any:
        return self.results.get(f"{item_id}/{side}")


@dataclass(frozen=True)
class WarmCleanRoom:
    """A clean room started ahead (TensorFlow imported), waiting for its plan in ``workdir``;
    its output goes to ``relay``, whose target :func:`measure_exports` sets."""

    run: SandboxRun
    relay: LineRelay
    workdir: Path


def cleanroom_request(workdir: Path, limits: Limits = LIMITS) -> SandboxRequest:
    """The clean room's sandbox: its code, its folder, no student code, no network."""
    return SandboxRequest(
        argv=[sys.executable, f"{CLEANROOM_TARGET}/main.py", "plan.json"],
        workdir=workdir,
        workdir_target=WORK_TARGET,
        mounts=[Mount(CLEANROOM_DIR, CLEANROOM_TARGET)],
        env={**TENSORFLOW_ENV, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "2"},
        limits=limits,
        user=SandboxUser.GRADER,
    )


@dataclass(frozen=True)
class ImageSets:
    """The images the trained model is measured on (uint8 (n, 28, 28)); never their labels.

    ``moved``: how :func:`measure_exports` adds a moved copy of each set (a pixel's shift and
    light noise, from the run's secret seed: :mod:`grader.data.perturb`), which an exact-pixel
    table of public MNIST cannot read; ``None`` adds none."""

    sets: Mapping[str, np.ndarray]
    moved: Perturbation | None = DEFAULT_PERTURBATION

    def with_moved_copies(self, seed: int) -> dict[str, np.ndarray]:
        """The sets and, unless ``moved`` is ``None``, their moved copies made from ``seed``."""
        sets = dict(self.sets)
        if self.moved is not None:
            sets.update(moved_copies(sets, seed, self.moved))
        return sets


def plan_jobs(
    exercise: Exercise,
    student: Mapping[str, Path],
    reference: Mapping[str, Path],
) -> list[Job]:
    """The jobs for the items the student exported something for."""
    jobs = []
    for item in exercise.items:
        measure = MEASURES.get(item.compare.kind)
        if measure is None or item.id not in student:
            continue
        options: dict[str, Any] = {}
        if measure == "layer":
            options["input_shape"] = list(item.extract.args.get("input_shape", []))
        if measure in ("predictions", "keras_structure") and exercise.accuracy is not None:
            options["max_parameters"] = exercise.accuracy.max_parameters
        jobs.append(Job(f"{item.id}/student", item, "student", measure, student[item.id],
                        options))
        if measure in ("tensor", "layer") and item.id in reference:
            jobs.append(Job(f"{item.id}/reference", item, "reference", measure,
                            reference[item.id], options))
        elif item.id in reference and item.extract.export != "keras_model" and (
                measure == "graph" or item.compare.options.get("structure")):
            # the reference's data path, which sets the kinds a student's may use
            jobs.append(Job(f"{item.id}/reference", item, "reference", "graph",
                            reference[item.id]))
    return jobs


def reference_context(item: Item, reference_export: Path) -> dict[str, np.ndarray]:
    """The arrays the reference solution recorded beside its answer: the image the exercise
    feeds (``feed = { x = "sample_image" }``) under ``"image"``, and the ``context`` ones
    (the filter ``W``) by name."""
    from grader.exports import ExportError, unpack_array

    feed = item.extract.args.get("feed") or {}
    try:
        context = json.loads(reference_export.read_bytes()).get("context") or {}
        arrays = {name: unpack_array(value) for name, value in context.items()}
    except (OSError, ValueError, AttributeError, ExportError):
        return {}
    image = next((arrays[name] for name in feed.values() if name in arrays), None)
    if image is not None:
        arrays["image"] = image
    return arrays


def fresh_images(image: np.ndarray, rng: np.random.Generator, count: int = FRESH_IMAGES
                 ) -> list[np.ndarray]:
    """Images like the exercise's (same shape and value range) that nobody has seen: its pixels
    shuffled, and random values in its range."""
    flat = image.reshape(-1)
    images = []
    for n in range(count):
        if n < count - 1:
            candidate = rng.permutation(flat)
        else:
            low, high = float(flat.min()), float(flat.max())
            candidate = rng.integers(int(low), int(high) + 1, size=flat.shape).astype(
                image.dtype) if low.is_integer() and high.is_integer() else rng.uniform(
                low, high, size=flat.shape).astype(image.dtype)
        images.append(candidate.reshape(image.shape))
    return images


def measure_exports(
    jobs: list[Job],
    sandbox: Sandbox,
    workdir: Path,
    *,
    images: ImageSets | None = None,
    seed: int | None = None,
    limits: Limits = LIMITS,
    warm: WarmCleanRoom | None = None,
) -> Measured:
    """Run the jobs in clean rooms until each has a result (or is blamed for a crash), all of
    them within one budget: ``limits.notebook_timeout`` and ``limits.cpu_seconds``.

    ``warm``: a clean room started ahead in ``workdir``, used for the first attempt (a new one
    for each attempt after a crash). Without jobs it is left as it is (its kit stops it)."""
    started = time.monotonic()
    budget = _Budget(started + limits.notebook_timeout, float(limits.cpu_seconds))
    measured = Measured()
    if not jobs:
        return measured
    seed = secrets.randbits(31) if seed is None else seed
    rng = np.random.default_rng(seed)
    inputs_dir = workdir / "in"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    reference_paths = {j.item.id: j.export for j in jobs if j.side == "reference"}
    for index, job in enumerate(jobs):
        target = inputs_dir / f"export{index}.json"
        target.write_bytes(job.export.read_bytes())
        entry: dict[str, Any] = {"id": job.id, "index": index, "measure": job.measure,
                                 "export": f"in/{target.name}", **job.options}
        if job.measure == "tensor":
            entry["inputs"] = _tensor_inputs(job, reference_paths, inputs_dir, rng, measured)
            entry["placeholder"] = next(iter(job.item.extract.args.get("feed") or {"x": 0}))
            if entry["inputs"] is None:
                measured.results[job.id] = MeasurementFailure(
                    code="no_reference", detail="the reference's exercise image is missing")
                continue
        if job.measure == "layer":
            entry["seed"] = measured.inputs.setdefault(job.item.id, {}).setdefault(
                "seed", int(rng.integers(0, 2**31 - 1)))
        entry.update(_expectation(job, measured))
        entries.append(entry)
    # the reference's outputs first: the clean room holds a student's output to their size
    entries.sort(key=lambda e: e["id"].endswith("/student"))
    plan: dict[str, Any] = {"out": "out", "jobs": entries}
    orders: dict[str, np.ndarray] = {}
    if images is not None and any(j.measure == "predictions" for j in jobs):
        plan["images"] = {}
        sets = images.with_moved_copies(int(rng.integers(0, 2**31 - 1)))
        names = list(sets)
        for position in rng.permutation(len(names)):  # no set is recognisable by its turn
            name = names[position]
            # nor an image by its place: each set in its own secret order (a model that reads
            # its batch-mates could otherwise name the batch and answer by position)
            orders[name] = rng.permutation(len(sets[name]))
            np.save(inputs_dir / f"images-{name}.npy",
                    np.ascontiguousarray(sets[name][orders[name]]))
            plan["images"][name] = f"in/images-{name}.npy"
    counts = {name: len(array) for name, array in images.sets.items()} if images else {}
    pending = [e for e in entries if e["id"] not in measured.results]
    while pending:
        wall, cpu = budget.left()
        if min(wall, cpu) < MIN_ATTEMPT_SECONDS:
            for entry in pending:
                measured.results[entry["id"]] = MeasurementFailure(
                    code="budget", detail=BUDGET_BEFORE.format(**budget.totals(limits)))
            break
        attempt = _run_once(plan, pending, sandbox, workdir, limits, warm, wall, cpu)
        budget.charge(attempt.cpu_seconds)
        result, crashed = attempt.result, attempt.crashed
        warm = None
        measured.runs += 1
        measured.sandbox = result
        for entry in pending:
            path = workdir / "out" / f"{entry['index']}.json"
            if path.is_file():
                measured.results[entry["id"]] = in_set_order(
                    _read_result(path, entry, counts), orders)
        blamed = crashed or next((e["id"] for e in pending
                                  if e["id"] not in measured.results), None)
        if blamed is not None and blamed not in measured.results:
            if attempt.out_of_budget:
                measured.results[blamed] = MeasurementFailure(
                    code="budget", detail=BUDGET_DURING.format(**budget.totals(limits)))
            else:
                reason = result.sandbox_error or _ending(result)
                measured.results[blamed] = MeasurementFailure(code="crashed",
                                                              detail=reason[:500])
        if result.sandbox_error and measured.runs >= 2:
            for entry in pending:
                measured.results.setdefault(entry["id"], MeasurementFailure(
                    code="sandbox_error", detail=result.sandbox_error[:500]))
        pending = [e for e in pending if e["id"] not in measured.results]
        _tighten(pending, measured)
    measured.seconds = time.monotonic() - started
    measured.cpu_seconds = budget.cpu_spent
    return measured


#: The ``detail`` of a ``budget`` failure (the feedback text says the rest, in both languages).
BUDGET_DURING = "{wall:.0f} s and {cpu:.0f} CPU s in all, spent while measuring this answer"
BUDGET_BEFORE = "{wall:.0f} s and {cpu:.0f} CPU s in all, spent before this answer was measured"


@dataclass
class _Budget:
    """What is left of the submission's clean-room budget: a deadline and CPU seconds."""

    deadline: float
    cpu_left: float
    cpu_spent: float = 0.0

    def left(self) -> tuple[float, float]:
        return self.deadline - time.monotonic(), self.cpu_left

    def charge(self, cpu_seconds: float) -> None:
        self.cpu_spent += cpu_seconds
        self.cpu_left -= cpu_seconds

    def totals(self, limits: Limits) -> dict[str, float]:
        return {"wall": limits.notebook_timeout, "cpu": limits.cpu_seconds}


def _expectation(job: Job, measured: Measured) -> dict[str, Any]:
    """What the job's outputs may hold (``max_values``; ``like``: the job whose output, measured
    earlier in the same clean room, tightens it)."""
    if job.measure == "tensor":
        images = (measured.inputs.get(job.item.id) or {}).get("images") or []
        weights = (measured.inputs.get(job.item.id) or {}).get("W")
        channels = int(weights.shape[-1]) if isinstance(weights, np.ndarray) and (
            weights.ndim == 4) else 1
        size = max((int(np.size(image)) for image in images), default=1)
        return {"max_values": SHAPE_SLACK * size * max(channels, 1), **_like(job)}
    if job.measure == "layer":
        shape = [int(d) for d in job.options.get("input_shape") or [1]]
        return {"max_values": LAYER_SLACK * max(math.prod(shape), 1), **_like(job)}
    return {}


def _like(job: Job) -> dict[str, Any]:
    """A student's job is also held to :data:`SHAPE_SLACK` times the reference's output."""
    if job.side != "student":
        return {}
    return {"like": f"{job.item.id}/reference", "like_factor": SHAPE_SLACK}


def _tighten(pending: list[dict[str, Any]], measured: Measured) -> None:
    """Before a re-run: a student's job whose reference was measured by an earlier clean room
    is held to that output's size on the host too (the new clean room will not measure it)."""
    for entry in pending:
        reference = measured.results.get(str(entry.get("like")))
        arrays = (reference.outputs if isinstance(reference, TensorMeasurement) else
                  [reference.output] if isinstance(reference, LayerMeasurement) else [])
        if arrays:
            largest = max(len(a.values) for a in arrays)
            entry["max_values"] = min(int(entry["max_values"]),
                                      int(entry["like_factor"]) * max(largest, 1))


def _tensor_inputs(job: Job, references: Mapping[str, Path], inputs_dir: Path,
                   rng: np.random.Generator, measured: Measured) -> str | None:
    path = inputs_dir / f"inputs-{job.item.id}.npz"
    if not path.exists():
        reference = references.get(job.item.id)
        context = reference_context(job.item, reference) if reference is not None else {}
        image = context.get("image")
        if image is None:
            return None
        arrays = [image, *fresh_images(image, rng)]
        inputs: dict[str, Any] = {f"input{i}": a for i, a in enumerate(arrays)}  # see write_npz
        np.savez(path, **inputs)
        facts = measured.inputs.setdefault(job.item.id, {})
        facts["images"] = arrays
        for name in job.item.extract.args.get("context") or []:
            if name in context:
                facts[name] = context[name]
    return f"in/{path.name}"


@dataclass
class _Attempt:
    """One clean room's run: its result, the job it was in when it ended badly, the CPU
    seconds to charge, and whether it was ended by the budget (time or CPU)."""

    result: SandboxResult
    crashed: str | None
    cpu_seconds: float
    out_of_budget: bool


class _Watch:
    """Follows a clean room's lines: the job it is in, the CPU it reports, and for a warm one
    (whose ``RLIMIT_CPU`` was set when it started) the stop once its allowance is spent."""

    def __init__(self, allowance: float, warm: WarmCleanRoom | None) -> None:
        self.current: str | None = None
        self.allowance = allowance
        self.warm = warm
        self.before = 0.0  # CPU spent before the plan (importing TensorFlow)
        self.cpu = 0.0  # CPU spent on the plan, as last reported
        self.cpus = 1
        self.reported_at: float | None = None
        self.stopped = False

    def __call__(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        name = event.get("event")
        if name == "job":
            self.current = str(event.get("id"))[:200]
        elif name == "measured":
            self.current = None
        elif name == "plan":
            self.before = _number(event.get("before"))
            self.reported_at = time.monotonic()
        elif name in ("cpu", "done"):
            self.cpu = max(self.cpu, _number(event.get("seconds" if name == "cpu" else "cpu")))
            self.cpus = max(1, min(int(_number(event.get("cpus", self.cpus))), 1024))
            self.reported_at = time.monotonic() if name == "cpu" else None
            if self.warm is not None and self.charge() > self.allowance and not self.stopped:
                self.stopped = True
                self.warm.run.stop()

    def charge(self, ended_at: float | None = None) -> float:
        """CPU seconds this clean room spent for the submission: what it reported, its import
        too when it was started for it (cold), and for one that ended without its last
        report, the CPUs it could use times the time since its last report."""
        spent = self.cpu + (0.0 if self.warm is not None else self.before)
        if ended_at is not None and self.reported_at is not None:
            spent += self.cpus * max(0.0, ended_at - self.reported_at)
        return spent


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number >= 0 else 0.0


def _run_once(plan: dict[str, Any], pending: list[dict[str, Any]], sandbox: Sandbox,
              workdir: Path, limits: Limits, warm: WarmCleanRoom | None,
              wall: float, cpu: float) -> _Attempt:
    """One clean room for ``pending``, within ``wall`` seconds and ``cpu`` CPU seconds (what
    is left of the budget)."""
    watch = _Watch(cpu, warm)
    text = json.dumps({**plan, "jobs": pending})
    if warm is None:
        (workdir / "plan.json").write_text(text)
        room = limits.replace(notebook_timeout=wall, cell_timeout=min(limits.cell_timeout, wall),
                              cpu_seconds=max(1, math.ceil(cpu)))
        started = time.monotonic()
        result = sandbox.run(cleanroom_request(workdir, room), on_line=watch)
    else:
        warm.relay.target = watch
        partial = workdir / "plan.json.part"  # a warm clean room reads the plan once it exists
        partial.write_text(text)
        started = time.monotonic()
        os.replace(partial, workdir / "plan.json")
        result = wait_within(warm.run, wall)
    ended = time.monotonic()
    ended_badly = bool(result.sandbox_error or result.timed_out or result.oom_killed or (
        result.exit_code != 0))
    if ended_badly and watch.reported_at is None and warm is None and not result.sandbox_error:
        watch.reported_at = started  # died before its first report: charge all its time
    spent = watch.charge(ended if ended_badly else None)
    killed = result.signal in (signal.SIGXCPU, signal.SIGKILL) and not result.oom_killed
    cpu_limit = watch.stopped or spent >= cpu or (killed and spent >= cpu - CPU_SLACK)
    out_of_budget = bool(result.timed_out or cpu_limit)
    return _Attempt(result, watch.current if ended_badly else None,
                    cpu if cpu_limit else spent, out_of_budget)


def _ending(result: SandboxResult) -> str:
    if result.oom_killed:
        return "the clean room ran out of memory"
    if result.timed_out:
        return "the clean room ran out of time"
    if result.signal is not None:
        return f"the clean room was killed by signal {result.signal}"
    return f"the clean room exited with {result.exit_code}"


def in_set_order(measurement: Any, orders: Mapping[str, np.ndarray]) -> Any:
    """A predictions measurement with each set's predictions put back in the set's own order
    (the clean room saw the images in ``orders[name]``'s order); any other result unchanged.
    A list of the wrong length is left as it is (the comparator reports its count)."""
    if not isinstance(measurement, PredictionsMeasurement):
        return measurement
    predictions = {}
    for name, got in measurement.predictions.items():
        order = orders.get(name)
        if order is not None and len(got) == len(order):
            restored = list(got)  # plain ints: a prediction out of int64's range stays one
            for place, index in enumerate(order.tolist()):
                restored[index] = got[place]
            got = restored
        predictions[name] = got
    return measurement.model_copy(update={"predictions": predictions})


def _read_result(path: Path, entry: Mapping[str, Any], images: Mapping[str, int]) -> Any:
    """The job's measurement, read only if its file is no larger than its expected shapes
    need (a tensor's outputs, a layer's output, one prediction per image)."""
    kind = str(entry["measure"])
    limit = max_measurement_bytes(kind, max_values=entry.get("max_values"),
                                  outputs=FRESH_IMAGES + 1, images=sum(images.values()))
    try:
        data = read_capped_json(path, limit, "the measurement")
        return parse_measurement(kind, data, max_values=entry.get("max_values"))
    except (ValueError, MeasurementError) as exc:
        return MeasurementFailure(code="bad_measurement", detail=str(exc)[:500])
