"""``grader grade`` without ``--exercise`` (``grader.locate.likely_exercise``): the course's
notebooks are told apart by their graded cells, by id (cell ids may repeat across exercises:
chap06 and chap07 both have ``model``) or, in a copy of the original course notebook, by
content; a notebook answering none is refused with the list to choose from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.config import GraderConfig
from grader.locate import likely_exercise
from grader.notebook import read_notebook
from tests.conftest import PROJECT_ROOT

NOTEBOOKS = [
    ("tests/fixtures/chap06_seed_copy.ipynb", "chap06_cnn"),  # no ids of ours: by content
    ("exercises/chap06_cnn/template.ipynb", "chap06_cnn"),
    ("reference/chap06_cnn/solution.ipynb", "chap06_cnn"),
    ("exercises/chap04_numpy_mlp/template.ipynb", "chap04_numpy_mlp"),
    ("reference/chap04_numpy_mlp/solution.ipynb", "chap04_numpy_mlp"),
    ("exercises/chap07_keras_cnn/template.ipynb", "chap07_keras_cnn"),
    ("reference/chap07_keras_cnn/solution.ipynb", "chap07_keras_cnn"),
]


@pytest.fixture(scope="module")
def course(config: GraderConfig):
    return [config.exercise(exercise_id) for exercise_id in config.exercise_ids()]


@pytest.mark.parametrize(("path", "expected"), NOTEBOOKS)
def test_each_notebook_is_told_its_exercise(course, path: str, expected: str):
    nb = read_notebook((PROJECT_ROOT / path).read_bytes())
    found = likely_exercise(nb, course)
    assert found is not None and found.id == expected


def test_a_notebook_of_no_exercise_is_none(course):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    assert likely_exercise(nb, course) is None
    assert likely_exercise(nb, []) is None


def test_two_exercises_holding_the_same_share_tie(course):
    chap06 = next(e for e in course if e.id == "chap06_cnn")
    twin = chap06.model_copy(update={"id": "chap06_twin"})
    nb = read_notebook((PROJECT_ROOT / "exercises/chap06_cnn/template.ipynb").read_bytes())
    assert likely_exercise(nb, [chap06, twin]) is None


def test_the_cli_refuses_to_guess_and_names_the_choices(config: GraderConfig, tmp_path: Path):
    path = tmp_path / "hello.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]),
                   path)
    done = subprocess.run([sys.executable, "-m", "grader", "grade", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "cannot tell which exercise" in done.stderr
    assert f"one of {', '.join(config.exercise_ids())}" in done.stderr
