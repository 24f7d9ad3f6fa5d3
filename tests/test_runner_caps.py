"""The runner's output caps on display updates (``CappedClient`` in ``grader/kernel/runner.py``),
fed messages directly: no kernel, no sandbox. The same through the real sandboxes:
``tests/test_attacks.py::test_display_updates_are_capped``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

KERNEL_DIR = Path(__file__).resolve().parent.parent / "grader" / "kernel"


@pytest.fixture(scope="module")
def runner_module() -> Any:
    """``runner.py`` as the runner's sandbox imports it: its folder first on ``sys.path``."""
    sys.path.insert(0, str(KERNEL_DIR))
    try:
        import runner

        yield runner
    finally:
        sys.path.remove(str(KERNEL_DIR))


def _message(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"msg_type": msg_type, "header": {"msg_type": msg_type, "msg_id": "m"},
            "parent_header": {"msg_id": "p"}, "metadata": {}, "content": content}


def _display(text: str, display_id: str = "d", update: bool = False) -> dict[str, Any]:
    return _message("update_display_data" if update else "display_data", {
        "data": {"text/plain": text}, "metadata": {}, "transient": {"display_id": display_id}})


def _client(runner_module: Any, visible: int = 2) -> Any:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"c{k}")
                                         for k in range(visible)])
    for cell in nb.cells:
        cell.outputs = []
    client = runner_module.CappedClient(nb, cell_output_bytes=2000, notebook_output_bytes=3000,
                                        kernel_name="python3")
    client.clear_before_next_output = False  # as execute_cell sets it before each cell
    return client


def _kept(cell: Any) -> int:
    return len(json.dumps(cell.outputs))


def test_a_small_update_replaces_the_display(runner_module):
    client = _client(runner_module)
    cell = client.nb.cells[0]
    client.process_message(_display("first"), cell, 0)
    for n in range(100):  # a progress display: many updates, each within the caps
        client.process_message(_display(f"step {n}", update=True), cell, 0)
    assert [o["data"]["text/plain"] for o in cell.outputs] == ["step 99"]
    assert client._cell_bytes[0] < 200


def test_an_update_over_the_caps_is_dropped_with_the_marker(runner_module):
    client = _client(runner_module)
    cell = client.nb.cells[0]
    client.process_message(_display("small"), cell, 0)
    client.process_message(_display("u" * 25_000, update=True), cell, 0)
    assert cell.outputs[0]["data"]["text/plain"] == "small"
    assert "output truncated" in cell.outputs[-1]["text"]
    # a new display reusing the id: neither the update of the old one nor the new one fits
    client.process_message(_display("v" * 25_000), cell, 0)
    assert cell.outputs[0]["data"]["text/plain"] == "small" and _kept(cell) < 2000


def test_updates_count_against_the_cell_of_the_display_and_the_notebook(runner_module):
    client = _client(runner_module)
    first, second = client.nb.cells
    client.process_message(_display("a"), first, 0)
    client.process_message(_display("b" * 1500, update=True), second, 1)  # from a later cell
    assert first.outputs[0]["data"]["text/plain"] == "b" * 1500  # within cell 0's 2000
    client.process_message(_display("c" * 1800, display_id="e"), second, 1)
    assert len(second.outputs) == 1 and "truncated" in second.outputs[0]["text"]  # 3000 in all
    assert client._total_bytes <= 3000


def test_hidden_cells_leave_no_display_behind(runner_module):
    """A hidden cell (an export) reuses one index after the notebook's cells: a display id
    recorded there would point at whatever the next hidden cell holds."""
    client = _client(runner_module)
    hidden = nbformat.v4.new_code_cell("export")
    hidden.outputs = []
    client.nb.cells.append(hidden)
    client.process_message(_display("in a hidden cell", display_id="h"), hidden, 2)
    client.nb.cells.pop()
    assert "h" not in client._display_id_map
    cell = client.nb.cells[0]
    client.process_message(_display("x", display_id="h", update=True), cell, 0)  # no IndexError
    assert cell.outputs == []
