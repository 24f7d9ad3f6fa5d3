"""Progress events across the runner's sandbox wall (``grader/kernel/events.py``): the runner
writes each with the model, the host reads each line back with it and skips any line that is
not one. No kernel, no sandbox: the runner's ``emit`` is called directly and the host's reader
fed lines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from grader.kernel.events import MAX_EVENT_CHARS, MAX_TEXT_CHARS, read_event
from grader.notebook_run import Progress, _parse_event


def _emitted(runner_module: Any, capsys: pytest.CaptureFixture[str], event: str,
             **fields: Any) -> str:
    runner_module.emit(event, **fields)
    (line,) = capsys.readouterr().out.splitlines()
    return line


@pytest.mark.parametrize(("event", "fields", "expected"), [
    ("warm", {}, Progress("warm")),
    ("kernel_ready", {"cells": 12}, Progress("kernel_ready")),
    ("cell", {"index": 3, "position": 2, "count": 11},
     Progress("cell", cell_index=3, position=2, count=11)),
    ("output", {"index": 5, "text": "epoch 1/3 - acc: 0.91"},
     Progress("output", cell_index=5, text="epoch 1/3 - acc: 0.91")),
    ("export", {"item": "conv1", "index": 4}, Progress("export", cell_index=4, item="conv1")),
    ("done", {"status": "completed"}, Progress("done")),
])
def test_what_the_runner_writes_the_host_delivers(runner_module, capsys, event, fields,
                                                  expected):
    line = _emitted(runner_module, capsys, event, **fields)
    assert json.loads(line)["event"] == event
    assert _parse_event(line) == expected


def test_a_printed_line_the_runner_forwards_is_capped_and_printable(runner_module, capsys):
    """The tail of what a cell printed, with a NUL and half a surrogate pair, as an ``output``
    event the host reads: cut to ``MAX_TEXT_CHARS``, nothing left that JSON or PostgreSQL
    refuses."""
    client = runner_module.CappedClient.__new__(runner_module.CappedClient)
    client._last_emit = 0.0
    client._emit_output(2, "first\n" + "\x00\ud800" + "x" * 1000 + "\n\n")
    (line,) = capsys.readouterr().out.splitlines()
    progress = _parse_event(line)
    assert progress is not None and progress.cell_index == 2 and progress.text is not None
    assert len(progress.text) == MAX_TEXT_CHARS
    assert progress.text.startswith("\ufffd?x")


GOOD = {"event": "cell", "t": 1.5, "index": 3, "position": 1, "count": 2}


@pytest.mark.parametrize("line", [
    # not JSON, or not an object
    "", "Traceback (most recent call last):", '{"event": "cell", "t": 1', "[1, 2]", '"cell"',
    "null", "{" * 1000 + "}" * 1000, '{"event": "cell", "t": 1, "index": ' + "[" * 900 + "]" * 900 + "}",
    # too long: the line, or a field
    json.dumps({**GOOD, "item": "x" * 180}) + " " * MAX_EVENT_CHARS,
    json.dumps({**GOOD, "text": "x" * (MAX_TEXT_CHARS + 1)}),
    json.dumps({**GOOD, "item": "x" * 201}),
    # wrong types (nothing is coerced)
    json.dumps({**GOOD, "index": "3"}), json.dumps({**GOOD, "index": 3.5}),
    json.dumps({**GOOD, "index": True}), json.dumps({**GOOD, "index": -1}),
    json.dumps({**GOOD, "text": ["a"]}), json.dumps({**GOOD, "t": "now"}),
    json.dumps({**GOOD, "event": 7}), json.dumps({**GOOD, "count": 10**40}),
    # unknown event, missing key, a key nobody writes
    json.dumps({**GOOD, "event": "measured"}), json.dumps({"event": "cell", "index": 3}),
    json.dumps({**GOOD, "score": 100}), json.dumps({**GOOD, "__class__": "x"}),
])
def test_a_line_that_is_no_event_is_skipped(line):
    assert read_event(line) is None
    assert _parse_event(line) is None


def test_a_good_line_is_delivered_and_the_wire_format_is_unchanged():
    """What the host took before the events were typed it takes now (``t`` as an int too)."""
    assert _parse_event(json.dumps(GOOD)) == Progress("cell", cell_index=3, position=1, count=2)
    assert _parse_event('{"event": "done", "t": 1700000000, "status": "completed"}') == \
        Progress("done")
    assert _parse_event(json.dumps({**GOOD, "event": "output", "text": "\ud800"})) in (
        None, Progress("output", cell_index=3, text="\ud800"))  # never raises
