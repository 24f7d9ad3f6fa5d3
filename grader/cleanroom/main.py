"""The clean room: measures the exports in a fresh interpreter with no student code.

Usage (inside a fresh sandbox): ``python main.py PLAN.json``. A warm clean room (started with a
kit, ``grader/kit.py``, before any submission) imports TensorFlow, says ``{"event": "ready"}``
and then waits for ``PLAN.json`` to appear (the host writes it in one rename). Only this folder,
the plan and
its read-only inputs are there: the exports the student's kernel exported (untrusted data,
already size- and schema-checked by the host), the grader's inputs (exercise images, fresh
images the student never saw, the test and held-out MNIST images; never labels) and the
reference solution's exports. It imports nothing from the ``grader`` package.

For each job of the plan it writes ``out/<n>.json``: ``{"id", "ok": true, ...measurement}`` or
``{"id", "ok": false, "error": {"code", "detail", "ops"}}``, and announces the job on stdout
first (``{"event": "job", "id": ...}``) so that the host can tell which job a crash belongs to
and run the rest again without it. Measurements are data; the host compares and scores.

Once it has its plan it also reports, every :data:`CPU_REPORT_SECONDS`, the CPU time it spent
on the plan (``{"event": "cpu", "seconds", "cpus"}``; the import before it is in the
``plan`` event's ``before``): the host charges it to the submission's one clean-room budget.
An output larger than the job expects (``max_values``, tightened by the reference's output
measured earlier in the same plan, see :func:`expected_values`) is refused before it is
serialised.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from graphs import GraphRefused
from keras_build import measure_keras_predictions, measure_keras_structure
from measure import (
    measure_graph,
    measure_layer,
    measure_predictions,
    measure_tensor,
)

#: How often the CPU time spent on the plan is reported to the host.
CPU_REPORT_SECONDS = 0.5
_emit_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    with _emit_lock:  # the CPU reporter writes from its own thread
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()


def cpu_seconds() -> float:
    """CPU time of this process, every thread included (what ``RLIMIT_CPU`` counts)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report_cpu(since: float, stop: threading.Event) -> None:
    cpus = len(os.sched_getaffinity(0))
    while not stop.wait(CPU_REPORT_SECONDS):
        emit("cpu", seconds=round(cpu_seconds() - since, 3), cpus=cpus)


def expected_values(job: dict[str, Any], measured: dict[str, int]) -> dict[str, Any]:
    """``job`` with its ``max_values`` tightened to ``like_factor`` times the output of the job
    named ``like`` (the reference's, for the same inputs) when this plan measured it already."""
    like = measured.get(str(job.get("like")))
    if like is None:
        return job
    limit = int(job.get("like_factor", 1)) * max(like, 1)
    return {**job, "max_values": min(int(job.get("max_values", limit)), limit)}


def largest_output(result: dict[str, Any]) -> int | None:
    """The values of the largest array a tensor or layer measurement holds."""
    arrays = result.get("outputs") or ([result["output"]] if "output" in result else [])
    sizes = [len(a.get("values") or []) for a in arrays if isinstance(a, dict)]
    return max(sizes) if sizes else None


def _load_export(path: str) -> dict[str, Any]:
    try:
        export = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        raise GraphRefused("bad_export", "the export is not JSON") from None
    if not isinstance(export, dict):
        raise GraphRefused("bad_export", "the export is not an object")
    return export


def run_job(job: dict[str, Any], images: dict[str, np.ndarray]) -> dict[str, Any]:
    export = _load_export(job["export"])
    kind = job["measure"]
    if kind == "tensor":
        with np.load(job["inputs"], allow_pickle=False) as data:
            inputs = [data[f"input{i}"] for i in range(len(data.files))]
        return measure_tensor(export, job, inputs)
    if kind == "layer":
        return measure_layer(export, job)
    if kind == "graph":
        return measure_graph(export, job)
    if kind == "predictions" and export.get("kind") == "keras":
        return measure_keras_predictions(export, job, images)
    if kind == "predictions":
        return measure_predictions(export, job, images)
    if kind == "keras_structure":
        return measure_keras_structure(export, job)
    raise GraphRefused("bad_job", f"unknown measurement {kind!r}")


#: How often a warm clean room looks for its plan.
PLAN_POLL_SECONDS = 0.005


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: main.py PLAN.json", file=sys.stderr)
        return 2
    started = time.monotonic()
    import tensorflow  # noqa: F401  (imported once, before the first job is timed)

    emit("ready", seconds=round(time.monotonic() - started, 3))
    path = Path(argv[1])
    while not path.exists():  # a warm clean room: the host hands the plan over later
        time.sleep(PLAN_POLL_SECONDS)
    started = time.monotonic()
    before = cpu_seconds()
    emit("plan", before=round(before, 3))
    stop = threading.Event()
    threading.Thread(target=report_cpu, args=(before, stop), daemon=True).start()
    plan = json.loads(path.read_text())
    out = Path(plan["out"])
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for name, path in (plan.get("images") or {}).items():
        images[name] = np.load(path, allow_pickle=False)
    sizes: dict[str, int] = {}  # job id -> values of its largest output (references first)
    for job in plan["jobs"]:
        emit("job", id=job["id"])
        t0 = time.monotonic()
        try:
            result = {"id": job["id"], "ok": True,
                      **run_job(expected_values(job, sizes), images)}
            largest = largest_output(result)
            if largest is not None:
                sizes[job["id"]] = largest
        except GraphRefused as exc:
            result = {"id": job["id"], "ok": False,
                      "error": {"code": exc.code, "detail": exc.detail[:1000], "ops": exc.ops}}
        except Exception as exc:  # a measurement bug must not hide the other jobs
            result = {"id": job["id"], "ok": False,
                      "error": {"code": "internal", "detail": f"{type(exc).__name__}: "
                                f"{str(exc)[:500]}", "ops": []}}
        result["seconds"] = round(time.monotonic() - t0, 3)
        (out / f"{job['index']}.json").write_text(json.dumps(result))
        emit("measured", id=job["id"])
    stop.set()
    emit("done", seconds=round(time.monotonic() - started, 3),
         cpu=round(cpu_seconds() - before, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
