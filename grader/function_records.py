"""What a function room wrote (``out.jsonl``), read with a size cap and checked.

Every line is untrusted (the student's code ran in that process and may have written
anything to the file): a line is a :class:`CallRecord` or a load failure, its array decoded
only from an allowed dtype whose byte count matches its shape, and held to the case's cap.
A line that is none of these is skipped; a call with no valid line is "no result".

A function of several arrays (``returns``): a call's line holds its ``parts``, exactly one per
name, each an array record (held to that part's cap) or a failure; or says why the structure
was wrong (``parts_count``, ``parts_keys``, ``parts_type``), checked against the names. A line
of the record's form whose content does not fit (another number of parts, a count that is
right, keys that are not wrong) is a call whose output cannot be read.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grader.spec import Text

#: The dtypes a room may write back, as ``numpy.dtype.str``.
DTYPES = frozenset({"|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8",
                    "<f2", "<f4", "<f8"})
#: The codes a failed call may carry (anything else reads as ``error``).
CODES = frozenset({"error", "memory", "too_large", "bad_output", "file", "network",
                   "process", "native", "clock"})
#: The codes of a result of several arrays whose structure is wrong.
PART_CODES = frozenset({"parts_count", "parts_keys", "parts_type"})
#: The most parts a line may hold, and keys named in a ``parts_keys`` failure.
MAX_PARTS = 16
UNREADABLE = "an output the grader cannot read"
_Key = Annotated[str, Field(max_length=80)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    ok: bool
    shape: list[int] | None = None
    dtype: str | None = None
    data: str | None = None
    code: str | None = None
    detail: str | None = Field(default=None, max_length=2000)


class _Line(_Part):
    """One call's record: a part's fields (one output, or a failure), which case and pass,
    and the parts of a function with ``returns``."""

    case: int = Field(ge=0)
    pass_: int = Field(ge=0, alias="pass")
    parts: list[_Part] | None = Field(default=None, max_length=MAX_PARTS)
    count: int | None = Field(default=None, ge=0)
    missing: list[_Key] | None = Field(default=None, max_length=MAX_PARTS)
    extra: list[_Key] | None = Field(default=None, max_length=MAX_PARTS)


class _Load(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    code: str = Field(max_length=40)
    detail: str = Field(max_length=2000)


@dataclass(frozen=True)
class CallRecord:
    """One call of the function on one case: its output, or why there is none."""

    case: int
    ok: bool
    array: np.ndarray | None = None
    code: str | None = None
    detail: str = ""
    #: A function of several arrays: one record per name, in the order of ``returns``.
    parts: tuple[CallRecord, ...] | None = None
    #: ``parts_count``: how many values the function returned.
    count: int | None = None
    #: ``parts_keys``: the names the dict lacked, and the keys it should not have had.
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()


@dataclass
class SideResult:
    """One side's run: calls by pass then case, and how the run ended."""

    calls: dict[int, dict[int, CallRecord]] = field(default_factory=dict)
    #: The module or function could not be had: ``(code, detail)``.
    load: tuple[str, str] | None = None
    #: Why the sandbox ended early (time, memory, a signal), else ``None``.
    ending: Text | None = None
    #: ``(pass, case)`` the run was in when it ended early.
    stopped_in: tuple[int, int] | None = None
    #: Lines that were not valid records.
    bad_lines: int = 0
    wall_seconds: float = 0.0

    def call(self, pass_index: int, case: int) -> CallRecord | None:
        return self.calls.get(pass_index, {}).get(case)


def read_records(path: Path, limit: int, passes: int, cases: int,
                 caps: Sequence[int | Sequence[int]], returns: Sequence[str] | None = None
                 ) -> SideResult:
    """The records of ``path`` (at most ``limit`` bytes read; a longer file is cut and its
    last line dropped), each checked against its case's cap: ``caps[case]``, or with
    ``returns`` (the names of the parts) ``caps[case][part]``."""
    side = SideResult()
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError:
        return side
    lines = data.split(b"\n")
    if len(data) > limit:
        lines = lines[:-1]
    for raw in lines:
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            side.bad_lines += 1
            continue
        if isinstance(value, dict) and set(value) == {"load"}:
            try:
                load = _Load.model_validate(value["load"])
            except ValidationError:
                side.bad_lines += 1
                continue
            side.load = side.load or (load.code, load.detail)
            continue
        record = _record(value, passes, cases, caps, returns)
        if record is None:
            side.bad_lines += 1
            continue
        pass_index, call = record
        side.calls.setdefault(pass_index, {}).setdefault(call.case, call)
    return side


def _record(value: Any, passes: int, cases: int, caps: Sequence[int | Sequence[int]],
            returns: Sequence[str] | None) -> tuple[int, CallRecord] | None:
    try:
        line = _Line.model_validate(value)
    except ValidationError:
        return None
    if line.case >= cases or line.pass_ >= passes:
        return None
    cap = caps[line.case]
    if returns is not None:
        if isinstance(cap, int):
            raise TypeError("a function of several arrays needs a cap per part")
        return line.pass_, _parts_record(line, list(returns), list(cap))
    if line.parts is not None or line.code in PART_CODES or not isinstance(cap, int):
        return line.pass_, _unreadable(line.case)
    if not line.ok:
        code = line.code if line.code in CODES else "error"
        return line.pass_, CallRecord(line.case, False, code=code, detail=line.detail or "")
    array = decode_array(line.shape, line.dtype, line.data, cap)
    if array is None:
        return line.pass_, _unreadable(line.case)
    return line.pass_, CallRecord(line.case, True, array=array)


def _unreadable(case: int) -> CallRecord:
    return CallRecord(case, False, code="bad_output", detail=UNREADABLE)


def _parts_record(line: _Line, returns: list[str], caps: list[int]) -> CallRecord:
    """A call of a function of several arrays: its parts, or its structure's failure; a line
    whose content does not fit ``returns`` is an output the grader cannot read."""
    case = line.case
    if line.ok:
        if (line.parts is None or len(line.parts) != len(returns) or len(caps) != len(returns)
                or line.shape is not None or line.data is not None):
            return _unreadable(case)
        parts = []
        for part, cap in zip(line.parts, caps, strict=True):
            if not part.ok:
                code = part.code if part.code in CODES else "error"
                parts.append(CallRecord(case, False, code=code, detail=part.detail or ""))
                continue
            array = decode_array(part.shape, part.dtype, part.data, cap)
            parts.append(CallRecord(case, True, array=array) if array is not None else
                         _unreadable(case))
        return CallRecord(case, True, parts=tuple(parts))
    if line.parts is not None:
        return _unreadable(case)
    if line.code == "parts_count":
        if line.count is None or line.count == len(returns):
            return _unreadable(case)
        return CallRecord(case, False, code="parts_count", count=line.count)
    if line.code == "parts_keys":
        missing = tuple(dict.fromkeys(line.missing or ()))
        extra = tuple(dict.fromkeys(line.extra or ()))
        if (not missing and not extra) or not set(missing) <= set(returns) or (
                set(extra) & set(returns)):
            return _unreadable(case)
        return CallRecord(case, False, code="parts_keys", missing=missing, extra=extra)
    if line.code == "parts_type":
        return CallRecord(case, False, code="parts_type", detail=line.detail or "")
    code = line.code if line.code in CODES else "error"
    return CallRecord(case, False, code=code, detail=line.detail or "")


def decode_array(shape: list[int] | None, dtype: str | None, data: str | None,
                 cap: int) -> np.ndarray | None:
    """The array of a record, or ``None`` when any part is off (dtype, size, cap)."""
    if shape is None or dtype not in DTYPES or data is None or len(shape) > 32:
        return None
    if any(d < 0 for d in shape):
        return None
    count = math.prod(shape)
    if count > cap:
        return None
    kind = np.dtype(dtype)
    if len(data) != 4 * math.ceil(count * kind.itemsize / 3):
        return None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != count * kind.itemsize:
        return None
    return np.frombuffer(raw, dtype=kind).reshape(shape)
