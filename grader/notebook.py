"""Reading a submitted notebook: bytes in, a validated nbformat v4 notebook or a reason out."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import nbformat
from nbformat.validator import normalize

#: Largest notebook accepted, before outputs are stripped (uploads are checked earlier too).
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class NotebookError(Exception):
    """The file is not a notebook the grader can run; ``reason`` is one line for the user
    (``reason_ja`` the same in Japanese)."""

    reason: str
    reason_ja: str = ""

    def __str__(self) -> str:
        return self.reason


def read_notebook(data: bytes) -> nbformat.NotebookNode:
    """Parse and validate; upgrade older v4 minors (no cell ids) and v3 to v4.5."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        size = len(data) // 1024 // 1024
        raise NotebookError(f"the notebook is {size} MiB; the limit is 50 MiB",
                            f"ノートブックが {size} MiB あります（上限 50 MiB）")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotebookError("the file is not UTF-8 text: is it really a .ipynb notebook?",
                            "UTF-8 のテキストではありません。.ipynb ファイルですか？") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"the file is not valid JSON (line {exc.lineno}): not a notebook",
            f"JSON として読めません（{exc.lineno} 行目）。ノートブックではありません。",
        ) from None
    if not isinstance(raw, dict) or ("cells" not in raw and "worksheets" not in raw):
        raise NotebookError("the JSON has no 'cells': not a Jupyter notebook",
                            "JSON に 'cells' がありません。Jupyter ノートブックではありません。")
    if raw.get("nbformat") not in (3, 4):
        raise NotebookError(f"unsupported notebook format {raw.get('nbformat')!r} (need 4)",
                            f"対応していないノートブック形式です ({raw.get('nbformat')!r})。")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
            if nb.nbformat_minor < 5:
                nb.nbformat_minor = 5
            _, nb = normalize(nb)
            nb = nbformat.from_dict(nb)
            nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise NotebookError(f"the notebook does not follow nbformat: {exc.message}",
                            f"nbformat の形式に従っていません: {exc.message}") from None
    except Exception as exc:  # nbformat raises assorted errors on odd input
        raise NotebookError(f"the notebook cannot be read: {exc}",
                            f"ノートブックを読み込めません: {exc}") from None
    return nb


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without outputs: what runs in the sandbox (old outputs prove nothing)."""
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in copy.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return copy
