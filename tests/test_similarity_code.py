"""grader.similarity's code comparison on the lecture's real notebooks: a renamed, reordered
copy of the solution, an independently written correct notebook (100/100 with `grader grade`),
a class of honest variants of the solution, and untouched templates."""

from __future__ import annotations

import json
import time

import nbformat
import pytest

from grader.similarity import (
    CODE_FLAG,
    CODE_IDENTICAL,
    MAX_CODE_CHARS,
    CodeSubmission,
    compare_code,
    notebook_code,
)
from grader.similarity.kgrams import KgramReader
from tests.similarity_support import (
    INDEPENDENT,
    SOLUTION,
    TEMPLATE,
    honest_variant,
    read,
    renamed_copy,
)

SWAP = (45, 49)  # the Pooling and Dense classes: both hold answers


def code(nb: nbformat.NotebookNode) -> str:
    return notebook_code(nb).text


@pytest.fixture(scope="module")
def notebooks() -> dict[str, nbformat.NotebookNode]:
    solution = read(SOLUTION)
    return {"solution": solution, "renamed": renamed_copy(solution, SWAP),
            "independent": read(INDEPENDENT), "template": read(TEMPLATE)}


@pytest.fixture(scope="module")
def class_pairs(notebooks):
    students = [CodeSubmission(k, code(notebooks[k])) for k in ("solution", "renamed", "independent")]
    students += [CodeSubmission(f"honest{i}", code(honest_variant(notebooks["solution"], i)))
                 for i in range(20)]
    students += [CodeSubmission(f"blank{i}", code(notebooks["template"])) for i in range(2)]
    return compare_code(students, code(notebooks["template"]), expected=[code(notebooks["solution"])])


def by_pair(pairs):
    return {frozenset((p.a, p.b)): p for p in pairs}


def test_the_renamed_copy_really_is_renamed_and_reordered(notebooks):
    solution, renamed = code(notebooks["solution"]), code(notebooks["renamed"])
    assert "class Conv_mine" in renamed and "self.my_W" in renamed and "x_train_mine" in renamed
    assert "fan_in_mine" in renamed and "rng_mine" in renamed
    # library names kept, so the copy still runs
    assert "tf_q.nn.conv2d" in renamed.replace("tftf_q", "tf_q") and "strides=" in renamed
    assert renamed.index("class Pooling_mine") > renamed.index("class Dense_mine")
    assert solution.index("class Pooling") < solution.index("class Dense")
    for nb in (notebooks["renamed"],):
        for cell in nb.cells:
            if cell.cell_type == "code" and not cell.source.startswith("%%"):
                compile(cell.source, "cell", "exec")


def test_three_real_uploads_renamed_pair_first_and_flagged(notebooks):
    """The issue's acceptance: the solution, its renamed copy, an independent notebook."""
    students = [CodeSubmission(k, code(notebooks[k])) for k in ("solution", "renamed", "independent")]
    pairs = compare_code(students, code(notebooks["template"]), expected=[code(notebooks["solution"])])
    assert {pairs[0].a, pairs[0].b} == {"solution", "renamed"}
    assert pairs[0].flagged and pairs[0].code >= CODE_FLAG
    assert [p.flagged for p in pairs[1:]] == [False, False]
    assert all(p.code < 0.3 for p in pairs[1:])
    # the matching parts are marked on both sides, outside the template
    first = pairs[0]
    assert first.spans_a and first.spans_b
    text = dict(zip(("solution", "renamed"), (students[0].code, students[1].code), strict=True))
    marked = "".join(text[first.a][s:e] for s, e in first.spans_a)
    assert "np.prod(filter_shape[:3])" in marked or "prod(filter_shape[:3])" in marked
    assert "mnist.load_data()" not in marked  # the template's code is never marked
    json.dumps([p.__class__.__name__ for p in pairs])


def test_class_renamed_first_flagged_and_no_honest_pair(class_pairs):
    assert {class_pairs[0].a, class_pairs[0].b} == {"solution", "renamed"}
    assert class_pairs[0].flagged
    flagged = [(p.a, p.b) for p in class_pairs if p.flagged]
    assert flagged == [(class_pairs[0].a, class_pairs[0].b)]
    honest = [p for p in class_pairs if p.a.startswith("honest") and p.b.startswith("honest")]
    assert len(honest) == 190
    # honest students share most of their added code (the expected answers) yet stay unflagged
    assert max(p.code for p in honest) > 0.5


def test_the_independent_notebook_pairs_with_nobody(class_pairs):
    for p in class_pairs:
        if "independent" in (p.a, p.b):
            assert not p.flagged and p.code < 0.3, p


def test_template_only_notebooks_never_pair(class_pairs):
    pairs = by_pair(class_pairs)
    blank = pairs[frozenset(("blank0", "blank1"))]
    assert blank.code == 0.0 and not blank.flagged and blank.spans_a == ()
    assert all(p.code == 0.0 for p in class_pairs if "blank0" in (p.a, p.b))


def test_a_copy_of_distinctive_code_with_an_edit_is_flagged_by_what_is_distinctive(notebooks):
    """The independent notebook's answers are nobody else's: copied, renamed, with one answer
    rewritten (so not token for token the same), the pair still flags, on distinctive k-grams."""
    original = notebooks["independent"]
    edited = nbformat.reads(nbformat.writes(original), as_version=4)
    for cell in edited.cells:
        if cell.cell_type == "code" and "class Conv" in cell.source:
            assert "tf.add(convolved, self.b)" in cell.source
            cell.source = cell.source.replace("tf.add(convolved, self.b)", "convolved + self.b")
        if cell.cell_type == "code" and "class Dense" in cell.source:
            cell.source = cell.source.replace("tf.add(tf.matmul(x, self.W), self.b)", "tf.matmul(x, self.W) + self.b")
    copy = renamed_copy(edited, (19, 21))
    solution = notebooks["solution"]
    students = [CodeSubmission("original", code(original)), CodeSubmission("copy", code(copy))]
    students += [CodeSubmission(f"honest{i}", code(honest_variant(solution, i))) for i in range(10)]
    pairs = compare_code(students, code(notebooks["template"]), expected=[code(solution)])
    top = pairs[0]
    assert {top.a, top.b} == {"original", "copy"} and top.flagged
    assert CODE_FLAG <= top.code < CODE_IDENTICAL and top.distinctive >= 100
    assert not any(p.flagged for p in pairs[1:])


def test_expected_code_decides_nothing(notebooks):
    """Without the solution as expected code and with a class too small to share, the
    distinctive rule would see the solution's lines as distinctive: with it, nothing is."""
    students = [CodeSubmission(k, code(notebooks[k])) for k in ("solution", "renamed")]
    template = code(notebooks["template"])
    with_expected = compare_code(students, template, expected=[code(notebooks["solution"])])
    without = compare_code(students, template)
    assert with_expected[0].distinctive == 0
    assert without[0].distinctive > 100


def test_archive_pairs_with_students_only(notebooks):
    template = code(notebooks["template"])
    students = [CodeSubmission("now", code(notebooks["renamed"]))]
    archive = [CodeSubmission("past:a", code(notebooks["solution"])),
               CodeSubmission("past:b", code(notebooks["solution"]))]
    pairs = compare_code(students, template, archive=archive)
    assert {(p.a, p.b) for p in pairs} == {("now", "past:a"), ("now", "past:b")}
    assert all(p.flagged for p in pairs)


def test_notebook_code_maps_spans_to_cells_and_neutralises_magics(notebooks):
    text = notebook_code(nbformat.writes(notebooks["solution"]).encode())
    conv = next(c for c in text.cells if "class Conv" in text.text[c.start:c.end])
    assert conv.index == 43
    assert text.cell_at(text.text.index("fan_in = np.prod")) == 43
    assert "# %%writefile" in text.text and "\n%%writefile" not in text.text
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("!pip install x\nfiles = !ls\n%time y = 1\nz = 2")])
    assert notebook_code(nb).text.splitlines()[1:] == ["# !pip install x", "# files = !ls", "# %time y = 1", "z = 2"]


def test_hostile_notebook_is_capped_and_fast():
    huge = "x = [" + "1, " * 400_000 + "]\n"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(huge) for _ in range(5)]
                                  + [nbformat.v4.new_markdown_cell("m")] )
    start = time.monotonic()
    text = notebook_code(nb)
    assert len(text.text) <= MAX_CODE_CHARS and text.truncated and len(text.cells) == 1
    deeply = "(" * 50_000 + ")" * 50_000
    pairs = compare_code([CodeSubmission("a", text.text), CodeSubmission("b", deeply)], "")
    assert len(pairs) == 1
    assert time.monotonic() - start < 30


@pytest.mark.processes
def test_hashes_are_stable_across_processes():
    import subprocess
    import sys

    program = ("from grader.similarity.kgrams import KgramReader;"
               "print(KgramReader().text('def f(a, b):\\n    return a * b + a - b // 2').tolist())")
    runs = {subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(runs) == 1
    assert json.loads(runs.pop()) == KgramReader().text("def f(a, b):\n    return a * b + a - b // 2").tolist()


@pytest.mark.processes
def test_importing_the_package_loads_neither_copydetect_nor_matplotlib():
    """copydetect imports matplotlib (a second): only a comparison pays for it."""
    import subprocess
    import sys

    program = "import sys, grader.similarity; print(sorted(m for m in sys.modules if m.split('.')[0] in ('copydetect', 'matplotlib')))"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    program = ("import sys; from grader.similarity.kgrams import normalise; normalise('x = 1');"
               "print('copydetect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"  # the check can fail


def _copy_of_independent(notebooks) -> nbformat.NotebookNode:
    edited = nbformat.reads(nbformat.writes(notebooks["independent"]), as_version=4)
    for cell in edited.cells:
        if cell.cell_type == "code" and "class Conv" in cell.source:
            cell.source = cell.source.replace("tf.add(convolved, self.b)", "convolved + self.b")
    return renamed_copy(edited, (19, 21))


def test_a_copy_padded_with_cells_of_its_own_is_still_flagged(notebooks):
    """Padding lowers ``code`` (the larger notebook's share) but not what is shared."""
    padded = _copy_of_independent(notebooks)
    for n in range(6):
        padded.cells.append(nbformat.v4.new_code_cell(
            f"def explore_{n}(values, scale={n + 2}):\n"
            f"    total = sum(v * scale ** {n} for v in values if v % {n + 3} == 0)\n"
            f"    print('step {n}', total, len(values) // {n + 1}, max(values) - min(values))\n"
            f"    return [v / total for v in values if v > {n}] or None\n"
            f"explore_{n}(list(range({10 * n + 5})))"))
    solution = notebooks["solution"]
    students = [CodeSubmission("original", code(notebooks["independent"])),
                CodeSubmission("padded", code(padded))]
    students += [CodeSubmission(f"honest{i}", code(honest_variant(solution, i))) for i in range(10)]
    pairs = compare_code(students, code(notebooks["template"]), expected=[code(solution)])
    top = pairs[0]
    assert {top.a, top.b} == {"original", "padded"} and top.flagged
    assert top.code < CODE_FLAG  # the padding worked on ``code``; the distinctive code decides
    assert not any(p.flagged for p in pairs[1:])


def test_what_a_tenth_of_the_class_shares_is_expected(notebooks, monkeypatch):
    """Five of twenty honest students (25%) take their Conv and Dense classes from the same
    popular tutorial (the independent notebook's): shared widely, not passed between two. With
    the class-share rule those pairs stay unflagged; without it, they would be."""
    import grader.similarity.code as code_module

    solution, independent = notebooks["solution"], notebooks["independent"]
    tutorial = {key: next(c.source for c in independent.cells
                          if c.cell_type == "code" and f"class {key}" in c.source)
                for key in ("Conv", "Dense")}
    students = []
    for i in range(20):
        nb = honest_variant(solution, 100 + i)
        if i < 5:
            for cell in nb.cells:
                for key, source in tutorial.items():
                    if cell.cell_type == "code" and f"class {key}" in cell.source:
                        cell.source = source
        students.append(CodeSubmission(f"s{i}", code(nb)))
    template, expected = code(notebooks["template"]), [code(solution)]

    def tutorial_pairs_flagged() -> int:
        pairs = compare_code(students, template, expected=expected)
        tutorial_pairs = [p for p in pairs if int(p.a[1:]) < 5 and int(p.b[1:]) < 5]
        assert len(tutorial_pairs) == 10
        return sum(p.flagged for p in pairs)

    assert tutorial_pairs_flagged() == 0
    monkeypatch.setattr(code_module, "CLASS_SHARE_MIN", 10_000)
    assert tutorial_pairs_flagged() >= 5


def test_the_same_code_in_three_notebooks_is_a_common_way_not_a_pair(notebooks):
    """What the identical-code rule does not flag, by design (docs/similarity.md): the same
    added code, nothing distinctive, held by three students. Two flag; a third makes it common."""
    template, expected = code(notebooks["template"]), [code(notebooks["solution"])]
    two = [CodeSubmission("solution", code(notebooks["solution"])),
           CodeSubmission("renamed", code(notebooks["renamed"]))]
    assert compare_code(two, template, expected=expected)[0].flagged
    third = CodeSubmission("another", code(renamed_copy(notebooks["solution"], (19, 21))))
    pairs = compare_code([*two, third], template, expected=expected)
    assert [p.code for p in pairs] == [1.0, 1.0, 1.0]
    assert not any(p.flagged for p in pairs)
