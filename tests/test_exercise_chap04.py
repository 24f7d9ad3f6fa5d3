"""The exercise ``chap04_numpy_mlp`` (issue 21, part 4): a two-layer network in NumPy whose four
answers are function items (``softmax``, ``cross_entropy_error``, ``predict``, ``gradient``,
the last returning four arrays), graded through the real function rooms.

The committed exercise and reference are used as they are (``grader assign`` wrote them from
``reference/chap04_numpy_mlp/source.ipynb``). As in ``tests/test_function_answers.py`` most
tests call the function rooms directly (a function item does not depend on the kernel), on the
solution notebook with one cell replaced; one grades a small notebook with the kernel running
it, as ``grader grade`` does. The whole notebook (MNIST, training) runs in ``grader dry-run``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import numpy as np
import pytest

from grader.config import GraderConfig
from grader.function_source import ExtractedFunction, extract_function
from grader.spec import Exercise, load_exercise
from tests.conftest import PROJECT_ROOT
from tests.test_function_answers import feedback, measure_and_score, notebook

EXERCISE = "chap04_numpy_mlp"
POINTS = {"softmax": 20.0, "cross_entropy_error": 20.0, "predict": 20.0, "gradient": 40.0}


@pytest.fixture(scope="module")
def chap04() -> Exercise:
    return load_exercise(PROJECT_ROOT / "exercises" / EXERCISE, PROJECT_ROOT / "reference")


@pytest.fixture(scope="module")
def solution(chap04: Exercise) -> nbformat.NotebookNode:
    return nbformat.read(chap04.reference_dir / "solution.ipynb", as_version=4)


def only(exercise: Exercise, *item_ids: str) -> Exercise:
    return exercise.model_copy(update={"items": tuple(exercise.item(i) for i in item_ids)})


def solution_function(nb: nbformat.NotebookNode, name: str, cell_id: str) -> Any:
    """The solution's function, taken as the grader takes it and run here (our own code)."""
    index = next(i for i, c in enumerate(nb.cells) if c.get("id") == cell_id)
    extracted = extract_function(nb, index, name)
    assert isinstance(extracted, ExtractedFunction)
    namespace: dict[str, Any] = {}
    exec(extracted.source, namespace)
    return namespace[name]


def literal(array: np.ndarray) -> str:
    return f"np.array({array.tolist()!r})"


def test_the_spec_has_the_four_function_items_worth_100(chap04: Exercise):
    assert {i.id: i.points for i in chap04.items} == POINTS
    assert all(i.extract.export == "function" for i in chap04.items)
    assert chap04.item("gradient").compare.options["returns"] == ["dW1", "db1", "dW2", "db2"]
    assert tuple(chap04.runtime.datasets) == ("mnist",)


@pytest.mark.sandbox
def test_the_solution_earns_100_and_the_template_0(chap04, solution, sandbox, tmp_path: Path):
    results = measure_and_score(chap04, solution, sandbox, tmp_path / "solution")
    assert {k: r.score for k, r in results.items()} == POINTS, [
        feedback(r) for r in results.values()]
    template = nbformat.read(chap04.template, as_version=4)
    results = measure_and_score(chap04, template, sandbox, tmp_path / "template")
    assert {k: r.score for k, r in results.items()} == dict.fromkeys(POINTS, 0.0)
    assert all("NotImplementedError" in feedback(r) for r in results.values()), [
        feedback(r) for r in results.values()]


@pytest.mark.sandbox
def test_a_hard_coded_return_value_earns_nothing(chap04, solution, sandbox, tmp_path: Path):
    # the value the notebook's own example prints, returned whatever the input
    cee = solution_function(solution, "cross_entropy_error", "cross-entropy")
    printed = float(cee(np.array([[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]]), np.array([1, 2])))
    nb = notebook(solution, replace={
        "cross-entropy": f"def cross_entropy_error(y, t):\n    return {printed!r}\n"})
    result = measure_and_score(only(chap04, "cross_entropy_error"), nb, sandbox,
                               tmp_path)["cross_entropy_error"]
    assert result.score == 0.0
    assert "values are off" in feedback(result), feedback(result)


@pytest.mark.sandbox
def test_a_softmax_made_stable_by_patching_numpy_earns_nothing(chap04, solution, sandbox,
                                                               tmp_path: Path):
    # in the kernel the earlier cell makes np.exp shift by the row's maximum, so the naive
    # softmax below is right there, large values included; the grader never runs that cell
    patch = ("_exp = np.exp\n"
             "np.exp = lambda v: _exp(v - np.max(v, axis=-1, keepdims=True))\n")
    naive = ("def softmax(x):\n    e = np.exp(x)\n"
             "    return e / np.sum(e, axis=-1, keepdims=True)\n")
    nb = notebook(solution, replace={"softmax": naive}, before={"softmax": [patch]})
    result = measure_and_score(only(chap04, "softmax"), nb, sandbox, tmp_path)["softmax"]
    assert result.score == 0.0
    assert "NaN" in feedback(result), feedback(result)
    # the patched softmax is indeed right where it ran (on a copy of numpy's names: the patch
    # must not change this process's numpy)
    namespace: dict[str, Any] = {"np": SimpleNamespace(**vars(np))}
    exec(patch + naive, namespace)
    assert np.exp is not namespace["np"].exp
    sm = solution_function(solution, "softmax", "softmax")
    large = np.array([[1000.0, 999.0, 700.0], [1.0, 2.0, 3.0]])
    assert np.allclose(namespace["softmax"](large), sm(large))


@pytest.mark.sandbox
def test_a_gradient_right_only_on_the_notebooks_example_earns_nothing(chap04, solution, sandbox,
                                                                      tmp_path: Path):
    # the notebook's gradient check (cell "gradient-check"): its inputs and the right answer
    # for them, stored; any other input gets zeros of the right shapes
    check = np.random.RandomState(0)
    x = check.rand(3, 4)
    t = np.array([0, 2, 1])
    params = [0.1 * check.randn(4, 5), 0.1 * check.randn(5), 0.1 * check.randn(5, 3),
              0.1 * check.randn(3)]
    source = next(c.source for c in solution.cells if c.get("id") == "gradient-check")
    assert "check_rng = np.random.RandomState(0)" in source and "x_check = check_rng.rand(3, 4)" \
        in source  # the example this answer stores is still the notebook's
    right = solution_function(solution, "gradient", "gradient")(x, t, *params)
    stored = ", ".join(literal(g) for g in right)
    hostile = (
        "def gradient(x, t, W1, b1, W2, b2):\n"
        "    if x.shape == (3, 4) and W1.shape == (4, 5):\n"
        f"        return ({stored})\n"
        "    return (np.zeros_like(W1), np.zeros_like(b1), np.zeros_like(W2), "
        "np.zeros_like(b2))\n")
    namespace: dict[str, Any] = {"np": np}
    exec(hostile, namespace)
    assert all(np.allclose(a, b) for a, b in zip(namespace["gradient"](x, t, *params), right,
                                                 strict=True))  # right on the example
    nb = notebook(solution, replace={"gradient": hostile})
    result = measure_and_score(only(chap04, "gradient"), nb, sandbox, tmp_path)["gradient"]
    assert result.score == 0.0
    assert "values are off" in feedback(result), feedback(result)


@pytest.mark.sandbox
def test_a_function_that_reads_the_reference_earns_nothing(chap04, solution, sandbox,
                                                           tmp_path: Path):
    reference = chap04.reference_dir
    paths = [str(reference / "expected.json"), str(reference / "solution.ipynb"),
             str(reference / "source.ipynb"), "/job/plan.json"]
    hostile = (
        "def predict(x, W1, b1, W2, b2):\n"
        "    import json\n"
        f"    for path in {paths!r}:\n"
        "        try:\n"
        "            with open(path) as f:\n"
        "                json.load(f)\n"
        "        except Exception:\n"
        "            pass\n"
        "    return softmax(np.dot(relu(np.dot(x, W1) + b1), W2) + b2)\n")
    nb = notebook(solution, replace={"predict": hostile})
    result = measure_and_score(only(chap04, "predict"), nb, sandbox, tmp_path)["predict"]
    assert result.score == 0.0  # right values, but it tried to read files
    assert "files" in feedback(result), feedback(result)


@pytest.mark.sandbox
def test_a_small_notebook_graded_with_its_kernel(chap04, solution, sandbox):
    """``grader grade``'s path: the kernel runs the patch and prints a right-looking softmax of
    large values; the grader scores the function as written (0) and a right
    ``cross_entropy_error`` beside it (20). No TensorFlow, no training: the cells it needs."""
    from grader.pipeline import grade_notebook

    config = GraderConfig.from_env()
    cells = {c.get("id"): c for c in solution.cells}
    nb = nbformat.v4.new_notebook(metadata=solution.metadata)
    imports = nbformat.v4.new_code_cell("import numpy as np\n")
    imports["id"] = "imports"
    patch = nbformat.v4.new_code_cell(
        "_exp = np.exp\nnp.exp = lambda v: _exp(v - np.max(v, axis=-1, keepdims=True))\n")
    patch["id"] = "patch"
    softmax = nbformat.v4.new_code_cell(
        "def softmax(x):\n    e = np.exp(x)\n    return e / np.sum(e, axis=-1, keepdims=True)\n\n"
        "print(softmax(np.array([[1000.0, 1000.0, 1000.0]])))\n")
    softmax["id"] = "softmax"
    nb.cells = [cells["md-softmax"], imports, patch, softmax, cells["md-cee"],
                cells["cross-entropy"]]
    exercise = only(chap04, "softmax", "cross_entropy_error")
    report = grade_notebook(nbformat.writes(nb).encode(), exercise, config, sandbox)
    executed = nbformat.reads(report.executed_notebook, as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.get("id") == "softmax"
                      for o in c.get("outputs", []))
    assert "0.33333333" in printed and "nan" not in printed  # right in the kernel...
    assert {i.id: i.score for i in report.items} == {"softmax": 0.0,
                                                     "cross_entropy_error": 20.0}, report.items
