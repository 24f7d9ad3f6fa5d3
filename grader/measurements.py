"""What the clean room measured, validated on the host before any comparator reads it.

The clean room is the grader's own code, but it measured graphs a student wrote, so its output
is checked like any untrusted value: types, ranges and sizes, with pydantic. A value that does
not fit makes that item an error with feedback (:class:`MeasurementError`), never a traceback.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_VALUES = 1_000_000


class MeasurementError(ValueError):
    """A measurement that does not follow its schema."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)


class MeasuredArray(_Model):
    shape: list[int] = Field(max_length=8)
    values: list[float | None] = Field(max_length=MAX_VALUES)

    @model_validator(mode="after")
    def _fits(self) -> MeasuredArray:
        if any(d < 0 or d > MAX_VALUES for d in self.shape):
            raise ValueError("dimension out of range")
        if math.prod(self.shape) != len(self.values):
            raise ValueError("values do not fill the shape")
        return self

    def array(self) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in self.values],
                        dtype=np.float64).reshape(self.shape)


class TensorMeasurement(_Model):
    outputs: list[MeasuredArray] = Field(min_length=1, max_length=64)
    fed: bool


class VariableStats(_Model):
    name: str = Field(max_length=500)
    shape: list[int] = Field(max_length=8)
    min: float
    max: float
    mean: float
    std: float
    finite: bool = True


class LayerMeasurement(_Model):
    variables: list[VariableStats] = Field(max_length=1000)
    output: MeasuredArray


class GraphOp(_Model):
    type: str = Field(max_length=200)
    level: int = Field(ge=0, le=1000)
    inputs: list[list[int | None] | None] = Field(max_length=1000)
    outputs: list[list[int | None] | None] = Field(max_length=1000)


class PathInput(_Model):
    """One input of a data-path op: data (from the image), or what it is instead."""

    data: bool
    #: ``variable``, ``constant``, ``placeholder`` or ``other`` (when not data).
    kind: str | None = Field(default=None, max_length=20)
    shape: list[int | None] | None = Field(default=None, max_length=8)
    #: Values of the constants, variables and placeholders it is computed from (``None``:
    #: not measured, or too far to read).
    sources: int | None = Field(default=None, ge=0)


class PathOp(_Model):
    type: str = Field(max_length=200)
    inputs: list[PathInput] = Field(max_length=8)
    data_inputs: int = Field(ge=0, le=100_000)
    input_count: int = Field(ge=0, le=100_000)


class LogitsBias(PathInput):
    type: str = Field(max_length=200)


class LogitsMatMul(_Model):
    h_on_path: bool
    h_shape: list[int | None] | None = Field(default=None, max_length=8)
    on_path: bool
    weights: PathInput
    transpose_a: bool
    transpose_b: bool


class Logits(_Model):
    softmax: bool
    bias: LogitsBias | None = None
    matmul: LogitsMatMul | None = None


class DataPath(_Model):
    """Every op on a path from the image to the output (``grader/cleanroom/datapath.py``)."""

    input: bool
    reaches_output: bool
    count: int = Field(ge=0)
    truncated: bool
    ops: list[PathOp] = Field(max_length=200)
    logits: Logits


class GraphMeasurement(_Model):
    op: str = Field(max_length=200)
    shape: list[int | None] | None = None
    ops: list[GraphOp] = Field(max_length=200)
    data_path: DataPath | None = None


class KerasLayer(_Model):
    class_name: str = Field(max_length=60)
    output_shape: list[int | None] = Field(max_length=8)
    parameters: int = Field(ge=0)
    activation: str | None = Field(default=None, max_length=40)


class KerasStructure(_Model):
    """A Keras model's layers as the clean room made them again (``keras_build.py``)."""

    input_shape: list[int] = Field(max_length=8)
    layers: list[KerasLayer] = Field(max_length=100)
    parameters: int = Field(ge=0)
    #: Layers of each kind (``conv``, ``pooling``, ``dense``...).
    kinds: dict[str, int] = Field(max_length=20)


class PredictionsMeasurement(_Model):
    #: Image set -> the class predicted for each image: JSON integers only (the clean room's
    #: ``int``s; a string or a float is a forgery, not a prediction).
    predictions: dict[str, list[StrictInt]]
    parameters: int = Field(ge=0)
    #: blake2b-256 (hex) of the trained values the clean room froze into the graph
    #: (:mod:`grader.fingerprints`); anything but 64 hex digits is dropped (None), never an
    #: error: the accuracy stands without it.
    weights: str | None = None
    #: The trained model's structure (what :class:`GraphMeasurement` holds).
    graph: GraphMeasurement | None = None
    #: A Keras model's structure (its layers), when the model is one.
    structure: KerasStructure | None = None


    @field_validator("weights", mode="before")
    @classmethod
    def _hex_digest(cls, value: Any) -> str | None:
        if isinstance(value, str) and len(value) == 64 and HEX_DIGEST.fullmatch(value):
            return value
        return None


#: A blake2b-256 digest as the clean room writes it.
HEX_DIGEST = re.compile(r"[0-9a-f]{64}")

#: Characters of one op's type a failure keeps: the type is the student's text (a GraphDef
#: node's ``op``), quoted in the item's feedback in both languages; ten refused types of
#: megabytes each filled the report with what the measurement file's cap let through.
MAX_OP_NAME = 100


class MeasurementFailure(_Model):
    code: str = Field(max_length=60)
    detail: str = Field(default="", max_length=2000)
    ops: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("ops", mode="before")
    @classmethod
    def _short_names(cls, ops: Any) -> Any:
        if not isinstance(ops, list):
            return ops
        return [op[:MAX_OP_NAME - 1] + "…" if isinstance(op, str) and len(op) > MAX_OP_NAME
                else op for op in ops]


MODELS: dict[str, type[_Model]] = {
    "tensor": TensorMeasurement,
    "layer": LayerMeasurement,
    "graph": GraphMeasurement,
    "predictions": PredictionsMeasurement,
    "keras_structure": KerasStructure,
}


#: Bytes of JSON one measured value may take (``-1.2345678901234567e-300, ``).
BYTES_PER_VALUE = 32
#: Bytes of JSON one prediction may take (``7, ``).
BYTES_PER_PREDICTION = 4
#: Bytes for what a measurement holds besides its arrays: the error, the variables' statistics
#: (at most 1,000 of about 600 bytes), the graph facts (at most 200 ops).
BYTES_OVERHEAD = {"tensor": 64 * 1024, "layer": 1024 * 1024, "graph": 4 * 1024 * 1024,
                  "predictions": 4 * 1024 * 1024, "keras_structure": 256 * 1024}


def max_measurement_bytes(kind: str, *, max_values: Any = None, outputs: int = 1,
                          images: int = 0) -> int:
    """The largest measurement file of ``kind`` the host reads: what the expected shapes need
    (``max_values`` per output array, ``outputs`` of them for a tensor answer; one prediction
    per image), never more than a tensor of :data:`MAX_VALUES` values per output."""
    values = MAX_VALUES if not isinstance(max_values, int) else min(max(max_values, 1),
                                                                        MAX_VALUES)
    overhead = BYTES_OVERHEAD.get(kind, 64 * 1024)
    if kind == "tensor":
        return overhead + outputs * values * BYTES_PER_VALUE
    if kind == "layer":
        return overhead + values * BYTES_PER_VALUE
    if kind == "predictions":
        return overhead + images * BYTES_PER_PREDICTION
    return overhead


def parse_measurement(kind: str, data: Any, *, max_values: Any = None
                      ) -> _Model | MeasurementFailure:
    """The validated measurement of ``kind`` from the clean room's JSON for one job; an output
    array over ``max_values`` values (the job's expected shape) is a ``wrong_shape`` failure,
    as the clean room itself would have made it."""
    if not isinstance(data, dict):
        raise MeasurementError("the measurement is not an object")
    try:
        if data.get("ok") is not True:
            return MeasurementFailure.model_validate(data.get("error") or {"code": "unknown"})
        measurement = MODELS[kind].model_validate(data)
    except (ValidationError, KeyError) as exc:
        raise MeasurementError(f"the {kind} measurement does not follow its schema: "
                               f"{str(exc)[:300]}") from None
    arrays = (measurement.outputs if isinstance(measurement, TensorMeasurement) else
              [measurement.output] if isinstance(measurement, LayerMeasurement) else [])
    largest = max((len(a.values) for a in arrays), default=0)
    if isinstance(max_values, int) and largest > max_values:
        return MeasurementFailure(code="wrong_shape", detail=f"an output of {largest} values; "
                                  f"at most {max_values} were expected")
    return measurement
