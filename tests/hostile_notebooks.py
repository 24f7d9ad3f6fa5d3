"""Notebooks built to cost the reader: many cells, huge cells, deep nesting. Shared by the
grader's tests (``tests/test_notebook.py``) and the service's (``tests/service``)."""

from __future__ import annotations

import json
from typing import Any

MiB = 1024 * 1024


def code_cell(source: str, number: int, outputs: list[dict[str, Any]] | None = None
              ) -> dict[str, Any]:
    return {"cell_type": "code", "id": f"cell-{number}", "metadata": {},
            "execution_count": None, "source": source, "outputs": outputs or []}


def notebook_bytes(cells: list[dict[str, Any]], **top: Any) -> bytes:
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5, **top}
    return json.dumps(notebook).encode()


def many_cells(count: int, total_bytes: int = 0, invalid_last: bool = True) -> bytes:
    """``count`` small code cells, padded to about ``total_bytes`` in all; with
    ``invalid_last`` the last one breaks the schema (a cell type that does not exist), so a
    reader that validates the whole notebook before reporting pays for every cell."""
    overhead = len(json.dumps(code_cell("", count)))
    padding = max(1, total_bytes // count - overhead - 12)
    cells = [code_cell(f"x = {'1' * padding}\n", number) for number in range(count)]
    if invalid_last:
        cells[-1]["cell_type"] = "bogus"
    return notebook_bytes(cells)


def deeply_nested(depth: int = 100_000) -> bytes:
    """``[`` nested ``depth`` deep (never closed, as the finding's upload)."""
    return b"[" * depth


def nested_in_metadata(depth: int) -> bytes:
    """A valid notebook whose metadata nests lists ``depth`` deep."""
    return notebook_bytes([code_cell("print(1)", 0)],
                          metadata={"deep": json.loads("[" * depth + "]" * depth)})
