"""Reading submissions, neutralising magics, finding graded cells."""

from __future__ import annotations

import json

import nbformat
import pytest

from grader.comparators.accuracy import claimed_accuracy
from grader.locate import locate_items
from grader.notebook import NotebookError, ReadLimits, read_notebook, scan_json
from grader.sanitize import sanitize_notebook
from tests.conftest import FIXTURES
from tests.hostile_notebooks import (
    MiB,
    code_cell,
    deeply_nested,
    many_cells,
    nested_in_metadata,
    notebook_bytes,
)


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


# --- hostile notebooks: bounded work before and during validation ---------------------------


def test_deep_nesting_is_refused_before_the_parser_recurses():
    """Finding: ``[`` x 100,000 made json.loads raise RecursionError (a 500 in the service)."""
    for data in (deeply_nested(100_000), b'{"a":' * 50_000, deeply_nested(101) + b"]" * 101):
        with pytest.raises(NotebookError) as info:
            read_notebook(data)
        assert "nest more than 100 deep" in info.value.reason
        assert info.value.reason_ja != info.value.reason


def test_moderate_nesting_in_metadata_is_a_notebook():
    assert read_notebook(nested_in_metadata(90)).metadata["deep"] is not None
    with pytest.raises(NotebookError, match="nest more than 100 deep"):
        read_notebook(nested_in_metadata(120))


@pytest.mark.parametrize("text, depth, values", [
    ('[]', 1, 1),
    ('{"a": [1, 2, {"b": []}]}', 4, 4),
    ('["[[[[", "{{{", "]]]"]', 1, 3),                 # brackets in strings do not count
    (r'["\"[[[", "\\", "[\\\"[", {"k\\": [[]]}]', 4, 6),  # nor do escaped quotes
    ('"[[[["', 0, 1),
])
def test_scan_json_reads_depth_and_values_outside_strings(text, depth, values):
    shape = scan_json(text.encode())
    assert shape.depth == depth
    assert shape.values >= values  # an upper bound: every comma and container counts


def test_scan_json_agrees_with_the_parser_on_a_real_notebook():
    data = (FIXTURES / "chap06_seed_copy.ipynb").read_bytes()

    def depth(value: object) -> int:
        children = (value.values() if isinstance(value, dict)
                    else value if isinstance(value, list) else None)
        return 0 if children is None else 1 + max(map(depth, children), default=0)

    assert scan_json(data).depth == depth(json.loads(data))


def test_sixty_thousand_cells_are_refused_by_count_not_validated():
    """Finding: 19 MiB, 60,000 cells, one invalid cell at the end: 543 s to a 400."""
    data = many_cells(60_000, total_bytes=19 * MiB)
    assert len(data) > 18 * MiB
    with pytest.raises(NotebookError) as info:
        read_notebook(data)
    assert info.value.reason == "the notebook has 60000 cells; the limit is 2000"


def test_an_invalid_cell_is_named_and_only_it_is_rechecked():
    """Up to the cell limit, one bad cell at the end: the message names it, and is short
    (jsonschema quotes the whole offending cell)."""
    data = many_cells(2000, total_bytes=2 * MiB)
    with pytest.raises(NotebookError) as info:
        read_notebook(data)
    assert info.value.reason.startswith("cell 2000 does not follow nbformat: ")
    assert len(info.value.reason) < 400 and "\n" not in info.value.reason
    assert "セル 2000" in info.value.reason_ja


@pytest.mark.parametrize("limits, data, reason", [
    (ReadLimits(max_bytes=MiB), many_cells(10, total_bytes=2 * MiB), "the limit is 1 MiB"),
    (ReadLimits(max_cells=9), many_cells(10), "the notebook has 10 cells; the limit is 9"),
    (ReadLimits(max_cell_bytes=MiB // 2), many_cells(2, total_bytes=2 * MiB),
     "with its outputs; the limit is 0.5 MiB per cell"),
    (ReadLimits(max_output_bytes=MiB // 4),
     notebook_bytes([code_cell("", n, outputs=[{"output_type": "stream", "name": "stdout",
                                                "text": "y" * (MiB // 8)}]) for n in range(3)]),
     "outputs together exceed 0.25 MiB"),
    (ReadLimits(max_values=1000), notebook_bytes([code_cell("a\n", 0)] * 1001),
     "more than 1000 JSON values"),
    (ReadLimits(validate_seconds=1e-9), many_cells(3, invalid_last=False),
     "checking the notebook took more than 1e-09 s"),
])
def test_structural_limits_come_before_validation(limits, data, reason):
    with pytest.raises(NotebookError) as info:
        read_notebook(data, limits)
    assert reason in info.value.reason, info.value.reason
    assert info.value.reason_ja != info.value.reason


def test_the_check_counts_its_own_work_not_a_busy_machines_wait(monkeypatch):
    """The deadline is this thread's CPU time: a notebook read while the process waits (here a
    sleep where the machine would be busy elsewhere) is not refused for the waiting, and one
    whose checks do use the CPU still is (the 1e-9 s case above)."""
    import time as time_module

    import nbformat as nbformat_module
    convert = nbformat_module.convert

    def slow_convert(*args, **kwargs):
        time_module.sleep(0.3)  # wall time passes; this thread's CPU does not
        return convert(*args, **kwargs)

    monkeypatch.setattr("grader.notebook.nbformat.convert", slow_convert)
    nb = read_notebook(many_cells(3, invalid_last=False), ReadLimits(validate_seconds=0.2))
    assert len(nb.cells) == 3


def test_cells_that_are_not_objects_are_refused():
    for cells in ('"nope"', "[1, 2]", '[["code"]]'):
        with pytest.raises(NotebookError, match="'cells' must be a list of cells"):
            read_notebook(f'{{"cells": {cells}, "nbformat": 4, "nbformat_minor": 5}}'.encode())


def test_sources_and_outputs_stored_as_lines_are_read_as_strings():
    """As nbformat.reads gives them (the locator and the source checks read strings)."""
    cell = code_cell(["a = 1\n", "print(a)"], 0, outputs=[
        {"output_type": "stream", "name": "stdout", "text": ["1\n", "2\n"]}])
    nb = read_notebook(notebook_bytes([cell, {"cell_type": "markdown", "id": "m", "metadata": {},
                                              "source": ["# Title\n", "text"]}]))
    assert nb.cells[0].source == "a = 1\nprint(a)" and nb.cells[1].source == "# Title\ntext"
    assert nb.cells[0].outputs[0].text == "1\n2\n"


def test_the_course_notebooks_read_as_nbformat_reads_them():
    for path in (FIXTURES / "chap06_seed_copy.ipynb", FIXTURES.parent.parent / "exercises"
                 / "chap06_cnn" / "template.ipynb"):
        data = path.read_bytes()
        expected = nbformat.reads(data.decode(), as_version=4)
        ours = read_notebook(data)
        for nb in (expected, ours):
            for cell in nb.cells:
                cell.pop("id", None)
            nb.nbformat_minor = 5
            nb.metadata.pop("orig_nbformat_minor", None)
        assert ours == expected


def test_missing_and_repeated_cell_ids_are_repaired():
    cells = [code_cell("a = 1", 0), code_cell("b = 2", 0), code_cell("c = 3", 2)]
    del cells[2]["id"]
    nb = read_notebook(notebook_bytes(cells, nbformat_minor=4))
    ids = [cell.id for cell in nb.cells]
    assert ids[0] == "cell-0" and len(set(ids)) == 3 and all(ids)


# --- issue 17 part 3: linear sanitiser and locator, graded sources read within limits -------

def test_blank_lines_do_not_reach_across_to_a_pip_line():
    """The patterns match within one line: blank lines before a pip line stay where they are
    (``^\\s*`` under ``re.M`` used to swallow them, scanning to the cell's end from each)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "\n" * 200_000 + "  !pip install x  \nimport os\n\t%tensorflow_version 1.x\n!ls")])
    notes = sanitize_notebook(nb)
    lines = nb.cells[0].source.split("\n")
    assert len(lines) == 200_004
    assert lines[200_000:] == ["# [grader] skipped: !pip install x", "import os",
                               "# [grader] skipped: %tensorflow_version 1.x", "!ls"]
    assert [n.original for n in notes] == ["!pip install x", "%tensorflow_version 1.x"]


def test_sanitiser_notes_are_capped_and_the_rest_counted():
    from grader.sanitize import MAX_NOTES

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("!pip install x\n" * 500)
                                         for _ in range(3)])
    notes = sanitize_notebook(nb)
    assert len(notes) == MAX_NOTES + 1
    assert "1480 more lines" in notes[-1].message.en and "1480" in notes[-1].message.ja
    assert all(line.startswith("# [grader] skipped:")
               for cell in nb.cells for line in cell.source.splitlines())


def test_headings_are_read_once_and_found_as_before(exercise):
    from grader.locate import Headings

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("text\n  ## 畳み込みの演習 (1)\nmore"),
        nbformat.v4.new_markdown_cell("a\r# Pooling exercise"),  # splitlines' line ends too
        nbformat.v4.new_markdown_cell("no heading: 畳み込みの演習"),
        nbformat.v4.new_code_cell("# 畳み込みの演習")])
    calls: list[int] = []
    headings = Headings(nb, check=lambda: calls.append(1))
    assert headings.match(0, ("畳み込みの演習",))
    assert headings.match(1, ("Pooling exercise",))
    assert not headings.match(2, ("畳み込みの演習",))
    assert not headings.match(3, ("畳み込みの演習",))
    assert not headings.match(0, ("演習 (1)\nmore",))  # a text is looked for within one line
    assert headings.match(0, ("Pooling", "演習"))
    assert len(calls) == 4  # once per cell, however often asked


def test_a_graded_cell_beyond_the_source_limits_is_refused_not_parsed():
    from grader.sourcecheck import SourceLimits, read_cell

    limits = SourceLimits()
    plain = read_cell("x = 1\n" * limits.max_lines)
    assert plain.refused is None and plain.bound == {"x"}
    for source in ("x = 1\n" * (limits.max_lines + 1),
                   "#" * (limits.max_bytes + 1),
                   "%time\n" * (limits.max_escape_lines + 1) + "x = 1",
                   "%time x = 1\n" + "y = 2  # padding\n" * 500):  # IPython's, over 8 KiB
        facts = read_cell(source)
        assert facts.refused is not None and facts.bound == frozenset(), source[:20]
        assert "too large for the grader to check" in facts.refused.en
        assert "65,536 bytes and 1,000 lines" in facts.refused.en
    # within the limits, magics still go through IPython's transformers
    magics = read_cell("%time\n" * (limits.max_escape_lines - 1) + "x = !ls\ny = 1")
    assert magics.refused is None and magics.syntax_error is None and {"x", "y"} <= magics.bound
    # a plain-Python syntax error in a large cell is reported as such
    broken = read_cell("x = (\n" + "1,\n" * 900)
    assert broken.refused is None and "never closed" in broken.syntax_error


def test_plain_python_cells_read_as_ipython_reads_them():
    """The fast path (``ast.parse`` first) gives what IPython's transformers gave, on every
    code cell of the course's notebooks."""
    import ast

    from IPython.core.inputtransformer2 import TransformerManager

    from grader.sourcecheck import _bound_names, read_cell

    for path in (FIXTURES / "chap06_seed_copy.ipynb",
                 FIXTURES.parent.parent / "reference" / "chap06_cnn" / "solution.ipynb"):
        nb = read_notebook(path.read_bytes())
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            facts = read_cell(cell.source)
            try:
                want = _bound_names(ast.parse(TransformerManager().transform_cell(cell.source)))
            except SyntaxError:
                assert facts.syntax_error is not None
                continue
            assert facts.syntax_error is None and facts.bound == want, cell.source[:60]


def test_a_cell_ipython_strips_prompts_from_is_read_as_ipython_runs_it():
    """``In [2]:  w = 2`` is an annotated assignment in plain Python, and an indentation error
    once IPython strips the prompts: the fast path must not take the plain reading, or a
    cell that never runs would count as one that binds the answer."""
    from grader.sourcecheck import read_cell

    trick = read_cell("In [1]: z = 1\nIn [2]:  w = 2\nconvoluted_image = tf.nn.conv2d(x, W)\n")
    assert trick.syntax_error is not None and "convoluted_image" not in trick.bound
    assert read_cell("\n>>> x = 1\n>>> y = 2").bound == {"x", "y"}
    assert read_cell("def f():\n    ...\ny = 2").bound == {"f", "y"}  # an Ellipsis is no prompt


# --- issue 17 part 7 (red team 2): what IPython rewrites, counted as IPython sees it ---------


@pytest.mark.timeout(60)
def test_every_line_ipython_may_rewrite_counts_against_the_source_limits():
    """IPython's escapes are ``% ! ? , ; /`` (``/f x`` is ``f(x)``), its lines end at every
    line end ``str.splitlines`` knows, and its prompts are stripped before its passes; the
    host counted ``% ! ?`` at the start of ``\\n`` lines only. Each cell below fits
    ``SourceLimits`` as counted before and cost IPython 500 passes over it (4 to 10 s of host
    CPU a graded cell; a notebook of such cells went past the preparation's deadline)."""
    import time

    from grader.sourcecheck import SourceLimits, read_cell

    limits = SourceLimits()
    for source in ("/f\n" * 999, ",f\n" * 999, ";f\n" * 999, "/f x\n" * 999,
                   "\x1c/f" * 2700, "\u2028%pwd" * 1100, ">>> %pwd\n" * 900,
                   "In [1]: !ls\n" * 600):
        assert len(source.encode()) <= limits.max_ipython_bytes
        started = time.process_time()
        facts = read_cell(source)
        assert time.process_time() - started < 1.0, source[:10]
        assert facts.refused is not None and facts.bound == frozenset(), source[:10]
        assert "too large for the grader to check" in facts.refused.en
    # what IPython rewrites within the limits is still read as IPython runs it
    assert read_cell("/print 1\n" * limits.max_escape_lines + "x = 1").bound == {"x"}
    assert read_cell(">>> %pwd\n>>> y = 2\n").bound == {"y"}
    assert read_cell("%%time\n" + "/f\n" * 100 + "x = 1\n").refused is None  # a cell magic


def test_sanitiser_notes_quote_a_line_not_a_cell():
    """A ``!pip`` line or a ``%%writefile`` path is the student's text, up to the 4 MiB of a
    cell: quoted whole in both languages, six such cells made 56 MB of notes (the report
    stored and sent with every view of it). The cell itself is still rewritten whole."""
    from grader.sanitize import MAX_QUOTE, SKIPPED, sanitize_notebook

    pip = "!pip install " + "x" * 4_000_000
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(pip),
        nbformat.v4.new_code_cell("%%writefile /" + "y" * 4_000_000 + "\nz = 1")])
    notes = sanitize_notebook(nb)
    assert len(notes) == 2
    for note in notes:
        assert len(note.original) <= MAX_QUOTE
        assert len(note.message.en) < 3 * MAX_QUOTE + 300 and len(note.message.ja) < 4 * MAX_QUOTE
    assert "!pip install xxx" in notes[0].message.en and "…" in notes[0].message.en
    assert nb.cells[0].source == SKIPPED + pip
    assert nb.cells[1].source == "%%writefile " + "y" * 4_000_000 + "\nz = 1"


def test_half_a_surrogate_pair_in_a_notebook_is_refused_when_read():
    """``"x = '\\ud800'"`` in a cell's JSON parses, passes every check, and no UTF-8 writer
    takes it: writing the notebook for the runner raised ``UnicodeEncodeError``, and the
    grading ended ``sandbox_error``, which the service ran again."""
    import json as jsonlib

    for source in ("x = '\ud800'", "# \udc00", "s = '\\\\' + '\udc00'"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        with pytest.raises(NotebookError) as refused:
            read_notebook(jsonlib.dumps(nb).encode())
        assert refused.value.key == "notebook.not_utf8"
    for source in ("x = '\U0001F600'", "path = 'C:\\\\ud800'", "é"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        assert read_notebook(jsonlib.dumps(nb).encode()).cells[0].source == source


def test_a_large_invalid_cell_costs_its_compiled_check_not_jsonschema(
        monkeypatch: pytest.MonkeyPatch):
    """jsonschema, for a readable message, validated about 2,000 values a second: a cell of
    45,000 outputs with one bad field (2.6 MB, within the upload's limits) held the upload's
    request 26 s, past its 2 s deadline (checked between cells). What jsonschema is given is
    counted, not timed (a timed limit failed on a loaded machine): one output at most."""
    import json as jsonlib

    from grader import notebook

    given_to_jsonschema: list[int] = []  # the outputs of each part jsonschema validated
    slow_validate = notebook.nbformat.validate

    def counting(nb: dict, *args: object, **kwargs: object) -> None:
        given_to_jsonschema.append(sum(len(cell.get("outputs", ())) for cell in nb["cells"]))
        slow_validate(nb, *args, **kwargs)

    monkeypatch.setattr(notebook.nbformat, "validate", counting)
    outputs = [{"output_type": "stream", "name": "stdout", "text": "a"}] * 45_000
    cell = {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": "x",
            "source": "", "outputs": outputs}
    data = jsonlib.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                          "cells": [cell]}).encode()
    # a deadline no loaded machine reaches: the test is about what is validated, not how fast
    limits = ReadLimits(max_bytes=20 * 2**20, max_depth=64, max_values=200_000,
                        max_cells=1000, max_cell_bytes=4 * 2**20, max_output_bytes=16 * 2**20,
                        validate_seconds=600)
    with pytest.raises(NotebookError) as refused:
        read_notebook(data, limits)
    assert refused.value.key == "notebook.invalid_cell"
    assert "'x' is not of type 'integer', 'null'" in refused.value.text.en  # jsonschema's words
    assert given_to_jsonschema == [0]  # the cell without its 45,000 outputs
    # one bad output among 45,000: found by halving, and only it checked by jsonschema
    given_to_jsonschema.clear()
    cell["execution_count"] = 1
    cell["outputs"] = [*outputs[:40_000], {"output_type": "stream", "text": "a"},
                       *outputs[40_000:]]
    data = jsonlib.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                          "cells": [cell]}).encode()
    with pytest.raises(NotebookError) as refused:
        read_notebook(data, limits)
    assert refused.value.key == "notebook.invalid_cell"
    assert given_to_jsonschema == [1]
