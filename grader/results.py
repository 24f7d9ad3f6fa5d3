"""What crosses the sandbox boundary: the runner's JSON, validated on the host.

Everything in the sandbox is the student's to tamper with, so the result file is read with a
size cap and checked against these models; anything malformed becomes a ``sandbox_error``
rather than an exception deep in scoring. Nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Largest result file accepted (probes are bounded in the kernel: 20,000 values per array).
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


class RunnerResult(_Model):
    version: Literal[1]
    status: Literal["running", "completed", "timeout", "kernel_died", "runner_error"]
    cells: list[CellRecord] = Field(max_length=100_000)
    #: Item id -> the probe's dict; shapes are checked by each comparator.
    probes: dict[str, dict[str, Any]]
    bootstrap: list[str] = Field(default_factory=list, max_length=100)
    timings: dict[str, float] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    timeout_cell: int | None = None
    died_cell: int | None = None

    def cell(self, index: int) -> CellRecord | None:
        for record in self.cells:
            if record.index == index:
                return record
        return None


def read_runner_result(path: Path) -> RunnerResult:
    """Load and validate ``result.json`` written by the runner."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ResultError("the runner wrote no result") from None
    if size > MAX_RESULT_BYTES:
        raise ResultError(f"the result is {size} bytes, over the {MAX_RESULT_BYTES} limit")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultError(f"the result is not JSON: {exc}") from None
    try:
        return RunnerResult.model_validate(data)
    except ValidationError as exc:
        raise ResultError(f"the result does not follow the schema: {exc.errors()[0]}") from None
