"""Scoring on hand-made evidence (no sandbox): what the feedback says when the work is missing
or could not be measured (issue 17, parts 5 and 6)."""

from __future__ import annotations

import nbformat
import pytest

from grader.clean_room import Measured
from grader.comparators import prepare_inputs
from grader.exports import GraphExport
from grader.locate import Located, locate_items
from grader.measurements import MeasurementFailure
from grader.report import ItemStatus
from grader.results import RunnerResult
from grader.scoring import Evidence, score_items
from grader.spec import Text


def printing_notebook() -> nbformat.NotebookNode:
    """The training cell replaced by a loop that prints a fine accuracy, as executed."""
    v4 = nbformat.v4
    loop = v4.new_code_cell("for epoch in range(10):\n    print('Valid Accuracy: 0.995')")
    loop.outputs = [v4.new_output("stream", name="stdout",
                                  text="Valid Accuracy: 0.995\n" * 10)]
    return v4.new_notebook(cells=[v4.new_markdown_cell("## 学習 / Training"), loop])


def text(feedback: list[Text], lang: str) -> str:
    return "\n".join(t.get(lang) for t in feedback)


def test_a_missing_training_cell_says_no_model_and_reports_the_printed_figure(exercise, config):
    nb = printing_notebook()
    located = locate_items(nb, exercise)
    assert located["accuracy"] is None  # nothing trains: the training cell is not there
    evidence = Evidence(located=located, runner=None, sources={}, exports={}, measured=None,
                        prepared=prepare_inputs(exercise, config, nb, located))
    item = next(i for i in score_items(exercise, evidence) if i.id == "accuracy")
    assert item.score == 0 and item.status is ItemStatus.MISSING
    en, ja = text(item.feedback, "en"), text(item.feedback, "ja")
    assert "No trained model was found" in en and "`sess.run(`, `n_epochs`" in en
    assert "printed accuracy 0.995 in cell 2" in en and "earns nothing" in en
    assert "学習済みのモデルが見つかりませんでした" in ja and "セル 2 で精度 0.995" in ja
    assert "heading changed" not in en and "見出しを変えましたか" not in ja
    assert item.details == {"claimed_accuracy": pytest.approx(0.995), "claimed_cell_index": 1}


def test_a_located_cell_without_a_trained_model_reports_the_printed_figure(exercise, config):
    """The cell is there but nothing was trained: the clean room's refusal, then the figure."""
    nb = printing_notebook()
    located = {item.id: None for item in exercise.items} | {"accuracy": Located(1, "id")}
    runner = RunnerResult(version=2, status="completed",
                          cells=[{"index": 1, "status": "ok"}])
    measured = Measured(results={"accuracy/student": MeasurementFailure(
        code="untrained", detail="no value for the variable W")})
    export = GraphExport.model_validate({"kind": "graph", "graph_def": "AA==", "output": "y:0"})
    evidence = Evidence(located=located, runner=runner, sources={}, exports={"accuracy": export},
                        measured=measured,
                        prepared=prepare_inputs(exercise, config, nb, located))
    item = next(i for i in score_items(exercise, evidence) if i.id == "accuracy")
    assert item.score == 0 and item.status is ItemStatus.ERROR
    lines = [t.en for t in item.feedback]
    assert lines[0].startswith("No trained variables were found")
    assert "printed accuracy 0.995 in cell 2" in lines[1] and "No trained model was found" \
        not in " ".join(lines)


def test_an_item_the_budget_left_unmeasured_says_so(exercise, config):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    located = {item.id: None for item in exercise.items} | {"conv1": Located(0, "id")}
    runner = RunnerResult(version=2, status="completed", cells=[{"index": 0, "status": "ok"}])
    export = GraphExport.model_validate({"kind": "graph", "graph_def": "AA==", "output": "y:0"})
    measured = Measured(results={"conv1/student": MeasurementFailure(
        code="budget", detail="300 s and 1200 CPU s in all, spent while measuring this answer")})
    evidence = Evidence(located=located, runner=runner, sources={}, exports={"conv1": export},
                        measured=measured,
                        prepared=prepare_inputs(exercise, config, nb, located))
    item = next(i for i in score_items(exercise, evidence) if i.id == "conv1")
    assert item.status is ItemStatus.ERROR
    assert "clean room's time for this submission ran out while measuring it" in \
        item.feedback[0].en and "300 s" in item.feedback[0].en
    assert "測定する時間" in item.feedback[0].ja


def test_refused_op_types_are_quoted_short():
    """Issue 17 part 7 (red team 2): a refused op's type is the student's text (a GraphDef
    node's ``op``): ten types of a megabyte each, within the measurement file's cap, were
    quoted whole in the item's feedback in both languages."""
    from grader.measurements import MAX_OP_NAME, parse_measurement
    from grader.scoring import _failure_text

    ops = [chr(ord("A") + k) * 1_000_000 for k in range(10)]
    failure = parse_measurement("tensor", {"ok": False, "error": {
        "code": "op_not_allowed", "detail": "ops outside the allow-list", "ops": ops}})
    assert isinstance(failure, MeasurementFailure) and failure.code == "op_not_allowed"
    assert len(failure.ops) == 10 and all(len(op) <= MAX_OP_NAME for op in failure.ops)
    text = _failure_text(failure)
    assert len(text.en) < 20 * MAX_OP_NAME and len(text.ja) < 20 * MAX_OP_NAME
    assert "AAAA" in text.en
