"""Each run's training images in an order of its own (``[runtime] data_order = "per_run"``,
the default): the template fixes its seeds and training is deterministic, so without it every
honest student writing the expected code would train the very same model, and a model shared
by copying could not be told from it (docs/model-fingerprints.md). The order is drawn by the
host per run; the images keep their labels; within a run the order is one."""

from __future__ import annotations

import json

import nbformat
import pytest

from grader import Outcome, grade_notebook

pytestmark = pytest.mark.sandbox

PROBE = """
import hashlib, json
import numpy as np
from tensorflow.keras.datasets import mnist as _probe_mnist
(_x1, _y1), (_xt, _yt) = _probe_mnist.load_data()
(_x2, _y2), _ = _probe_mnist.load_data()
with np.load("/data/mnist.npz") as _file:
    _fx, _fy = _file["x_train"], _file["y_train"]
def _pairs(x, y):
    return sorted(hashlib.sha1(image.tobytes() + bytes([int(label)])).hexdigest()
                  for image, label in zip(x, y))
print("PROBE", json.dumps({
    "order": hashlib.sha1(_y1.tobytes() + _x1[:50].tobytes()).hexdigest(),
    "same_within_run": bool((_x1 == _x2).all() and (_y1 == _y2).all()),
    "file_order": bool((_x1 == _fx).all()),
    "same_pairs": _pairs(_x1[:2000], _y1[:2000]) == _pairs(
        *(lambda idx: (_fx[idx], _fy[idx]))(np.isin(
            [hashlib.sha1(i.tobytes()).hexdigest() for i in _fx],
            [hashlib.sha1(i.tobytes()).hexdigest() for i in _x1[:2000]]))),
    "count": len(_x1), "test": len(_xt)}))
"""


def probe(report) -> dict:
    nb = nbformat.reads(report.executed_notebook, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.get("id") == "imports-extra0"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    return json.loads(text.split("PROBE ", 1)[1].splitlines()[0])


def test_each_run_gets_the_training_images_in_an_order_of_its_own(make_notebook, exercise,
                                                                   config, sandbox):
    data = make_notebook(insert_after={"imports": [PROBE]}, keep_until="conv1")
    seen = []
    for _ in range(2):
        report = grade_notebook(data, exercise, config, sandbox)
        assert report.outcome is Outcome.GRADED, report.reason
        seen.append(probe(report))
    first, second = seen
    assert first["order"] != second["order"]  # two runs, two orders
    for run in seen:
        assert run["same_within_run"] and not run["file_order"]
        assert run["same_pairs"]  # every image keeps its label
        assert run["count"] == 55_000 and run["test"] == 10_000


def test_the_files_order_when_the_exercise_asks_for_it(make_notebook, exercise, config,
                                                        sandbox):
    fixed = exercise.model_copy(update={"runtime": exercise.runtime.model_copy(
        update={"data_order": "file"})})
    data = make_notebook(insert_after={"imports": [PROBE]}, keep_until="conv1")
    report = grade_notebook(data, fixed, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert probe(report)["file_order"]
