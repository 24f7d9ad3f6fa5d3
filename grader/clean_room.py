"""The host's side of the clean room: what to measure, on which inputs, and reading it back.

After the student's notebook has run, the exports it left (untrusted data, already checked by
:mod:`grader.artefacts`) are measured in a second, fresh sandbox that holds no student code:
``grader/cleanroom/main.py`` in a new interpreter, as the grader's sandbox user, with no
network. The grader chooses the inputs here, per run and from a secret seed: the exercise's own
image plus fresh images for each convolution and pooling answer, weights and inputs for the
layer classes, the MNIST test images and the held-out images for the trained model, and moved
copies of both (shifted, noisy) made from the same seed, which never leaves the host. The
reference solution's artefacts are measured alongside on the same inputs, so a comparator
always compares two measurements of the same kind.

A student's graph can crash TensorFlow: the clean room announces each job before it starts,
so when it dies the job it was in is recorded as a failure and the rest are measured again
in a new clean room (:func:`measure_artefacts`).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grader.data.perturb import DEFAULT_PERTURBATION, Perturbation, moved_copies
from grader.limits import GiB, Limits
from grader.measurements import MeasurementError, MeasurementFailure, parse_measurement
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

CLEANROOM_DIR = Path(__file__).resolve().parent / "cleanroom"
CLEANROOM_TARGET = "/opt/grader/cleanroom"
WORK_TARGET = "/job"
#: What each comparator kind needs measured.
MEASURES = {"op_output": "tensor", "layer": "layer", "graph": "graph", "accuracy": "predictions"}
#: Fresh images per convolution or pooling answer, besides the exercise's own.
FRESH_IMAGES = 4
#: Largest measurement file read back.
MAX_MEASUREMENT_BYTES = 64 * 1024 * 1024
LIMITS = Limits(cell_timeout=300.0, notebook_timeout=300.0, cpu_seconds=1200,
                memory_bytes=3 * GiB, max_processes=128, log_bytes=256 * 1024)


@dataclass(frozen=True)
class Job:
    id: str
    item: Item
    side: str  # "student" or "reference"
    measure: str
    artefact: Path
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Measured:
    """The clean room's results, by job id (``<item>/student``, ``<item>/reference``)."""

    results: dict[str, Any] = field(default_factory=dict)
    #: Extra facts per item the comparators need (the inputs the grader chose).
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    runs: int = 0
    sandbox: SandboxResult | None = None

    def get(self, item_id: str, side: str) -> Any:
        return self.results.get(f"{item_id}/{side}")


@dataclass(frozen=True)
class WarmCleanRoom:
    """A clean room started ahead (TensorFlow imported), waiting for its plan in ``workdir``;
    its output goes to ``relay``, whose target :func:`measure_artefacts` sets."""

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
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1",
             "OMP_NUM_THREADS": "2"},
        limits=limits,
        user=SandboxUser.GRADER,
    )


@dataclass(frozen=True)
class ImageSets:
    """The images the trained model is measured on (uint8 (n, 28, 28)); never their labels.

    ``moved``: how :func:`measure_artefacts` adds a moved copy of each set (a pixel's shift and
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
        if measure == "predictions" and exercise.accuracy is not None:
            options["max_parameters"] = exercise.accuracy.max_parameters
        jobs.append(Job(f"{item.id}/student", item, "student", measure, student[item.id],
                        options))
        if measure in ("tensor", "layer") and item.id in reference:
            jobs.append(Job(f"{item.id}/reference", item, "reference", measure,
                            reference[item.id], options))
    return jobs


def reference_context(item: Item, reference_artefact: Path) -> dict[str, np.ndarray]:
    """The arrays the reference solution recorded beside its answer: the image the exercise
    feeds (``feed = { x = "sample_image" }``) under ``"image"``, and the ``context`` ones
    (the filter ``W``) by name."""
    from grader.artefacts import ArtefactError, unpack_array

    feed = item.extract.args.get("feed") or {}
    try:
        context = json.loads(reference_artefact.read_bytes()).get("context") or {}
        arrays = {name: unpack_array(value) for name, value in context.items()}
    except (OSError, ValueError, AttributeError, ArtefactError):
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


def measure_artefacts(
    jobs: list[Job],
    sandbox: Sandbox,
    workdir: Path,
    *,
    images: ImageSets | None = None,
    seed: int | None = None,
    limits: Limits = LIMITS,
    warm: WarmCleanRoom | None = None,
) -> Measured:
    """Run the jobs in clean rooms until each has a result (or is blamed for a crash).

    ``warm``: a clean room started ahead in ``workdir``, used for the first attempt (a new one
    for each attempt after a crash). Without jobs it is left as it is (its kit stops it)."""
    started = time.monotonic()
    measured = Measured()
    if not jobs:
        return measured
    seed = secrets.randbits(31) if seed is None else seed
    rng = np.random.default_rng(seed)
    inputs_dir = workdir / "in"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    reference_paths = {j.item.id: j.artefact for j in jobs if j.side == "reference"}
    for index, job in enumerate(jobs):
        target = inputs_dir / f"artefact{index}.json"
        target.write_bytes(job.artefact.read_bytes())
        entry: dict[str, Any] = {"id": job.id, "index": index, "measure": job.measure,
                                 "artefact": f"in/{target.name}", **job.options}
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
        entries.append(entry)
    plan: dict[str, Any] = {"out": "out", "jobs": entries}
    if images is not None and any(j.measure == "predictions" for j in jobs):
        plan["images"] = {}
        sets = images.with_moved_copies(int(rng.integers(0, 2**31 - 1)))
        names = list(sets)
        for position in rng.permutation(len(names)):  # no set is recognisable by its turn
            name = names[position]
            np.save(inputs_dir / f"images-{name}.npy", np.ascontiguousarray(sets[name]))
            plan["images"][name] = f"in/images-{name}.npy"
    pending = [e for e in entries if e["id"] not in measured.results]
    while pending:
        result, crashed = _run_once(plan, pending, sandbox, workdir, limits, warm)
        warm = None
        measured.runs += 1
        measured.sandbox = result
        kinds = {e["id"]: e["measure"] for e in pending}
        for entry in pending:
            path = workdir / "out" / f"{entry['index']}.json"
            if path.is_file():
                measured.results[entry["id"]] = _read_result(path, kinds[entry["id"]])
        blamed = crashed or next((e["id"] for e in pending
                                  if e["id"] not in measured.results), None)
        if blamed is not None and blamed not in measured.results:
            reason = result.sandbox_error or _ending(result)
            measured.results[blamed] = MeasurementFailure(code="crashed", detail=reason[:500])
        if result.sandbox_error and measured.runs >= 2:
            for entry in pending:
                measured.results.setdefault(entry["id"], MeasurementFailure(
                    code="sandbox_error", detail=result.sandbox_error[:500]))
        pending = [e for e in pending if e["id"] not in measured.results]
    measured.seconds = time.monotonic() - started
    return measured


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


def _run_once(plan: dict[str, Any], pending: list[dict[str, Any]], sandbox: Sandbox,
              workdir: Path, limits: Limits, warm: WarmCleanRoom | None
              ) -> tuple[SandboxResult, str | None]:
    current: list[str | None] = [None]

    def on_line(line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if isinstance(event, dict) and event.get("event") == "job":
            current[0] = str(event.get("id"))[:200]
        elif isinstance(event, dict) and event.get("event") == "measured":
            current[0] = None

    text = json.dumps({**plan, "jobs": pending})
    if warm is None:
        (workdir / "plan.json").write_text(text)
        result = sandbox.run(cleanroom_request(workdir, limits), on_line=on_line)
    else:
        warm.relay.target = on_line
        partial = workdir / "plan.json.part"  # a warm clean room reads the plan once it exists
        partial.write_text(text)
        os.replace(partial, workdir / "plan.json")
        result = wait_within(warm.run, limits.notebook_timeout)
    ended_badly = result.sandbox_error or result.timed_out or result.oom_killed or (
        result.exit_code != 0)
    return result, current[0] if ended_badly else None


def _ending(result: SandboxResult) -> str:
    if result.oom_killed:
        return "the clean room ran out of memory"
    if result.timed_out:
        return "the clean room ran out of time"
    if result.signal is not None:
        return f"the clean room was killed by signal {result.signal}"
    return f"the clean room exited with {result.exit_code}"


def _read_result(path: Path, kind: str) -> Any:
    try:
        data = read_capped_json(path, MAX_MEASUREMENT_BYTES, "the measurement")
        return parse_measurement(kind, data)
    except (ValueError, MeasurementError) as exc:
        return MeasurementFailure(code="bad_measurement", detail=str(exc)[:500])
