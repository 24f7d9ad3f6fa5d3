"""The runner's output caps on display updates (``CappedClient`` in ``grader/kernel/runner.py``),
fed messages directly: no kernel, no sandbox. The same through the real sandboxes:
``tests/test_attacks.py::test_display_updates_are_capped``."""

from __future__ import annotations

import json
from typing import Any

import nbformat


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


# --- issue 17 part 7 (red team 2): one stream message and the runner's own memory ----------


def test_a_long_printed_text_costs_the_runner_no_more_than_its_size(runner_module, capsys):
    """The progress event's last line was sought by splitting the whole text: one stream
    message of 60 MB of ``ab\\n`` (within the frame and decoded-size limits) made 20 million
    strings, 1.5 GiB, and took the runner past its 2 GiB before the caps cut the output
    (``out_of_memory``, where one message was documented to cost its own size)."""
    import tracemalloc

    client = _client(runner_module)
    cell = client.nb.cells[0]
    text = "ab\n" * 1_000_000 + "epoch 9: accuracy 0.99\n"
    message = _message("stream", {"name": "stdout", "text": text})
    tracemalloc.start()
    try:
        client.process_message(message, cell, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(text), peak  # a JSON copy to measure it; 17 times before
    assert len(json.dumps(cell.outputs)) < 2100  # the cell's cap, 2000, and the envelope
    assert "epoch 9: accuracy 0.99" in capsys.readouterr().out


def test_a_printed_text_cut_at_the_cap_is_within_it_as_json(runner_module):
    """A stream over the room left was cut at that many characters, but a character takes up
    to 12 in the JSON the cap counts (``\\u0001``; a surrogate pair): 12 times the cap kept."""
    for char in ("\x01", "\U0001F600", "a\n"):
        client = _client(runner_module)
        cell = client.nb.cells[0]
        client.process_message(_message("stream", {"name": "stdout", "text": char * 10_000}),
                               cell, 0)
        assert cell.outputs[0]["text"], repr(char)
        assert len(json.dumps(cell.outputs[0]["text"])) <= 2000, repr(char)


def test_a_cells_reply_is_kept_as_its_status_and_a_short_error(runner_module):
    """Every cell's execute_reply was kept whole for the run: the kernel's, up to a frame
    (64 MiB), so a thousand cells of 60 MB replies held the runner past its memory."""
    from types import SimpleNamespace

    holder = SimpleNamespace(replies={})
    reply = {"content": {"status": "error", "ename": "E" * 10_000, "evalue": "v" * 10_000_000,
                         "traceback": ["t" * 1_000_000], "payload": [{"x": "y" * 1_000_000}]}}
    runner_module.Runner._on_cell_executed(holder, None, 3, reply)
    kept = holder.replies[3]
    assert kept["status"] == "error"
    assert len(json.dumps(kept)) < 2_400
    runner_module.Runner._on_cell_executed(holder, None, 4, {"content": {
        "status": ["error"], "ename": {"a": 1}, "evalue": None}})
    assert holder.replies[4] == {"status": "list", "ename": "dict", "evalue": "NoneType"}
