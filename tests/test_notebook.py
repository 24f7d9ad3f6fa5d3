"""Reading submissions, neutralising magics, finding graded cells."""

from __future__ import annotations

import nbformat
import pytest

from grader.comparators.accuracy import claimed_accuracy
from grader.locate import locate_items
from grader.notebook import NotebookError, read_notebook
from grader.sanitize import sanitize_notebook
from tests.conftest import FIXTURES


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe garbage", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"hello": 1}', "no 'cells'"),
        (b'{"cells": [], "nbformat": 9}', "unsupported notebook format"),
        (b'{"cells": [{"cell_type": "code"}], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}',
         "does not follow nbformat"),
    ],
)
def test_invalid_notebooks_get_a_one_line_reason(data, reason):
    with pytest.raises(NotebookError) as info:
        read_notebook(data)
    assert reason in info.value.reason and "\n" not in info.value.reason
    assert info.value.reason_ja and info.value.reason_ja != info.value.reason


def test_old_notebook_without_ids_is_upgraded():
    nb = read_notebook((FIXTURES / "chap06_seed_copy.ipynb").read_bytes())
    assert nb.nbformat_minor == 5 and all(c.get("id") for c in nb.cells)


def test_pip_and_writefile_are_neutralised_with_notes():
    nb = read_notebook((FIXTURES / "chap06_seed_copy.ipynb").read_bytes())
    notes = sanitize_notebook(nb)
    pip = next(c for c in nb.cells if "tensorflow-gpu" in c.source)
    assert pip.source.startswith("# [grader] skipped: !pip3 install tensorflow-gpu==1.8")
    writefile = next(c for c in nb.cells if "%%writefile" in c.source)
    assert writefile.source.splitlines()[0] == "%%writefile tensorboard.py"
    assert len(notes) == 2
    assert "tensorflow-gpu" in notes[0].message.en and "実行していません" in notes[0].message.ja
    assert "/root/userspace/chap06/materials/tensorboard.py" in notes[1].message.en


def test_cells_found_by_id_in_our_template(exercise, template_nb):
    located = locate_items(template_nb, exercise)
    assert all(v is not None and v.how == "id" for v in located.values())
    assert template_nb.cells[located["conv2"].index]["id"] == "conv2"


def test_cells_found_by_content_in_the_original_course_notebook(exercise):
    nb = read_notebook((FIXTURES / "chap06_seed_copy.ipynb").read_bytes())
    located = locate_items(nb, exercise)
    assert all(v is not None and v.how == "content" for v in located.values())
    sources = {k: nb.cells[v.index].source for k, v in located.items()}
    assert "convoluted_image" in sources["conv3"]
    assert sources["pool1"].startswith("pooled_image")
    assert "class Dense" in sources["dense_layer"]
    assert "n_epochs" in sources["accuracy"]
    order = [located[i].index for i in ("conv1", "conv2", "conv3", "pool1", "pool2", "pool3")]
    assert order == sorted(order)


def test_missing_cell_is_none(exercise, template_nb):
    nb = nbformat.from_dict(template_nb)
    nb.cells = [c for c in nb.cells if c.get("id") != "dense-layer"]
    assert locate_items(nb, exercise)["dense_layer"] is None


def test_claimed_accuracy_is_the_last_printed_figure():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "EPOCH: 1, Valid Cost: 0.238, Valid Accuracy: 0.931\n"
        "EPOCH: 10, Valid Cost: 0.062, Valid Accuracy: 0.981\n"))]
    pattern = r"(?i)accuracy\s*[:=]\s*([0-9]*\.[0-9]+)"
    assert claimed_accuracy(nb, 0, pattern) == pytest.approx(0.981)
    assert claimed_accuracy(nb, 3, pattern) is None
