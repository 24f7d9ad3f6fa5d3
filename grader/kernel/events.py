"""What the runner says as the run goes: progress events, one JSON object per line on its stdout.

The third message across the runner's sandbox wall, beside the plans (:mod:`plan`, host to
runner) and the record (``grader/results.py``, runner to host): the runner builds each line with
:class:`ProgressEvent` and :func:`event_line`, the host reads each back with :func:`read_event`,
so a field renamed on one side fails at once on the other instead of reading ``None``.

The runner's stdout is untrusted on the host (the runner drives the student's kernel and repeats
what it printed), so :func:`read_event` takes any line and gives ``None`` for one it cannot use:
too long, not JSON, an unknown event, a field of the wrong type or too long, a key nobody
writes. The line has already been cut at ``MAX_LINE_BYTES`` by the sandbox's reader
(``grader/sandbox/process.py``); this model's caps are tighter.

This module lives in ``grader/kernel/`` because that folder is all the runner's sandbox mounts:
the runner imports it as ``events``, the host as ``grader.kernel.events``. It imports nothing of
``grader``, only pydantic.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Longest printed line an ``output`` event carries (the runner cuts it to this).
MAX_TEXT_CHARS = 200
#: Longest item id or status an event carries.
MAX_NAME_CHARS = 200
#: Longest line :func:`read_event` parses; an honest event is far shorter.
MAX_EVENT_CHARS = 2048
#: Largest cell index or count (a database's ``integer``; a notebook has far fewer cells).
MAX_COUNT = 2**31 - 1

#: ``warm``: the kernel is ready and the bootstrap ran (a kit waits for its notebook);
#: ``kernel_ready``: the notebook was read (``cells``: its code cells); ``cell``: a cell starts
#: (``index`` in the notebook, ``position`` of ``count`` graded); ``output``: the last line a cell
#: printed (an epoch's accuracy); ``export``: an item's answer is asked for; ``done``: the
#: notebook ran to its end (``status``).
EventKind = Literal["warm", "kernel_ready", "cell", "output", "export", "done"]


class ProgressEvent(BaseModel):
    """One progress event. Strict: the host coerces nothing the runner did not write."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    event: EventKind
    #: The runner's clock (seconds since the epoch) when it said so.
    t: float
    #: The notebook cell the event is about.
    index: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    position: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    count: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    cells: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    item: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    status: str | None = Field(default=None, max_length=MAX_NAME_CHARS)


def event_line(event: ProgressEvent) -> str:
    """``event`` as the line the runner writes (no newline); fields left out are not sent."""
    return event.model_dump_json(exclude_none=True)


def read_event(line: str) -> ProgressEvent | None:
    """The event ``line`` holds, or ``None`` for a line that is not one (never raises)."""
    if len(line) > MAX_EVENT_CHARS or not line.startswith("{"):
        return None
    try:
        return ProgressEvent.model_validate_json(line)
    except (ValidationError, ValueError):
        return None
