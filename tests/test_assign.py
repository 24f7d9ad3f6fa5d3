"""``grader assign``: an annotated solution notebook -> spec, template and solution
(``grader/assign.py``), its errors, chap06_cnn's round trip, and ``grader dry-run --exercises``
over a course folder."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import nbformat
import pytest

from grader.assign import AssignError, make_assignment
from grader.cli import main
from grader.config import PROJECT_ROOT
from grader.markers import Placeholders, transform_source
from grader.spec import load_exercise

CONFIG = '''# ASSIGNMENT CONFIG
# A one-item exercise: a convolution.
[exercise]
id = "tiny_conv"
title = { ja = "畳み込み", en = "A convolution" }

[runtime]
tf1 = true   # tf.placeholder, tf.Session

[limits]
cell_timeout = 120
notebook_timeout = 300
'''

ITEM = '''# ITEM
# --- the one item ---
id = "conv"
points = 6
title = { ja = "畳み込み (VALID)", en = "Convolution (VALID)" }
cell = { contains = ["out"] }
extract = { export = "tensor", fresh = "out", expr = "out", feed = { x = "image" }, context = ["W"] }
compare = { kind = "op_output", op = "conv", window = 3, stride = 1, padding = "VALID", atol = 1e-4 }
hint = { ja = "tf.nn.conv2d を使います。", en = "Use tf.nn.conv2d." }
'''

SETUP = '''import numpy as np
import tensorflow as tf

tf.reset_default_graph()
x = tf.placeholder(tf.float32)
image = np.arange(49, dtype='float32').reshape(1, 7, 7, 1) % 3
W = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype='float32').reshape(3, 3, 1, 1)'''

ANSWER = '''### BEGIN SOLUTION
out = tf.nn.conv2d(x, W, strides=[1, 1, 1, 1], padding='VALID')
### END SOLUTION
with tf.Session() as sess:
    print(sess.run(out, feed_dict={x: image}).reshape(5, 5))  # PROMPT: print(sess.run(out, feed_dict={x: image}))'''

CELLS = [
    ("raw", CONFIG, "config"),
    ("markdown", "# A convolution\n\nCompute `out`, the VALID convolution of `image` by `W`.",
     "intro"),
    ("code", SETUP, "setup"),
    ("raw", ITEM, "item-conv"),
    ("code", ANSWER, "answer"),
    ("markdown", "### SOLUTION ONLY\nThe output is 5x5.", "note"),
    ("code", "### TEMPLATE ONLY\n# Run every cell, then hand the notebook in.", "hand-in"),
]


def write_notebook(path: Path, cells: list[tuple[str, str, str]]) -> Path:
    made = []
    for kind, source, cell_id in cells:
        cell = {"raw": nbformat.v4.new_raw_cell, "markdown": nbformat.v4.new_markdown_cell,
                "code": nbformat.v4.new_code_cell}[kind](source)
        cell.id = cell_id
        made.append(cell)
    nb = nbformat.v4.new_notebook(cells=made, metadata={"kernelspec": {
        "display_name": "Python 3", "language": "python", "name": "python3"}})
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def sources(text: str) -> dict[str, tuple[str, str]]:
    nb = nbformat.reads(text, as_version=4)
    return {cell.id: (cell.cell_type, cell.source) for cell in nb.cells}


# --- the markers -----------------------------------------------------------------------------


def test_a_solution_block_becomes_nbgraders_placeholder_at_its_indentation():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION"
    template, solution, problems = transform_source(source, "code", 1, Placeholders())
    assert problems == []
    assert solution == "def f(x):\n    return x + 1"
    assert template == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"


def test_no_prompt_blocks_go_and_prompt_blocks_are_uncommented_in_the_template_only():
    source = ("# BEGIN SOLUTION NO PROMPT\nx = 5\n# END SOLUTION\n"
              "### BEGIN PROMPT\n# x = ...  # a number\n### END PROMPT\nprint(x)")
    template, solution, problems = transform_source(source, "code", 1, Placeholders())
    assert problems == []
    assert solution == "x = 5\nprint(x)"
    assert template == "x = ...  # a number\nprint(x)"


def test_solution_lines_keep_their_left_hand_side_and_a_trailing_comma():
    source = ("a = compute(1)  # SOLUTION\n"
              "f(\n"
              "  low=-np.sqrt(6 / n),  # SOLUTION\n"
              "  high=2)\n"
              "    return a * 2  # SOLUTION\n"
              "print(a)  # SOLUTION\n"
              "show(a, 5)  # PROMPT: show(a, ?)")
    template, solution, problems = transform_source(source, "code", 1, Placeholders("#WRITE ME"))
    assert problems == []
    assert solution == ("a = compute(1)\nf(\n  low=-np.sqrt(6 / n),\n  high=2)\n    return a * 2\n"
                        "print(a)\nshow(a, 5)")
    assert template == ("a = #WRITE ME\nf(\n  low=#WRITE ME,\n  high=2)\n    return #WRITE ME\n"
                        "show(a, ?)")


def test_markdown_solution_blocks_read_your_answer_here():
    template, solution, _ = transform_source("Why?\n### BEGIN SOLUTION\nBecause.\n"
                                             "### END SOLUTION", "markdown", 1, Placeholders())
    assert (template, solution) == ("Why?\nYOUR ANSWER HERE", "Why?\nBecause.")


# --- a small exercise -----------------------------------------------------------------------


def test_assign_writes_a_valid_spec_a_template_without_the_answer_and_the_solution(tmp_path):
    source = write_notebook(tmp_path / "tiny.ipynb", CELLS)
    assignment = make_assignment(source, "tiny.ipynb")
    paths = assignment.write(tmp_path / "course")
    assert [p.relative_to(tmp_path / "course").as_posix() for p in paths] == [
        "exercises/tiny_conv/exercise.toml", "exercises/tiny_conv/template.ipynb",
        "reference/tiny_conv/solution.ipynb"]
    exercise = load_exercise(tmp_path / "course/exercises/tiny_conv")
    assert exercise.reference_dir == tmp_path / "course/reference/tiny_conv"
    (item,) = exercise.items
    assert (item.id, item.points, item.cell.id, item.cell.contains) == ("conv", 6, "answer",
                                                                        ("out",))
    assert item.compare.options["padding"] == "VALID" and item.extract.fresh == "out"
    spec = paths[0].read_text(encoding="utf-8")
    assert "# --- the one item ---\n[[items]]" in spec and "# A one-item exercise" in spec
    assert "ASSIGNMENT CONFIG" not in spec and "# ITEM" not in spec

    template = sources(paths[1].read_text(encoding="utf-8"))
    solution = sources(paths[2].read_text(encoding="utf-8"))
    assert list(template) == ["intro", "setup", "answer", "hand-in"]
    assert list(solution) == ["intro", "setup", "answer", "note"]
    assert template["answer"][1] == ("# YOUR CODE HERE\nraise NotImplementedError()\n"
                                     "with tf.Session() as sess:\n"
                                     "    print(sess.run(out, feed_dict={x: image}))")
    assert "conv2d" not in paths[1].read_text(encoding="utf-8")
    assert "5, 5" not in paths[1].read_text(encoding="utf-8")
    assert solution["answer"][1] == ("out = tf.nn.conv2d(x, W, strides=[1, 1, 1, 1], "
                                     "padding='VALID')\nwith tf.Session() as sess:\n"
                                     "    print(sess.run(out, feed_dict={x: image})"
                                     ".reshape(5, 5))")
    assert solution["setup"] == template["setup"] == ("code", SETUP)
    assert solution["note"] == ("markdown", "The output is 5x5.")
    assert template["hand-in"] == ("code", "# Run every cell, then hand the notebook in.")


def test_cell_ids_missing_from_an_old_notebook_are_given(tmp_path):
    path = write_notebook(tmp_path / "tiny.ipynb", CELLS)
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["nbformat_minor"] = 4
    for cell in raw["cells"]:
        del cell["id"]
    path.write_text(json.dumps(raw), encoding="utf-8")
    assignment = make_assignment(path)
    (item,) = tomllib.loads(assignment.exercise_toml)["items"]
    template = nbformat.reads(assignment.template, as_version=4)
    assert item["cell"]["id"] in [cell.id for cell in template.cells]


@pytest.mark.parametrize("cell", [
    "",
    "cell = {}",
    'cell = { contains = ["out"] }',
    'cell.contains = ["out"]',
    '[cell]\ncontains = ["out"]',
    'cell = { id = "answer" }',
])
def test_the_graded_cells_id_is_added_however_the_cell_key_is_written(tmp_path, cell):
    item = ITEM.replace('cell = { contains = ["out"] }\n', "")
    item = item.replace("# ITEM\n", "# ITEM\n" + (cell + "\n" if cell.startswith("[") is False
                                                   else ""))
    if cell.startswith("["):
        item += cell + "\n"
    cells = [(k, item if i == "item-conv" else s, i) for k, s, i in CELLS]
    assignment = make_assignment(write_notebook(tmp_path / "a.ipynb", cells))
    (found,) = tomllib.loads(assignment.exercise_toml)["items"]
    assert found["cell"]["id"] == "answer"
    assert found["id"] == "conv" and found["points"] == 6


def _replace(cells, cell_id, old, new):
    return [(k, s.replace(old, new) if i == cell_id else s, i) for k, s, i in cells]


BROKEN = {
    "unclosed solution": (_replace(CELLS, "answer", "### END SOLUTION\n", ""),
                          "cell 5 (### BEGIN SOLUTION): no ### END SOLUTION after it"),
    "unknown item key": (_replace(CELLS, "item-conv", "points = 6", "points = 6\npoints_x = 1"),
                         "cell 4 (# ITEM): unknown key 'points_x'"),
    "points not a number": (_replace(CELLS, "item-conv", "points = 6", 'points = "six"'),
                            "cell 4 (# ITEM): points: expected int or float, got str"),
    "no id": (_replace(CELLS, "item-conv", 'id = "conv"\n', ""),
              "cell 4 (# ITEM): missing key 'id'"),
    "duplicate id": ([*CELLS[:5], ("raw", ITEM, "item-2"), ("code", ANSWER, "answer-2")],
                     "cell 6 (# ITEM): item id 'conv' is used twice (also cell 4)"),
    "cell id not the next cell's": (_replace(CELLS, "item-conv", 'cell = { contains',
                                             'cell = { id = "setup", contains'),
                                    "cell 4 (# ITEM): cell.id 'setup' is not the id of the next"),
    "item before markdown": (CELLS[:4] + CELLS[5:],
                             "cell 4 (# ITEM): the next cell must be a code cell"),
    "bad toml": (_replace(CELLS, "item-conv", "points = 6", "points = "),
                 "cell 4 (# ITEM): not valid TOML"),
    "no config": (CELLS[1:], "(# ASSIGNMENT CONFIG): no raw cell starting with"),
    "unknown config key": (_replace(CELLS, "config", "cell_timeout", "cell_timeuot"),
                           "cell 1 (# ASSIGNMENT CONFIG): unknown key 'cell_timeuot' in [limits]"),
    "stray end": (_replace(CELLS, "setup", "import numpy", "### END SOLUTION\nimport numpy"),
                  "cell 3 (### END SOLUTION): no block of that kind is open"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_wrong_annotations_are_named_by_cell_and_marker_and_nothing_is_written(
        tmp_path, capsys, case):
    cells, message = BROKEN[case]
    path = write_notebook(tmp_path / "bad.ipynb", cells)
    with pytest.raises(AssignError) as caught:
        make_assignment(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path))
    assert main(["assign", str(path), "--out", str(tmp_path / "course"), "--no-check"]) == 2
    assert not (tmp_path / "course").exists()
    assert "nothing written" in capsys.readouterr().err


def test_every_problem_is_listed_not_only_the_first(tmp_path):
    cells = _replace(_replace(CELLS, "answer", "### END SOLUTION\n", ""), "item-conv",
                     "points = 6", 'points = "six"')
    with pytest.raises(AssignError) as caught:
        make_assignment(write_notebook(tmp_path / "bad.ipynb", cells))
    assert [p.cell for p in caught.value.problems] == [4, 5]


# --- chap06_cnn ---------------------------------------------------------------------------


def test_chap06_is_made_by_assign_from_its_annotated_source(tmp_path):
    """The committed template and solution are what `grader assign` writes from
    reference/chap06_cnn/source.ipynb, byte for byte; the spec reads the same, and it is the
    committed one (regenerate with `grader assign reference/chap06_cnn/source.ipynb
    --no-check`)."""
    source = PROJECT_ROOT / "reference/chap06_cnn/source.ipynb"
    assert main(["assign", str(source), "--out", str(tmp_path), "--no-check"]) == 0
    made = load_exercise(tmp_path / "exercises/chap06_cnn")
    committed = load_exercise(PROJECT_ROOT / "exercises/chap06_cnn")
    for name in ("title", "runtime", "limits", "items", "accuracy", "schedule"):
        assert getattr(made, name) == getattr(committed, name), name
    assert (tmp_path / "exercises/chap06_cnn/template.ipynb").read_bytes() == \
        committed.template.read_bytes()
    assert (tmp_path / "reference/chap06_cnn/solution.ipynb").read_bytes() == \
        (committed.reference_dir / "solution.ipynb").read_bytes()
    written = (tmp_path / "exercises/chap06_cnn/exercise.toml").read_text(encoding="utf-8")
    assert written.split("\n", 1)[1] == \
        (committed.directory / "exercise.toml").read_text(encoding="utf-8").split("\n", 1)[1]
    assert "Rule: 4 x the reference's count" in written  # the spec's comments are carried


def test_assign_without_check_says_when_the_reference_outputs_are_stale(tmp_path, capsys):
    source = write_notebook(tmp_path / "tiny.ipynb", CELLS)
    assert main(["assign", str(source), "--out", str(tmp_path), "--no-check"]) == 0
    assert "no reference outputs yet: run `grader build-reference tiny_conv`" in \
        capsys.readouterr().err
    reference = tmp_path / "reference/tiny_conv"
    digest = hashlib.sha256((reference / "solution.ipynb").read_bytes()).hexdigest()
    (reference / "expected.json").write_text(json.dumps({"solution_sha256": digest}))
    assert main(["assign", str(source), "--out", str(tmp_path), "--no-check"]) == 0
    assert "built from another solution" not in capsys.readouterr().err
    write_notebook(source, _replace(CELLS, "answer", "padding='VALID')", "padding='VALID')  # ok"))
    assert main(["assign", str(source), "--out", str(tmp_path), "--no-check"]) == 0
    assert "the reference outputs of tiny_conv were built from another solution" in \
        capsys.readouterr().err


def test_the_specs_first_line_names_the_source_from_the_course_folder_wherever_run(
        tmp_path, monkeypatch):
    """A course's CI runs `grader assign reference/<id>/source.ipynb --out . --no-check` at its
    root and diffs the result with what staff committed: the first line must not depend on the
    folder staff ran it from. Outside the course folder the source is named from the working
    directory."""
    course = tmp_path / "course"
    source = write_notebook(tmp_path / "tiny.ipynb", CELLS)
    (course / "reference/tiny_conv").mkdir(parents=True)
    kept = course / "reference/tiny_conv/source.ipynb"
    kept.write_bytes(source.read_bytes())
    spec = course / "exercises/tiny_conv/exercise.toml"
    lines = []
    for cwd, args in ((course, ["reference/tiny_conv/source.ipynb", "--out", "."]),
                      (kept.parent, ["source.ipynb", "--out", "../.."]),
                      (tmp_path, [str(kept), "--out", "course"])):
        monkeypatch.chdir(cwd)
        assert main(["assign", *args, "--no-check"]) == 0
        lines.append(spec.read_text(encoding="utf-8").split("\n", 1)[0])
    assert lines == ["# Written by `grader assign reference/tiny_conv/source.ipynb`: edit that "
                     "notebook, not this file."] * 3
    monkeypatch.chdir(tmp_path)
    assert main(["assign", "tiny.ipynb", "--out", "course", "--no-check"]) == 0
    assert spec.read_text(encoding="utf-8").startswith("# Written by `grader assign tiny.ipynb`")


# --- a course folder ------------------------------------------------------------------------


def test_dry_run_over_a_course_folder_fails_with_a_summary_when_a_reference_is_missing(
        tmp_path, capsys):
    make_assignment(write_notebook(tmp_path / "tiny.ipynb", CELLS)).write(tmp_path / "course")
    code = main(["dry-run", "--exercises", str(tmp_path / "course/exercises"),
                 "--sandbox", "unsafe"])
    err = capsys.readouterr().err
    assert code == 1
    assert "tiny_conv exercise: 0/0 FAILED: the reference of tiny_conv is missing" in err
    assert "dry-run FAILED (tiny_conv) (1 checks, 1 exercises)" in err
    assert main(["dry-run", "--exercises", str(tmp_path / "empty")]) == 1


@pytest.mark.sandbox
def test_assign_builds_the_reference_and_dry_runs_it_then_dry_run_checks_the_course(
        tmp_path, capsys):
    """The whole path in the real sandbox: the solution earns 6/6, the template 0; then
    `grader dry-run --exercises` over the course passes, and fails (exit 1, named in the
    summary) once the template holds the answer."""
    source = write_notebook(tmp_path / "tiny.ipynb", CELLS)
    course = tmp_path / "course"
    assert main(["assign", str(source), "--out", str(course)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "tiny_conv: solution 6/6 [graded] ok" in err
    assert "tiny_conv: template 0/6 [graded] ok" in err
    expected = json.loads((course / "reference/tiny_conv/expected.json").read_text())
    assert list(expected["items"]) == ["conv"] and expected["exercise"] == "tiny_conv"
    assert (course / "reference/tiny_conv/exports/conv.json").is_file()

    assert main(["dry-run", "--exercises", str(course / "exercises")]) == 0
    template = course / "exercises/tiny_conv/template.ipynb"
    template.write_bytes((course / "reference/tiny_conv/solution.ipynb").read_bytes())
    assert main(["dry-run", "--exercises", str(course / "exercises")]) == 1
    err = capsys.readouterr().err
    assert "tiny_conv template: 6/6 FAILED: conv: the blank template earns 6 points" in err
