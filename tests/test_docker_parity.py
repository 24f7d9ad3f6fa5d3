"""The docker backend grades as bubblewrap does: same statuses, same item scores, on short
notebooks that finish, kill their kernel, run out of memory or out of time; and (slow) the
reference earns 100 and the template 0 through `grader dry-run --sandbox docker`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grader.pipeline import grade_notebook
from grader.report import Outcome

pytestmark = [pytest.mark.sandbox, pytest.mark.docker]

HOG = "import numpy as np\nhog = np.ones((6, 1024, 1024, 1024), dtype=np.uint8)"

CASES = {
    "graded": ({"keep_until": "dense-layer"}, {}, Outcome.GRADED),
    "kernel_died": ({"insert_after": {"conv1": ["import os\nos._exit(3)"]},
                     "keep_until": "conv2"}, {}, Outcome.KERNEL_DIED),
    "out_of_memory": ({"insert_after": {"conv1": [HOG]}, "keep_until": "conv2"},
                      {"memory_bytes": 2 * 1024**3}, Outcome.OUT_OF_MEMORY),
    "timeout": ({"insert_after": {"conv1": ["import time\ntime.sleep(300)"]},
                 "keep_until": "conv2"}, {"notebook_timeout": 25}, Outcome.TIMEOUT),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_status_and_scores_as_bwrap(case, make_notebook, exercise, config, sandbox,
                                         docker_sandbox):
    shape, limits, status = CASES[case]
    data = make_notebook(**shape)
    limits = exercise.limits.replace(**limits) if limits else exercise.limits
    reports = {box.name: grade_notebook(data, exercise, config, box, limits=limits)
               for box in (sandbox, docker_sandbox)}
    bwrap, docker = reports["bwrap"], reports["docker"]
    assert bwrap.outcome is status, bwrap.reason
    assert docker.outcome is bwrap.outcome, docker.reason
    assert [(i.id, i.score, i.status) for i in docker.items] == \
        [(i.id, i.score, i.status) for i in bwrap.items]
    assert (docker.reason and docker.reason.en) == (bwrap.reason and bwrap.reason.en)
    assert not docker_sandbox.client().containers(
        all=True, filters={"label": "org.notebook-grader.sandbox"})


@pytest.mark.slow
def test_dry_run_through_docker(docker_sandbox):
    """`grader dry-run` as the course's CI runs it: the reference trained for its ten epochs
    earns 100 and the template 0. The suite's one full dry-run (each costs two minutes); the
    full ten-epoch path through bubblewrap is test_grading's copy of the course notebook."""
    done = subprocess.run([sys.executable, "-m", "grader", "dry-run", "--sandbox", "docker"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chap06_cnn: solution 100/100 [graded] ok" in done.stderr
    assert "chap06_cnn: template 0/100 [graded] ok" in done.stderr
