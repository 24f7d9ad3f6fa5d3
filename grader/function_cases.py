"""A function item's inputs: how the spec says they are made, and making them from a seed.

``compare = { kind = "function", ... }`` (``docs/exercise-spec.md``, "Answer kinds:
function") is read here into :class:`FunctionCompare`: the arguments (each an array of a shape
whose named dimensions are drawn per case, a dtype and a value range, or a literal value), the
number of random cases, the edge cases (dimensions fixed, ranges or fills changed, or values
written out), the tolerances and the scoring rule. :func:`draw_cases` makes the cases of one
run from a seed the host draws (never from anything the student sees), so a function right
only on the notebook's own example inputs, or returning a stored value, meets inputs nobody
could have foreseen.

Imports nothing of ``grader`` (``grader.spec`` checks a function item's options with it).
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Most values one input array may hold (the largest shape its dimensions allow).
MAX_INPUT_VALUES = 1_000_000
#: Most random cases and edge cases of one item.
MAX_CASES = 64
#: Most arrays a function may return (``returns``).
MAX_RETURNS = 16
DType = Literal["float64", "float32", "int64", "int32", "bool"]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ArgSpec(_Table):
    """One positional argument: an array (``shape``, ``dtype``, values uniform in
    [``low``, ``high``], or all ``fill``), or ``value``, a literal passed as it is (an axis)."""

    shape: list[int | str] = Field(default_factory=list)
    dtype: DType = "float64"
    low: float = -1.0
    high: float = 1.0
    fill: float | None = None
    value: int | float | bool | str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ArgSpec:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        if any(isinstance(d, int) and d < 0 for d in self.shape):
            raise ValueError("a dimension must not be negative")
        return self


class ArgChange(_Table):
    """An edge case's change to one argument (every key optional); ``values``: the array
    written out (nested lists), which fixes its shape too."""

    shape: list[int | str] | None = None
    dtype: DType | None = None
    low: float | None = None
    high: float | None = None
    fill: float | None = None
    values: Any = None


class EdgeCase(_Table):
    """A case the author names: ``dims`` fixed (``{ n = 1 }``: a batch of one) and ``args``
    changed, in argument order (``{}`` leaves one as it is)."""

    name: str = Field(min_length=1, max_length=80)
    dims: dict[str, int] = Field(default_factory=dict)
    args: list[ArgChange] = Field(default_factory=list)


class FunctionCompare(_Table):
    """The ``compare`` table of a function item."""

    kind: Literal["function"]
    #: Random cases per run (shapes and values drawn anew each run).
    cases: int = Field(default=8, ge=0, le=MAX_CASES)
    args: list[ArgSpec] = Field(min_length=1, max_length=8)
    #: Named dimensions: inclusive ranges ``[low, high]`` drawn per case.
    dims: dict[str, list[int]] = Field(default_factory=dict)
    edge_cases: list[EdgeCase] = Field(default_factory=list, max_length=MAX_CASES)
    rtol: float = Field(default=1e-6, ge=0)
    atol: float = Field(default=1e-9, ge=0)
    #: ``same``: the output's dtype must equal the reference's; ``kind``: same kind (float,
    #: integer, bool); ``any``: not checked.
    dtype: Literal["same", "kind", "any"] = "kind"
    #: ``all``: the points only when every case passes; ``cases``: in proportion.
    scoring: Literal["all", "cases"] = "all"
    #: Wall seconds for each side's sandbox run (the student's calls each case twice).
    seconds: float = Field(default=20.0, gt=0, le=300)
    #: The names of the arrays the function returns, in order (a tuple or a list of that many
    #: arrays, or a dict with exactly these keys); ``None``: it returns one array.
    returns: list[str] | None = Field(default=None, min_length=1, max_length=MAX_RETURNS)

    @model_validator(mode="after")
    def _consistent(self) -> FunctionCompare:
        for name, bounds in self.dims.items():
            if len(bounds) != 2 or not 0 <= bounds[0] <= bounds[1]:
                raise ValueError(f"dims.{name}: need 0 <= low <= high")
        for n, arg in enumerate(self.args):
            _check_shape(arg.shape, self.dims, f"args[{n}]")
        for edge in self.edge_cases:
            if len(edge.args) > len(self.args):
                raise ValueError(f"edge case '{edge.name}': more args than the function's")
            for name in edge.dims:
                if name not in self.dims:
                    raise ValueError(f"edge case '{edge.name}': unknown dimension '{name}'")
            for n, change in enumerate(edge.args):
                if change.shape is not None:
                    _check_shape(change.shape, self.dims, f"edge case '{edge.name}' args[{n}]")
        if self.returns is not None:
            for name in self.returns:
                if not name.isidentifier() or keyword.iskeyword(name) or len(name) > 64:
                    raise ValueError(f"returns: {name!r} is not a Python identifier (of at most 64 "
                                     "characters)")
            if len(set(self.returns)) != len(self.returns):
                raise ValueError("returns: the names must be unique")
        if self.cases + len(self.edge_cases) == 0:
            raise ValueError("no cases: set cases or edge_cases")
        if self.cases + len(self.edge_cases) > MAX_CASES:
            raise ValueError(f"at most {MAX_CASES} cases in all")
        return self


def _check_shape(shape: list[int | str], dims: dict[str, list[int]],
                 where: str) -> None:
    largest = 1
    for d in shape:
        if isinstance(d, str):
            if d not in dims:
                raise ValueError(f"{where}: unknown dimension '{d}' (declare it in dims)")
            largest *= dims[d][1]
        else:
            largest *= d
    if largest > MAX_INPUT_VALUES:
        raise ValueError(f"{where}: up to {largest:,} values (at most {MAX_INPUT_VALUES:,})")


def read_compare(kind: str, options: dict[str, Any]) -> FunctionCompare:
    """The item's options as a :class:`FunctionCompare` (``ValueError`` naming the key)."""
    return FunctionCompare.model_validate({"kind": kind, **options})


@dataclass(frozen=True)
class Case:
    """One call: its name (``random 3``, or the edge case's) and its arguments."""

    name: str
    args: tuple[np.ndarray | int | float | bool | str, ...]

    def describe(self) -> str:
        """``x: 4x7 float64`` per argument (for feedback: no values)."""
        parts = []
        for n, arg in enumerate(self.args):
            if isinstance(arg, np.ndarray):
                shape = "x".join(str(d) for d in arg.shape) or "scalar"
                parts.append(f"arg{n + 1}: {shape} {arg.dtype}")
            else:
                parts.append(f"arg{n + 1}: {arg!r}")
        return ", ".join(parts)

    @property
    def input_values(self) -> int:
        return sum(int(a.size) for a in self.args if isinstance(a, np.ndarray))


def draw_cases(spec: FunctionCompare, seed: int) -> list[Case]:
    """The edge cases, then ``spec.cases`` random ones, all drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    cases = []
    for edge in spec.edge_cases:
        dims = _draw_dims(spec, rng)
        dims.update(edge.dims)
        changes = list(edge.args) + [ArgChange()] * (len(spec.args) - len(edge.args))
        args = tuple(_make_arg(arg, change, dims, rng) for arg, change in zip(spec.args, changes,
                                                                             strict=True))
        cases.append(Case(edge.name, args))
    for n in range(spec.cases):
        dims = _draw_dims(spec, rng)
        cases.append(Case(f"random {n + 1}", tuple(_make_arg(arg, ArgChange(), dims, rng)
                                                   for arg in spec.args)))
    return cases


def _draw_dims(spec: FunctionCompare, rng: np.random.Generator) -> dict[str, int]:
    return {name: int(rng.integers(b[0], b[1] + 1)) for name, b in spec.dims.items()}


def _make_arg(arg: ArgSpec, change: ArgChange, dims: dict[str, int],
              rng: np.random.Generator) -> np.ndarray | int | float | bool | str:
    if arg.value is not None and change.values is None:
        return arg.value
    dtype = np.dtype(change.dtype or arg.dtype)
    if change.values is not None:
        values = np.asarray(change.values, dtype=dtype)
        if values.size > MAX_INPUT_VALUES:
            raise ValueError("an edge case's values are too many")
        return values
    written = arg.shape if change.shape is None else change.shape
    shape = tuple(dims[d] if isinstance(d, str) else d for d in written)
    if math.prod(shape) > MAX_INPUT_VALUES:
        raise ValueError("an input would be too large")
    low = arg.low if change.low is None else change.low
    high = arg.high if change.high is None else change.high
    fill = change.fill if change.fill is not None else arg.fill
    if fill is not None:
        return np.full(shape, fill, dtype=dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "i":
        return rng.integers(math.ceil(low), math.floor(high) + 1, size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(dtype)
