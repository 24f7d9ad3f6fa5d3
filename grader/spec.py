"""Exercise specs: ``exercises/<id>/exercise.toml`` read into frozen pydantic models.

Every table is read strictly (``extra="forbid"``, no coercion): an unknown key, a missing one or
a value of the wrong type is an error naming the file and the key, so a typo in a spec fails
loudly in CI instead of silently grading with a default. See ``docs/exercise-spec.md`` for the
format. Pydantic's own error list is turned into one line per problem (:func:`_describe`), in
the words the spec's authors read: ``items[0].points: expected int or float, got str``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from grader.limits import Limits


class SpecError(ValueError):
    """An exercise spec that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Text:
    """A message in both languages the course uses."""

    ja: str
    en: str

    def get(self, lang: str) -> str:
        return self.ja if lang == "ja" else self.en




class GpuNeed(StrEnum):
    """``[runtime] gpu``: what a run of the exercise asks of the GPUs (``docs/gpus.md``). The
    service copies it onto each run when the run is made (``GradingRun.gpu``)."""

    #: Only a worker holding a free GPU takes it (the Celery ``gpu`` queue).
    REQUIRED = "required"
    #: Any worker takes it; one with a free GPU lends it the device.
    PREFERRED = "preferred"
    #: Never given a GPU.
    NONE = "none"

    @property
    def wants_gpu(self) -> bool:
        return self is not GpuNeed.NONE


#: What the kernel can export (``grader/kernel/exporter.py``), and ``function``: a function
#: taken from the notebook's source on the host, never from the kernel
#: (:mod:`grader.function_source`).
EXPORTS = ("tensor", "layer", "model", "keras_model", "function")
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
         "KB": 1000, "MB": 1000**2, "GB": 1000**3}  # fmt: skip


def parse_size(value: int | str, where: str) -> int:
    """Bytes from ``512MiB``, ``6GiB``, ``64KB`` or a plain number; ``SpecError`` naming
    ``where`` otherwise."""
    if isinstance(value, int):
        return value
    match = SIZE.match(value)
    if not match:
        problem = f"cannot read size {value!r} (use e.g. 512MiB, 6GiB)"
        raise SpecError(f"{where}: {problem}" if where else problem)
    return int(float(match.group(1)) * UNITS[match.group(2)])


# --- value types: what TOML gives, checked as the old strict reader did --------------------


def _type_name(value: Any) -> str:
    return type(value).__name__


def _strings(value: Any) -> Any:
    """A string or a list of strings, as a tuple."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise ValueError(f"expected str or list, got {_type_name(value)}")
    if not all(isinstance(v, str) for v in value):
        raise ValueError("expected a string or a list of strings")
    return tuple(value)


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected int or str, got {_type_name(value)}")
    return parse_size(value, "")


def _frozen_mapping(value: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(value)


def _array(value: Any) -> Any:
    """A TOML array as a tuple (strict mode takes only tuples for tuple fields)."""
    return tuple(value) if isinstance(value, list) else value


Strings = Annotated[tuple[str, ...], BeforeValidator(_strings)]
Size = Annotated[int, PlainValidator(_size)]
Options = Annotated[dict[str, Any], AfterValidator(_frozen_mapping)]


class _Table(BaseModel):
    """One TOML table: unknown keys and coercion refused, the result immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _TextTable(_Table):
    ja: str
    en: str


def _text(value: Any) -> Text:
    if isinstance(value, Text):
        return value
    table = _TextTable.model_validate(value)
    return Text(ja=table.ja, en=table.en)


#: A ``{ ja = "…", en = "…" }`` table, kept as :class:`Text` (shared with the feedback).
TextTable = Annotated[Text, PlainValidator(_text)]


class _LimitsTable(_Table):
    """``[limits]``: every key optional; defaults in :class:`~grader.limits.Limits`."""

    cell_timeout: float | None = None
    budget_floor: float | None = None
    notebook_timeout: float | None = None
    cpu_seconds: float | None = None
    memory: Size | None = None
    max_processes: float | None = None
    file_size: Size | None = None
    scratch: Size | None = None
    cell_output: Size | None = None
    notebook_output: Size | None = None
    log: Size | None = None


#: Table key -> (:class:`Limits` field, conversion).
LIMIT_KEYS = {
    "cell_timeout": ("cell_timeout", float),
    "budget_floor": ("budget_floor", float),
    "notebook_timeout": ("notebook_timeout", float),
    "cpu_seconds": ("cpu_seconds", int),
    "memory": ("memory_bytes", int),
    "max_processes": ("max_processes", int),
    "file_size": ("file_size_bytes", int),
    "scratch": ("scratch_bytes", int),
    "cell_output": ("cell_output_bytes", int),
    "notebook_output": ("notebook_output_bytes", int),
    "log": ("log_bytes", int),
}


def _limits(value: Any) -> Limits:
    if isinstance(value, Limits):
        return value
    table = _LimitsTable.model_validate(value)
    values = {name: convert(getattr(table, key)) for key, (name, convert) in LIMIT_KEYS.items()
              if getattr(table, key) is not None}
    return Limits(**values)  # its own check: ValueError naming the limit


LimitsTable = Annotated[Limits, PlainValidator(_limits)]


# --- the spec's tables ---------------------------------------------------------------------


class CellLocator(_Table):
    """How to find an item's cell: by cell id (our template), else by content and position.

    Content matching: the ``nth`` code cell after the first markdown cell containing ``after``
    (and before one containing ``before``, when given) whose source contains every string of
    ``contains``."""

    id: str | None = None
    after: Strings = ()
    before: Strings = ()
    contains: Strings = ()
    nth: int = 1


class Extract(_Table):
    """What the student's kernel exports for an item (see ``grader/kernel/exporter.py``):
    ``tensor``, ``layer`` or ``model``, with the export's arguments (every other key of the
    table)."""

    export: str
    args: Options = Field(default_factory=dict, validate_default=True)
    #: Name of the variable the cell must assign anew; an unchanged one is an old value.
    fresh: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _gather_args(cls, data: Any) -> Any:
        if isinstance(data, dict):
            rest = {k: v for k, v in data.items() if k not in ("export", "fresh")}
            return {**{k: data[k] for k in ("export", "fresh") if k in data}, "args": rest}
        return data

    @field_validator("export")
    @classmethod
    def _known_export(cls, value: str) -> str:
        if value not in EXPORTS:
            raise ValueError(f"'{value}' is not one of {', '.join(EXPORTS)}")
        return value


class Compare(_Table):
    """Which comparator judges the item, and its options (tolerances...: every other key)."""

    kind: str
    options: Options = Field(default_factory=dict, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _gather_options(cls, data: Any) -> Any:
        if isinstance(data, dict):
            rest = {k: v for k, v in data.items() if k != "kind"}
            return {**({"kind": data["kind"]} if "kind" in data else {}), "options": rest}
        return data


class Item(_Table):
    id: str
    points: float
    title: TextTable
    cell: CellLocator
    extract: Extract
    compare: Compare
    hint: TextTable | None = None

    @field_validator("points")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative")
        return value


class AccuracyRule(_Table):
    """Full points at ``threshold`` or above, linear partial credit down to ``floor``."""

    threshold: float
    floor: float
    #: Regular expression whose first group is the accuracy the notebook printed.
    claimed_pattern: str
    #: A printed figure further than this from the measured one is flagged.
    claimed_tolerance: float = 0.02
    #: Where the threshold comes from (shown to instructors).
    derivation: str = ""
    #: Most values (variables and constants) a model may store; more is a lookup table. An
    #: exercise states its own, a small multiple of its reference model's count
    #: (docs/exercise-spec.md); the default only bounds one that does not.
    max_parameters: int = Field(default=2_000_000, gt=0)
    #: How many times the plain images' error an honest CNN may make on the moved copies
    #: (shifted by a pixel, light noise: :mod:`grader.data.perturb`) before they lower the
    #: counted figure: ``counted = min(plain, 1 - (1 - moved) / moved_error_ratio)``.
    #: Calibrated from the reference (docs/accuracy-threshold.md); 1 counts them as they are.
    moved_error_ratio: float = Field(default=1.0, ge=1.0, le=10.0)

    @field_validator("claimed_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _ordered(self) -> AccuracyRule:
        if not 0 <= self.floor < self.threshold <= 1:
            raise ValueError("need 0 <= floor < threshold <= 1")
        return self


class Runtime(_Table):
    #: Run TensorFlow 1.x code through tf.compat.v1.
    tf1: bool = False
    #: Data sets served offline to the notebook (names known to ``grader.data``).
    datasets: Strings = ()
    #: ``per_run``: each run gets the training images in an order of its own (a seed drawn per
    #: run), so honest runs of the same code and fixed seeds train different models and a
    #: shared model stands out (docs/model-fingerprints.md); ``file``: the file's order.
    data_order: Literal["per_run", "file"] = "per_run"
    #: Whether a run needs a GPU: ``required`` (only a worker with a free GPU takes it),
    #: ``preferred`` (any worker; a GPU when one is free) or ``none`` (never given one).
    gpu: Annotated[GpuNeed, Field(strict=False)] = GpuNeed.NONE


class _Head(_Table):
    """``[exercise]``."""

    id: str
    title: TextTable
    template: str = "template.ipynb"


class _SpecFile(_Table):
    """The whole ``exercise.toml``."""

    exercise: _Head
    runtime: Runtime = Field(default_factory=Runtime)
    limits: LimitsTable = Field(default_factory=Limits)
    accuracy: AccuracyRule | None = None
    #: ``[schedule]``: the course's default rules for the exercise, kept as written (a table of
    #: TOML values) for the service, which checks its keys and values (docs/course-rules.md).
    schedule: Options | None = None
    items: Annotated[tuple[Item, ...], BeforeValidator(_array)]

    @model_validator(mode="after")
    def _items_agree(self) -> _SpecFile:
        ids = [item.id for item in self.items]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"item id '{duplicates[0]}' is used twice")
        for item in self.items:
            structure = item.compare.options.get("structure")
            if structure is not None and structure not in ids:
                raise ValueError(f"item '{item.id}': compare.structure names no item "
                                 f"('{structure}')")
            _check_function_item(item)
            if item.compare.kind == "keras_structure" and item.extract.export != "keras_model":
                raise ValueError(f"item '{item.id}': compare.kind 'keras_structure' needs "
                                 "extract.export 'keras_model'")
        return self


def _check_function_item(item: Item) -> None:
    """A function item: ``extract = { export = "function", name = "..." }`` with
    ``compare.kind = "function"`` and its options (:mod:`grader.function_cases`)."""
    is_export = item.extract.export == "function"
    if is_export != (item.compare.kind == "function"):
        raise ValueError(f"item '{item.id}': extract.export = \"function\" goes with "
                         f"compare.kind = \"function\"")
    if not is_export:
        return
    name = item.extract.args.get("name")
    if not isinstance(name, str) or not name.isidentifier() or set(item.extract.args) != {
            "name"}:
        raise ValueError(f"item '{item.id}': extract needs name = \"<function name>\" only")
    from grader.function_cases import read_compare

    try:
        read_compare(item.compare.kind, dict(item.compare.options))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"item '{item.id}': compare.{_where(tuple(first['loc']))}: "
                         f"{first['msg']}") from None


class Exercise(BaseModel):
    """An exercise as the grader uses it: the spec's tables and where its files are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: TextTable
    directory: Path
    template: Path
    reference_dir: Path
    runtime: Runtime
    limits: LimitsTable
    items: tuple[Item, ...]
    accuracy: AccuracyRule | None = None
    #: The ``[schedule]`` table as written (read-only), or None: opaque to the grader, which
    #: only checks that it is a table; the service reads it as the exercise's default rules.
    schedule: Options | None = None

    @property
    def max_score(self) -> float:
        return sum(item.points for item in self.items)

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)


# --- reading -------------------------------------------------------------------------------

#: Pydantic's type errors, in the names the spec's authors know.
TYPE_NAMES = {
    "float_type": "int or float",
    "int_type": "int",
    "string_type": "str",
    "bool_type": "bool",
    "dict_type": "dict",
    "model_type": "dict",
    "list_type": "list",
    "tuple_type": "list",
}


def _where(loc: tuple[int | str, ...]) -> str:
    """``("items", 0, "points")`` -> ``items[0].points``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: Any) -> str:
    """One of pydantic's errors as one line naming the key (the caller adds the file)."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}' in [{_where(loc[:-1])}]"
    if kind == "missing":
        return (f"{_where(loc[:-1])}: " if len(loc) > 1 else "") + f"missing key '{loc[-1]}'"
    if kind in TYPE_NAMES:
        message = f"expected {TYPE_NAMES[kind]}, got {_type_name(error['input'])}"
    elif kind == "value_error":
        message = str(error["ctx"]["error"])
    else:
        message = error["msg"]
    return f"{_where(loc)}: {message}" if loc else message


def load_exercise(directory: Path, reference_root: Path | None = None) -> Exercise:
    """Read ``directory/exercise.toml``; ``reference_root`` holds ``<id>/`` reference folders
    (default: ``reference/`` beside the exercises folder)."""
    source = directory / "exercise.toml"
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from None
    try:
        spec = _SpecFile.model_validate(data)
    except ValidationError as exc:
        first, *more = [_describe(error) for error in exc.errors()]
        also = f" (also: {'; '.join(more)})" if more else ""
        raise SpecError(f"{source}: {first}{also}") from None
    head = spec.exercise
    if head.id != directory.name:
        raise SpecError(f"{source}: exercise.id: '{head.id}' differs from the folder name "
                        f"'{directory.name}'")
    reference_root = reference_root or directory.parent.parent / "reference"
    return Exercise(
        id=head.id,
        title=head.title,
        directory=directory,
        template=directory / head.template,
        reference_dir=reference_root / head.id,
        runtime=spec.runtime,
        limits=spec.limits,
        items=spec.items,
        accuracy=spec.accuracy,
        schedule=spec.schedule,
    )


def list_exercises(exercises_root: Path) -> list[str]:
    """Ids of the exercises under ``exercises_root`` (folders holding an exercise.toml)."""
    return sorted(p.parent.name for p in exercises_root.glob("*/exercise.toml"))
