"""From what the runner reported to item scores: outside the sandbox, on validated JSON."""

from __future__ import annotations

import re
from typing import Any

import nbformat
import numpy as np

from grader.comparators import CompareInput, get_comparator
from grader.locate import Located
from grader.report import ItemResult, ItemStatus
from grader.results import RunnerResult
from grader.spec import Exercise, Item, Text


def score_items(
    exercise: Exercise,
    located: dict[str, Located | None],
    result: RunnerResult | None,
    expected: dict[str, Any],
    *,
    labels: np.ndarray | None,
    claimed_accuracy: float | None,
    stop_reason: Text | None,
) -> list[ItemResult]:
    """One :class:`ItemResult` per item; items the run never reached get 0 with ``stop_reason``."""
    return [
        _score_item(exercise, item, located.get(item.id), result, expected.get(item.id),
                    labels, claimed_accuracy, stop_reason)
        for item in exercise.items
    ]


def _score_item(
    exercise: Exercise,
    item: Item,
    where: Located | None,
    result: RunnerResult | None,
    expected: dict[str, Any] | None,
    labels: np.ndarray | None,
    claimed: float | None,
    stop_reason: Text | None,
) -> ItemResult:
    out = ItemResult(item.id, item.title, 0.0, item.points, ItemStatus.MISSING)
    if where is None:
        out.feedback.append(Text(
            ja="この課題のセルが見つかりませんでした（セルを消したか、見出しを変えましたか）。",
            en="The cell for this item was not found (was it deleted, or its heading changed?).",
        ))
        return out
    out.cell_index = where.index
    cell = result.cell(where.index) if result is not None else None
    probe = result.probes.get(item.id) if result is not None else None
    if cell is None or cell.status in ("timeout", "kernel_died") or probe is None:
        out.status = ItemStatus.NOT_REACHED
        reason = stop_reason or Text(ja="このセルは実行されませんでした。",
                                     en="This cell was not run.")
        out.feedback.append(reason)
        return out
    cell_error = (cell.ename or "", cell.evalue or "") if cell.status == "error" else None
    if "skipped" in probe or "error" in probe:
        out.status = ItemStatus.ERROR
        out.feedback.append(_error_text(item, cell_error, probe.get("error")))
        _add_hint(out, item)
        return out
    judge = get_comparator(item.compare.kind)
    judgement = judge(CompareInput(
        item=item, exercise=exercise, probe=probe, expected=expected,
        cell_error=cell_error, labels=labels, claimed_accuracy=claimed,
    ))
    out.score = round(item.points * max(0.0, min(1.0, judgement.fraction)), 4)
    out.status = judgement.status
    out.feedback.extend(judgement.feedback)
    out.details.update(judgement.details)
    if judgement.fraction < 1:
        _add_hint(out, item)
    return out


def _add_hint(out: ItemResult, item: Item) -> None:
    if item.hint is not None:
        out.feedback.append(Text(ja="ヒント: " + item.hint.ja, en="Hint: " + item.hint.en))


def _error_text(item: Item, cell_error: tuple[str, str] | None, probe_error: Any) -> Text:
    if cell_error is not None:
        ename, evalue = cell_error
        if ename == "SyntaxError":
            return Text(
                ja=f"セルに構文エラーがあります ({evalue})。#WRITE ME の部分を書きましたか？",
                en=f"The cell has a syntax error ({evalue}). Did you fill in the #WRITE ME parts?",
            )
        return Text(ja=f"セルでエラーが起きました: {ename}: {evalue}",
                    en=f"The cell raised {ename}: {evalue}")
    if isinstance(probe_error, dict):
        ename = str(probe_error.get("ename", ""))
        evalue = str(probe_error.get("evalue", ""))
        if ename == "NameError":
            return Text(
                ja=f"答えを読み取れません: {evalue}（定義するセルが失敗していませんか？）",
                en=f"Could not read the answer: {evalue} (did the cell defining it fail?)",
            )
        return Text(ja=f"答えを読み取れませんでした: {ename}: {evalue}",
                    en=f"Could not read the answer: {ename}: {evalue}")
    return Text(ja="答えを読み取れませんでした。", en="Could not read the answer.")


def claimed_accuracy(
    executed: nbformat.NotebookNode | None, cell_index: int | None, pattern: str
) -> float | None:
    """The last accuracy the notebook printed in the item's cell (never used for the score)."""
    if executed is None or cell_index is None or cell_index >= len(executed.cells):
        return None
    text = []
    for output in executed.cells[cell_index].get("outputs", []):
        if output.get("output_type") == "stream":
            text.append(output.get("text", ""))
        elif "data" in output:
            text.append(str(output["data"].get("text/plain", "")))
    matches = re.findall(pattern, "".join(text))
    if not matches:
        return None
    last = matches[-1]
    try:
        value = float(last if isinstance(last, str) else last[0])
    except ValueError:
        return None
    return value / 100 if 1 < value <= 100 else value
