"""What leaves the student's sandbox: the kernel's exports, checked before anything reads them.

An export is JSON the student's kernel produced (``grader/kernel/exporter.py``), carried out by
the runner, which does not interpret it. Here it is bounded in size and its envelope checked
(kind, the fields a graph export must have, their types); the graph itself is only ever parsed
by the clean room. Arrays are base64 of raw bytes with a dtype from a short list: nothing is
unpickled, nothing is executed.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grader.results import read_capped_json

#: Largest export accepted for one item.
MAX_EXPORT_BYTES = 48 * 1024 * 1024
#: dtypes an exported array may have.
ARRAY_DTYPES = frozenset({"<f4", "<f8", "<f2", "<i4", "<i8", "|u1", "|b1"})
MAX_ARRAY_VALUES = 50_000_000


class ExportError(ValueError):
    """An export that is missing, too large or malformed; the message says which."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PackedArray(_Model):
    dtype: str
    shape: list[int] = Field(max_length=8)
    data: str


class GraphExport(_Model):
    kind: Literal["graph"]
    graph_def: str = Field(max_length=MAX_EXPORT_BYTES)
    output: str = Field(max_length=500)
    inputs: dict[str, str] = Field(default_factory=dict, max_length=16)
    variables: dict[str, PackedArray] = Field(default_factory=dict, max_length=10_000)
    initializers: dict[str, str] = Field(default_factory=dict, max_length=10_000)
    context: dict[str, PackedArray] = Field(default_factory=dict, max_length=16)


class ValueExport(_Model):
    """The answer was no tensor (a NumPy array, a number...): nothing to measure."""

    kind: Literal["value"]
    type: str = Field(max_length=200)


class KerasExport(_Model):
    """A Keras model: its architecture as ``model.to_json()`` wrote it (read only by the clean
    room, against an allow-list: ``grader/cleanroom/keras_config.py``) and its weights."""

    kind: Literal["keras"]
    model_json: str = Field(max_length=1_000_000)
    weights: list[PackedArray] = Field(default_factory=list, max_length=1000)
    paths: list[str] = Field(default_factory=list, max_length=1000)


#: Every export the clean room measures.
Export = GraphExport | KerasExport


def read_export(path: Path) -> GraphExport | KerasExport | ValueExport:
    """The export in ``path``, size-capped and schema-checked."""
    try:
        data = read_capped_json(path, MAX_EXPORT_BYTES, "the export")
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if not isinstance(data, dict):
        raise ExportError("the export is not an object")
    if "error" in data:
        error = data["error"] if isinstance(data["error"], dict) else {}
        raise ExportError(f"{str(error.get('ename', 'Error'))[:100]}: "
                            f"{str(error.get('evalue', ''))[:1000]}")
    try:
        if data.get("kind") == "value":
            return ValueExport.model_validate(data)
        if data.get("kind") == "keras":
            return KerasExport.model_validate(data)
        return GraphExport.model_validate(data)
    except ValidationError as exc:
        raise ExportError(f"the export does not follow the schema: {exc.errors()[0]['msg']}"
                            ) from None


def unpack_array(payload: Any) -> np.ndarray:
    """A NumPy array from ``{"dtype", "shape", "data"}`` (raw bytes); ``ExportError`` when
    the fields disagree."""
    packed = payload if isinstance(payload, PackedArray) else PackedArray.model_validate(payload)
    if packed.dtype not in ARRAY_DTYPES:
        raise ExportError(f"array dtype {packed.dtype!r} is not allowed")
    if any(d < 0 for d in packed.shape) or math.prod(packed.shape) > MAX_ARRAY_VALUES:
        raise ExportError("array shape out of range")
    try:
        raw = base64.b64decode(packed.data, validate=True)
    except ValueError:
        raise ExportError("array data is not base64") from None
    dtype = np.dtype(packed.dtype)
    if len(raw) != math.prod(packed.shape) * dtype.itemsize:
        raise ExportError("array data does not fill its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(packed.shape).copy()
