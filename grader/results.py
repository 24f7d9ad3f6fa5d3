"""The runner's record of a run, validated on the host.

The runner runs in the grader's sandbox, under another user than the student's kernel, and
writes into a folder the kernel cannot see: what it records (cells run, their status and
time, which export file belongs to which item) is its own observation. It is still read with
a size cap and checked against these models, and anything malformed becomes a
``sandbox_error`` rather than an exception deep in scoring. The exports it names are the
kernel's, untrusted: see :mod:`grader.exports`. Nothing is unpickled.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Largest result file accepted (the runner's record: cells and export file names).
MAX_RESULT_BYTES = 8 * 1024 * 1024


class ResultError(ValueError):
    """The runner's result is missing, too large or malformed."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CellRecord(_Model):
    index: int = Field(ge=0, le=100_000)
    status: Literal["ok", "error", "timeout", "kernel_died"]
    seconds: float | None = None
    ename: str | None = Field(default=None, max_length=200)
    evalue: str | None = Field(default=None, max_length=4000)


class ErrorInfo(_Model):
    ename: str = Field(default="", max_length=200)
    evalue: str = Field(default="", max_length=4000)


class ExportRecord(_Model):
    file: str | None = Field(default=None, pattern=r"^[0-9]{1,6}\.json$")
    error: ErrorInfo | None = None


class RunnerResult(_Model):
    version: Literal[2]
    #: Where the runner stopped, as it wrote it inside the sandbox: a fact that
    #: ``grader.outcome.classify_run`` reads, not the run's outcome (the field keeps its name:
    #: it is the sandbox's wire format).
    status: Literal["running", "completed", "timeout", "kernel_died", "runner_error"]
    cells: list[CellRecord] = Field(max_length=100_000)
    #: Item id -> ``{"file": "<n>.json"}`` (the export, in ``out/exports``) or
    #: ``{"error": {...}}`` when the kernel answered nothing usable.
    exports: dict[str, ExportRecord] = Field(default_factory=dict, max_length=1000)
    #: Item id -> whether the kernel said the answer's name was assigned anew (feedback only).
    fresh: dict[str, bool] = Field(default_factory=dict, max_length=1000)
    bootstrap: list[str] = Field(default_factory=list, max_length=100)
    timings: dict[str, float] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    timeout_cell: int | None = None
    #: Seconds the cell that timed out was allowed (its budget), when the runner says.
    timeout_budget: float | None = Field(default=None, gt=0, le=1e7)
    died_cell: int | None = None
    #: Kernel messages the runner dropped (malformed, unused, too large), by reason, and how
    #: often a channel reconnected: diagnostics only (``grader/kernel/channel.py``).
    dropped_messages: dict[str, int] = Field(default_factory=dict, max_length=100)

    def cell(self, index: int) -> CellRecord | None:
        for record in self.cells:
            if record.index == index:
                return record
        return None


def read_capped_json(path: Path, limit: int, what: str) -> Any:
    """The JSON in ``path`` if it is a regular file of at most ``limit`` bytes; ``ValueError``
    saying what is wrong with ``what`` otherwise (missing, not a plain file, too large, not
    JSON, nested too deep). The file is written by a sandbox: a link is not followed (it could
    point at a host file whose text an error would quote) and a FIFO or device is not read
    (it could block or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{what} is a link, not a file") from None
        raise ValueError(f"{what} is missing") from None
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ValueError(f"{what} is not a plain file")
        if status.st_size > limit:
            raise ValueError(f"{what} is {status.st_size} bytes, over the {limit} limit")
        raw = handle.read(limit + 1)
    if len(raw) > limit:  # grew after the check
        raise ValueError(f"{what} is over the {limit} limit")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{what} is not JSON: {str(exc)[:200]}") from None


def read_runner_result(path: Path) -> RunnerResult:
    """Load and validate ``result.json`` written by the runner."""
    try:
        data = read_capped_json(path, MAX_RESULT_BYTES, "the runner's result")
    except ValueError as exc:
        raise ResultError(str(exc)) from None
    try:
        return RunnerResult.model_validate(data)
    except ValidationError as exc:
        raise ResultError(f"the result does not follow the schema: {exc.errors()[0]}") from None
