"""Functions as answers (issue 21, part 2): the spec, the cases drawn per run, the extraction
from the notebook's source, the function rooms, the comparison, and the attacks.

The exercise is ``tests/fixtures/functions`` (``numpy_funcs``: ``softmax`` and ``relu``). The
sandbox tests call the function rooms directly (no kernel: a function item does not depend on
it), and a few grade whole notebooks as ``grader grade`` does, the kernel running them as usual.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from grader.config import GraderConfig
from grader.function_cases import FunctionCompare, draw_cases, read_compare
from grader.function_records import decode_array, read_records
from grader.function_room import measure_functions
from grader.function_source import (
    ExtractedFunction,
    ExtractionFailure,
    ExtractLimits,
    extract_function,
)
from grader.locate import locate_items
from grader.report import ItemResult
from grader.scoring import Evidence, score_items
from grader.spec import Compare, Exercise, SpecError, load_exercise
from tests.conftest import FIXTURES

ROOT = FIXTURES / "functions"
SOLUTION_SOFTMAX = """def softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
"""
SOLUTION_RELU = "def relu(x):\n    return np.maximum(x, 0)\n"


def fixture_exercise(name: str) -> tuple[Exercise, nbformat.NotebookNode]:
    """An exercise of ``tests/fixtures/functions`` and its reference solution."""
    return (load_exercise(ROOT / "exercises" / name, ROOT / "reference"),
            nbformat.read(ROOT / "reference" / name / "solution.ipynb", as_version=4))


@pytest.fixture(scope="module")
def fexercise() -> Exercise:
    return fixture_exercise("numpy_funcs")[0]


@pytest.fixture(scope="module")
def solution() -> nbformat.NotebookNode:
    return fixture_exercise("numpy_funcs")[1]


def notebook(base: nbformat.NotebookNode, replace: dict[str, str] | None = None,
             before: dict[str, list[str]] | None = None) -> nbformat.NotebookNode:
    """``base`` with cells replaced by id and code cells inserted before a cell id."""
    nb = copy.deepcopy(base)
    cells = []
    for cell in nb.cells:
        for n, source in enumerate((before or {}).get(cell.get("id"), [])):
            extra = nbformat.v4.new_code_cell(source)
            extra["id"] = f"{cell['id']}-before{n}"
            cells.append(extra)
        if replace and cell.get("id") in replace:
            cell.source = replace[cell["id"]]
        cells.append(cell)
    nb.cells = cells
    return nb


def with_options(exercise: Exercise, item_id: str, **options: Any) -> Exercise:
    """The exercise with one function item's compare options changed."""
    items = []
    for item in exercise.items:
        if item.id == item_id:
            compare = Compare(kind="function", **{**dict(item.compare.options), **options})
            item = item.model_copy(update={"compare": compare})
        items.append(item)
    return exercise.model_copy(update={"items": tuple(items)})


def measure_and_score(exercise: Exercise, nb: nbformat.NotebookNode, sandbox: Any,
                      workdir: Path, seed: int | None = None) -> dict[str, ItemResult]:
    """The function rooms on ``nb``, then scoring, as the pipeline does (without the kernel)."""
    located = locate_items(nb, exercise)
    functions = measure_functions(exercise, nb, located, sandbox, workdir, seed=seed)
    evidence = Evidence(located=located, runner=None, sources={}, exports={}, measured=None,
                        functions=functions)
    return {r.id: r for r in score_items(exercise, evidence)}


def feedback(result: ItemResult) -> str:
    return " / ".join(t.en for t in result.feedback)


# --- the spec ---------------------------------------------------------------------------------


def test_the_fixture_spec_reads_and_its_function_items_are_checked(fexercise: Exercise,
                                                                   tmp_path: Path):
    assert [i.extract.export for i in fexercise.items] == ["function", "function"]
    source = (ROOT / "exercises" / "numpy_funcs" / "exercise.toml").read_text()
    folder = tmp_path / "numpy_funcs"
    folder.mkdir()
    for bad, message in [
        (source.replace('low = -10.0, high = 10.0', 'low = -10.0, hgh = 10.0'), "hgh"),
        (source.replace('shape = ["n", "k"], low = -10.0', 'shape = ["n", "m"], low = -10.0'),
         "unknown dimension 'm'"),
        (source.replace('kind = "function"\ncases = 8', 'kind = "op_output"\ncases = 8'),
         'goes with compare.kind = "function"'),
        (source.replace('name = "softmax" }', 'name = "softmax", expr = "x" }'), "name"),
    ]:
        assert bad != source
        (folder / "exercise.toml").write_text(bad)
        with pytest.raises(SpecError, match=message):
            load_exercise(folder)


def test_cases_are_drawn_from_the_seed_with_the_edge_cases_first(fexercise: Exercise):
    spec = read_compare("function", dict(fexercise.item("softmax").compare.options))
    assert isinstance(spec, FunctionCompare)
    one, same, other = draw_cases(spec, 1), draw_cases(spec, 1), draw_cases(spec, 2)
    assert [c.name for c in one][:3] == ["large values", "batch of one", "zeros"]
    assert len(one) == 3 + 8
    for a, b in zip(one, same, strict=True):
        assert np.array_equal(a.args[0], b.args[0])
    assert any(a.args[0].shape != b.args[0].shape or not np.array_equal(a.args[0], b.args[0])
               for a, b in zip(one[3:], other[3:], strict=True))
    large, single, zeros = one[0].args[0], one[1].args[0], one[2].args[0]
    assert large.min() >= 700 and single.shape[0] == 1 and not zeros.any()
    shapes = {c.args[0].shape for s in range(20) for c in draw_cases(spec, s)[3:]}
    assert len(shapes) > 20  # shapes vary between runs, not only values


# --- extraction (host) ------------------------------------------------------------------------


def test_the_function_comes_with_its_imports_helpers_and_constants_only(solution):
    nb = notebook(solution, replace={
        "softmax": "def softmax(x):\n    return _exp(x - x.max(axis=-1, keepdims=True)) / "
                   "_exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True)\n"
                   "print(open('/etc/hostname').read())\n"},
        before={"softmax": ["%matplotlib inline\nSCALE = 1.0\nnp.exp = lambda v: v\n"
                            "import os\nos.system('true')\n",
                            "def _exp(v):\n    return np.exp(v * SCALE)\n"]})
    index = next(i for i, c in enumerate(nb.cells) if c.get("id") == "softmax")
    extracted = extract_function(nb, index, "softmax")
    assert isinstance(extracted, ExtractedFunction)
    assert set(extracted.taken) == {"np", "_exp", "SCALE"}
    assert "np.exp =" not in extracted.source and "os" not in extracted.source
    assert "open(" not in extracted.source and "print" not in extracted.source
    namespace: dict[str, Any] = {}
    exec(extracted.source, namespace)  # the module runs on its own
    assert np.allclose(namespace["softmax"](np.zeros((1, 4))), 0.25)


@pytest.mark.parametrize(("cells", "code", "says"), [
    ({"softmax": "def soft_max(x):\n    return x\n"}, "missing", "No function named softmax"),
    ({"softmax": "def softmax(x)\n    return x\n"}, "syntax", "not valid Python"),
    ({"softmax": "def softmax(x):\n    return x * W\n"}, "unbound", "uses W"),
    ({"softmax": "W = np.ones(3)\ndef softmax(x):\n    return x * W\n"}, "not_run", "uses W"),
    ({"softmax": "softmax = lambda x: x\n"}, "missing", "other than a def"),
    ({"softmax": "def softmax(x):\n    nonlocal y\n    return x\n"}, "syntax", "nonlocal"),
    ({"imports": "from numpy import *\n", "softmax": "def softmax(x):\n    return exp(x)\n"},
     "unbound", "uses exp"),
    ({"softmax": "def softmax(x):\n    return x\nsoftmax = None\n"}, "missing", "other than a def"),
    ({"softmax": "x = 1\n", "imports": "import numpy as np\ndef softmax(x):\n    return x\n"},
     "missing", "another cell"),
])
def test_an_answer_that_cannot_be_taken_says_why(solution, cells, code, says):
    nb = notebook(solution, replace=cells)
    index = next(i for i, c in enumerate(nb.cells) if c.get("id") == "softmax")
    failure = extract_function(nb, index, "softmax")
    assert isinstance(failure, ExtractionFailure)
    assert failure.code == code and says in failure.text.en, failure.text.en
    assert failure.text.ja


def test_extraction_is_bounded(solution):
    deep = "def softmax(x):\n    return " + "-" * 150 + "x\n"
    big = "def softmax(x):\n    return x\n" + "# pad\n" * 20_000
    for source, code in [(deep, "syntax"), (big, "too_large")]:
        nb = notebook(solution, replace={"softmax": source})
        index = next(i for i, c in enumerate(nb.cells) if c.get("id") == "softmax")
        failure = extract_function(nb, index, "softmax", ExtractLimits(max_depth=60))
        assert isinstance(failure, ExtractionFailure) and failure.code == code


# --- what a room hands back (host) ------------------------------------------------------------


def test_records_are_checked_and_capped(tmp_path: Path):
    good = np.arange(6, dtype=np.float64).reshape(2, 3)
    import base64
    import json
    data = base64.b64encode(good.tobytes()).decode()
    lines = [
        {"case": 0, "pass": 0, "ok": True, "shape": [2, 3], "dtype": "<f8", "data": data},
        {"case": 1, "pass": 0, "ok": True, "shape": [3, 3], "dtype": "<f8", "data": data},
        {"case": 2, "pass": 0, "ok": True, "shape": [2, 3], "dtype": "|O", "data": data},
        {"case": 3, "pass": 0, "ok": True, "shape": [2, 3], "dtype": "<f8", "data": data},
        {"case": 0, "pass": 5, "ok": False, "code": "error"},
        "garbage",
    ]
    path = tmp_path / "out.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{not json\n")
    side = read_records(path, 10_000, passes=1, cases=4, caps=[10, 10, 10, 5])
    assert np.array_equal(side.call(0, 0).array, good)
    assert [side.call(0, n).code for n in (1, 2, 3)] == ["bad_output"] * 3  # size, dtype, cap
    assert side.bad_lines == 3
    assert decode_array([10**9], "<f8", "", 10**12) is None
    small = read_records(path, 50, passes=1, cases=4, caps=[10] * 4)  # cut: nothing whole
    assert small.calls == {}


# --- the function rooms (sandbox) -------------------------------------------------------------


@pytest.mark.sandbox
def test_the_solution_earns_full_marks_in_10_of_10_runs(fexercise, solution, sandbox,
                                                         tmp_path: Path):
    for run in range(10):
        results = measure_and_score(fexercise, solution, sandbox, tmp_path / str(run))
        assert {k: (r.score, r.max_score) for k, r in results.items()} == {
            "softmax": (2.0, 2.0), "relu": (1.0, 1.0)}, [feedback(r) for r in results.values()]


@pytest.mark.sandbox
def test_a_helper_in_an_earlier_cell_and_a_numpy_patch_that_is_not_run(fexercise, solution,
                                                                         sandbox, tmp_path):
    # the kernel would see relu right (np.abs patched to a ReLU); the grader never runs the
    # patch, so the function is what it is: abs, wrong. softmax uses a helper and a constant.
    nb = notebook(solution, replace={
        "relu": "def relu(x):\n    return np.abs(x)\n",
        "softmax": "def softmax(x):\n    e = np.exp(_centred(x))\n    return e / e.sum(axis=-1, keepdims=True)\n"},
        before={"softmax": ["AXIS = -1\ndef _centred(x):\n    return x - x.max(axis=AXIS, keepdims=True)\n",
                            "_abs = np.abs\nnp.abs = lambda v: np.maximum(v, 0)\n"]})
    results = measure_and_score(fexercise, nb, sandbox, tmp_path)
    assert results["softmax"].score == 2.0, feedback(results["softmax"])
    assert results["relu"].score == 0.0
    assert "values are off" in feedback(results["relu"])


HOSTILE_SOFTMAX = {
    "hard-coded": ("def softmax(x):\n    return np.array([[0.09003057, 0.24472847, 0.66524096],"
                   " [1 / 3, 1 / 3, 1 / 3]])\n", "shape"),
    "example only": ("def softmax(x):\n    if x.shape == (2, 3):\n        return np.array("
                     "[[0.09003057, 0.24472847, 0.66524096], [1 / 3, 1 / 3, 1 / 3]])\n"
                     "    return np.full(x.shape, 1.0 / x.shape[-1])\n", "values are off"),
    "reads the reference": (
        "def softmax(x):\n    import json\n    for path in ['/work/main/reference/numpy_funcs/"
        "expected.json', '/opt/grader/functionroom/main.py', '/job/plan.json']:\n"
        "        try:\n            return np.asarray(json.load(open(path)))\n"
        "        except Exception:\n            pass\n    return x\n", "files"),
    "lists the folders": ("def softmax(x):\n    import os\n    return np.full(x.shape, "
                          "len(os.listdir('/')))\n", "files"),
    "searches the process for answers": (
        "def softmax(x):\n    import gc, sys\n    frame = sys._getframe()\n    seen = []\n"
        "    while frame is not None:\n        seen += list(frame.f_locals.values()) + "
        "list(frame.f_globals.values())\n        frame = frame.f_back\n"
        "    for obj in seen + gc.get_objects():\n"
        "        if isinstance(obj, np.ndarray) and obj is not x and obj.shape == x.shape "
        "and np.allclose(obj.sum(axis=-1), 1):\n            return obj\n    return x\n",
        "values are off"),
    "reads the clock": ("def softmax(x):\n    import time\n    return x * 0 + time.time()\n",
                        "clock"),
    "reads datetime": ("def softmax(x):\n    import datetime\n    datetime.datetime.now()\n"
                       "    return x\n", "clock"),
    "answers differently each call": (
        "def softmax(x):\n    e = np.exp(x - x.max(axis=-1, keepdims=True))\n"
        "    return e / e.sum(axis=-1, keepdims=True) + np.random.rand() * 1e-12\n", "different"),
    "keeps state between calls": (
        "CALLS = [0]\ndef softmax(x):\n    CALLS[0] += 1\n    e = np.exp(x - x.max(axis=-1, keepdims=True))\n"
        "    return e / e.sum(axis=-1, keepdims=True) * (1 + 1e-3 * (CALLS[0] > 11))\n",
        "different"),
    "uses the network": ("def softmax(x):\n    import socket\n    socket.create_connection("
                         "('10.0.0.1', 80), timeout=1)\n    return x\n", "network"),
    "starts a process": ("def softmax(x):\n    import os\n    os.system('cat /etc/passwd')\n"
                         "    return x\n", "process"),
    "reads a file when defined": ("def softmax(x, _=open('/etc/hostname').read()):\n"
                                  "    return x\n", "files"),
    "floods the output": ("def softmax(x):\n    return np.broadcast_to(1.0, (10**9,))\n",
                          "far larger"),
    "eats the memory": ("def softmax(x):\n    return np.ones(2**28) + x.sum()\n", "memory"),
    "returns no array": ("def softmax(x):\n    return {'a': x}\n", "not an array"),
    "unstable (overflows)": ("def softmax(x):\n    e = np.exp(x)\n    return e / e.sum(axis=-1, "
                             "keepdims=True)\n", "NaN"),
}


@pytest.mark.sandbox
def test_hostile_functions_earn_nothing_and_say_why(fexercise, solution, sandbox, tmp_path):
    only_softmax = fexercise.model_copy(update={"items": (fexercise.item("softmax"),)})
    for n, (name, (source, says)) in enumerate(HOSTILE_SOFTMAX.items()):
        nb = notebook(solution, replace={"softmax": source})
        result = measure_and_score(only_softmax, nb, sandbox, tmp_path / str(n))["softmax"]
        assert result.score == 0.0, name
        assert says in feedback(result), (name, feedback(result))


@pytest.mark.sandbox
def test_an_endless_function_is_stopped_within_its_budget(fexercise, solution, sandbox, tmp_path):
    exercise = with_options(fexercise, "relu", seconds=3.0)
    exercise = exercise.model_copy(update={"items": (exercise.item("relu"),)})
    nb = notebook(solution, replace={"relu": "def relu(x):\n    while True:\n        pass\n"})
    result = measure_and_score(exercise, nb, sandbox, tmp_path)["relu"]
    assert result.score == 0.0
    assert "ran past its budget (3 s" in feedback(result), feedback(result)
    assert result.details["seconds"] < 30


@pytest.mark.sandbox
def test_proportional_scoring_when_the_spec_asks_for_it(fexercise, solution, sandbox, tmp_path):
    exercise = with_options(fexercise, "relu", scoring="cases")
    exercise = exercise.model_copy(update={"items": (exercise.item("relu"),)})
    nb = notebook(solution, replace={"relu": "def relu(x):\n    return np.zeros_like(x)\n"})
    result = measure_and_score(exercise, nb, sandbox, tmp_path)["relu"]
    # right on the all-negative edge case (and the single value when it is negative)
    passed, total = result.details["passed"], result.details["total"]
    assert result.details["cases"][0] == {"name": "all negative", "inputs": result.details[
        "cases"][0]["inputs"], "passed": True}
    assert 1 <= passed <= 2 and total == 8
    assert result.score == pytest.approx(passed / total, abs=1e-3), feedback(result)
    all_or_nothing = measure_and_score(
        exercise.model_copy(update={"items": (fexercise.item("relu"),)}), nb, sandbox,
        tmp_path / "all")["relu"]
    assert all_or_nothing.score == 0.0
    assert "only when every case is right" in feedback(all_or_nothing)


# --- grading whole notebooks, the kernel running them (sandbox) --------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, sandbox: Any
          ) -> tuple[Exercise, GraderConfig]:
    """The fixture exercise copied and its reference built (``grader build-reference``)."""
    from grader.reference_build import build_reference

    root = tmp_path_factory.mktemp("functions")
    shutil.copytree(ROOT, root, dirs_exist_ok=True)
    config = GraderConfig.from_env({**os.environ, "GRADER_EXERCISES": str(root / "exercises"),
                                    "GRADER_REFERENCE": str(root / "reference")})
    exercise = config.exercise("numpy_funcs")
    build_reference(exercise, config, sandbox)
    return exercise, config


@pytest.mark.sandbox
def test_grade_the_solution_the_template_and_a_patch_in_the_kernel(built, solution, sandbox):
    from grader.pipeline import grade_notebook

    exercise, config = built
    report = grade_notebook(nbformat.writes(solution).encode(), exercise, config, sandbox)
    assert (report.score, report.max_score) == (3.0, 3.0), report.items
    assert report.timings["functions"] > 0
    template = nbformat.read(exercise.template, as_version=4)
    report = grade_notebook(nbformat.writes(template).encode(), exercise, config, sandbox)
    assert report.score == 0.0
    assert "NotImplementedError" in feedback(report.items[0])
    # the kernel runs the patch and prints a right-looking relu; the grader runs neither
    patched = notebook(solution, replace={
        "relu": "def relu(x):\n    return np.abs(x)\n\nprint(relu(np.array([-1.0, 2.0])))\n"},
        before={"relu": ["np.abs = lambda v: np.maximum(v, 0)\n"]})
    report = grade_notebook(nbformat.writes(patched).encode(), exercise, config, sandbox)
    executed = nbformat.reads(report.executed_notebook, as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.get("id") == "relu"
                      for o in c.get("outputs", []))
    assert "[0. 2.]" in printed  # right in the kernel...
    assert [i.score for i in report.items] == [2.0, 0.0]  # ...and worth nothing


def test_a_missing_reference_is_an_error_not_a_crash(fexercise, solution, tmp_path: Path):
    exercise = fexercise.model_copy(update={"reference_dir": tmp_path / "nowhere"})
    located = locate_items(solution, exercise)
    functions = measure_functions(exercise, solution, located, sandbox=None,  # type: ignore[arg-type]
                                  workdir=tmp_path)
    evidence = Evidence(located=located, runner=None, sources={}, exports={}, measured=None,
                        functions=functions)
    results = score_items(exercise, evidence)
    assert [r.score for r in results] == [0.0, 0.0]
    assert all("reference solution could not be read" in feedback(r) for r in results)


@pytest.mark.parametrize(("source", "says"), [
    ("def soft_max(x):\n    return x\n", "No function named softmax"),
    ("def softmax(x)\n    return x\n", "not valid Python"),
])
def test_a_missing_or_broken_function_is_an_item_error_saying_so(fexercise, solution, source,
                                                                 says, tmp_path: Path):
    # nothing to run: no sandbox is asked for (None would fail if it were)
    nb = notebook(solution, replace={"softmax": source})
    only_softmax = fexercise.model_copy(update={"items": (fexercise.item("softmax"),)})
    results = measure_and_score(only_softmax, nb, None, tmp_path)
    assert results["softmax"].score == 0.0 and str(results["softmax"].status) == "error"
    assert says in feedback(results["softmax"])
    assert results["softmax"].feedback[0].ja


def test_literal_arguments_and_written_out_edge_cases():
    spec = read_compare("function", {
        "args": [{"shape": ["n", 3], "dtype": "int64", "low": -2.0, "high": 2.0},
                 {"value": -1}],
        "dims": {"n": [2, 5]}, "cases": 3,
        "edge_cases": [{"name": "written", "args": [{"values": [[1, 2, 3]]}]}]})
    cases = draw_cases(spec, 7)
    assert cases[0].name == "written" and cases[0].args[0].tolist() == [[1, 2, 3]]
    assert all(c.args[1] == -1 for c in cases)
    for case in cases[1:]:
        array = case.args[0]
        assert array.dtype == np.int64 and array.shape[1] == 3 and 2 <= array.shape[0] <= 5
        assert array.min() >= -2 and array.max() <= 2
    assert cases[1].describe().startswith("arg1: ") and "arg2: -1" in cases[1].describe()
