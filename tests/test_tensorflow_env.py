"""TensorFlow's settings in the grader's sandboxes (grader/tensorflow_env.py): the student's
kernel and the clean room run TensorFlow with oneDNN's kernels, which TensorFlow leaves off by
itself on CPUs without AVX-512 (this machine's)."""

from __future__ import annotations

import dataclasses
import sys

import nbformat

from grader.clean_room import cleanroom_request
from grader.pipeline import grade_notebook
from grader.report import Outcome
from grader.tensorflow_env import TENSORFLOW_ENV

#: Prints the setting and whether TensorFlow took it (its own answer, not the variable's).
ONEDNN_PROBE = """
import os
from tensorflow.python.util import _pywrap_util_port
print("ONEDNN", os.environ.get("TF_ENABLE_ONEDNN_OPTS"), _pywrap_util_port.IsMklEnabled())
"""


def printed(report, cell_id: str) -> str:
    nb = nbformat.reads(report.executed_notebook, as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream")


def test_the_students_kernel_runs_tensorflow_with_onednn(make_notebook, exercise, config,
                                                          sandbox):
    data = make_notebook(insert_after={"imports": [ONEDNN_PROBE]}, keep_until="imports")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert "ONEDNN 1 True" in printed(report, "imports-extra0")


def test_the_clean_room_runs_tensorflow_with_onednn(sandbox, tmp_path):
    request = cleanroom_request(tmp_path)
    assert dict(request.env).items() >= TENSORFLOW_ENV.items()
    probe = dataclasses.replace(request, argv=[sys.executable, "-c", ONEDNN_PROBE])
    result = sandbox.run(probe)
    assert result.exit_code == 0, result.stderr[-2000:].decode(errors="replace")
    assert "ONEDNN 1 True" in result.stdout.decode()


def test_without_the_setting_tensorflow_leaves_onednn_off_here(sandbox, tmp_path):
    """What the setting changes on this machine: TensorFlow's own default is off (were it on,
    the setting would change nothing and its figures in docs/sandbox.md would not hold)."""
    request = cleanroom_request(tmp_path)
    env = {k: v for k, v in request.env.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    probe = dataclasses.replace(request, argv=[sys.executable, "-c", ONEDNN_PROBE], env=env)
    result = sandbox.run(probe)
    assert result.exit_code == 0, result.stderr[-2000:].decode(errors="replace")
    assert "ONEDNN None False" in result.stdout.decode()
