"""The clean room: measures exported artefacts in a fresh interpreter with no student code.

Usage (inside a fresh sandbox): ``python main.py PLAN.json``. A warm clean room (started with a
kit, ``grader/kit.py``, before any submission) imports TensorFlow, says ``{"event": "ready"}``
and then waits for ``PLAN.json`` to appear (the host writes it in one rename). Only this folder,
the plan and
its read-only inputs are there: the artefacts the student's kernel exported (untrusted data,
already size- and schema-checked by the host), the grader's inputs (exercise images, fresh
images the student never saw, the test and held-out MNIST images; never labels) and the
reference solution's artefacts. It imports nothing from the ``grader`` package.

For each job of the plan it writes ``out/<n>.json``: ``{"id", "ok": true, ...measurement}`` or
``{"id", "ok": false, "error": {"code", "detail", "ops"}}``, and announces the job on stdout
first (``{"event": "job", "id": ...}``) so that the host can tell which job a crash belongs to
and run the rest again without it. Measurements are data; the host compares and scores.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from graphs import GraphRefused
from measure import (
    measure_graph,
    measure_layer,
    measure_predictions,
    measure_tensor,
)


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _load_artefact(path: str) -> dict[str, Any]:
    try:
        artefact = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        raise GraphRefused("bad_artefact", "the export is not JSON") from None
    if not isinstance(artefact, dict):
        raise GraphRefused("bad_artefact", "the export is not an object")
    return artefact


def run_job(job: dict[str, Any], images: dict[str, np.ndarray]) -> dict[str, Any]:
    artefact = _load_artefact(job["artefact"])
    kind = job["measure"]
    if kind == "tensor":
        with np.load(job["inputs"], allow_pickle=False) as data:
            inputs = [data[f"input{i}"] for i in range(len(data.files))]
        return measure_tensor(artefact, job, inputs)
    if kind == "layer":
        return measure_layer(artefact, job)
    if kind == "graph":
        return measure_graph(artefact, job)
    if kind == "predictions":
        return measure_predictions(artefact, job, images)
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
    plan = json.loads(path.read_text())
    out = Path(plan["out"])
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for name, path in (plan.get("images") or {}).items():
        images[name] = np.load(path, allow_pickle=False)
    for job in plan["jobs"]:
        emit("job", id=job["id"])
        t0 = time.monotonic()
        try:
            result = {"id": job["id"], "ok": True, **run_job(job, images)}
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
    emit("done", seconds=round(time.monotonic() - started, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
