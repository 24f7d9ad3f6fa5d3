"""Exercise specs: ``exercises/<id>/exercise.toml`` read into frozen dataclasses.

Every table is read strictly: an unknown key is an error naming the file and the key, so a typo
in a spec fails loudly in CI instead of silently grading with a default. See
``docs/exercise-spec.md`` for the format.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

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


@dataclass(frozen=True)
class CellLocator:
    """How to find an item's cell: by cell id (our template), else by content and position.

    Content matching: the ``nth`` code cell after the first markdown cell containing ``after``
    (and before one containing ``before``, when given) whose source contains every string of
    ``contains``."""

    id: str | None = None
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    contains: tuple[str, ...] = ()
    nth: int = 1


@dataclass(frozen=True)
class Extract:
    """What the student's kernel exports for an item (see ``grader/kernel/exporter.py``):
    ``tensor``, ``layer`` or ``model``, with the export's arguments."""

    export: str
    args: Mapping[str, Any] = field(default_factory=dict)
    #: Name of the variable the cell must assign anew; an unchanged one is an old value.
    fresh: str | None = None


@dataclass(frozen=True)
class Compare:
    """Which comparator judges the item, and its options (tolerances...)."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    id: str
    points: float
    title: Text
    cell: CellLocator
    extract: Extract
    compare: Compare
    hint: Text | None = None


@dataclass(frozen=True)
class AccuracyRule:
    """Full points at ``threshold`` or above, linear partial credit down to ``floor``."""

    threshold: float
    floor: float
    #: Regular expression whose first group is the accuracy the notebook printed.
    claimed_pattern: str
    #: A printed figure further than this from the measured one is flagged.
    claimed_tolerance: float
    #: Where the threshold comes from (shown to instructors).
    derivation: str = ""
    #: Most values (variables and constants) a model may store; more is a lookup table.
    max_parameters: int = 2_000_000


@dataclass(frozen=True)
class Runtime:
    #: Run TensorFlow 1.x code through tf.compat.v1.
    tf1: bool = False
    #: Data sets served offline to the notebook (names known to ``grader.data``).
    datasets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exercise:
    id: str
    title: Text
    directory: Path
    template: Path
    reference_dir: Path
    runtime: Runtime
    limits: Limits
    items: tuple[Item, ...]
    accuracy: AccuracyRule | None = None

    @property
    def max_score(self) -> float:
        return sum(item.points for item in self.items)

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)


#: What the kernel can export (``grader/kernel/exporter.py``).
EXPORTS = ("tensor", "layer", "model")
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
         "KB": 1000, "MB": 1000**2, "GB": 1000**3}  # fmt: skip
LIMIT_KEYS: dict[str, tuple[str, type[float] | type[int] | Literal["size"]]] = {
    "cell_timeout": ("cell_timeout", float),
    "notebook_timeout": ("notebook_timeout", float),
    "cpu_seconds": ("cpu_seconds", int),
    "memory": ("memory_bytes", "size"),
    "max_processes": ("max_processes", int),
    "file_size": ("file_size_bytes", "size"),
    "scratch": ("scratch_bytes", "size"),
    "cell_output": ("cell_output_bytes", "size"),
    "notebook_output": ("notebook_output_bytes", "size"),
    "log": ("log_bytes", "size"),
}


class _Reader:
    """Strict access to one TOML table: every key must be consumed or known."""

    def __init__(self, table: Any, where: str, source: Path):
        if not isinstance(table, dict):
            raise SpecError(f"{source}: {where} must be a table")
        self.table = table
        self.where = where
        self.source = source
        self.used: set[str] = set()

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.source}: {self.where}.{key}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                raise SpecError(f"{self.source}: {self.where}: missing key '{key}'")
            return default
        value = self.table[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def sub(self, key: str, default: Any = ...) -> _Reader | None:
        value = self.get(key, dict, default)
        return None if value is None else _Reader(value, f"{self.where}.{key}", self.source)

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise SpecError(
                f"{self.source}: unknown key '{unknown[0]}' in [{self.where}]"
                + (f" (also: {', '.join(unknown[1:])})" if len(unknown) > 1 else "")
            )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _text(reader: _Reader, key: str, default: Any = ...) -> Text | None:
    sub = reader.sub(key, default)
    if sub is None:
        return None
    text = Text(ja=sub.get("ja", str), en=sub.get("en", str))
    sub.done()
    return text


def _strings(reader: _Reader, key: str) -> tuple[str, ...]:
    value = reader.get(key, (str, list), [])
    values = [value] if isinstance(value, str) else value
    if not all(isinstance(v, str) for v in values):
        raise reader.error(key, "expected a string or a list of strings")
    return tuple(values)


def parse_size(value: int | str, where: str) -> int:
    if isinstance(value, int):
        return value
    match = SIZE.match(value)
    if not match:
        raise SpecError(f"{where}: cannot read size {value!r} (use e.g. 512MiB, 6GiB)")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def _limits(reader: _Reader | None) -> Limits:
    if reader is None:
        return Limits()
    values: dict[str, Any] = {}
    for key, (name, kind) in LIMIT_KEYS.items():
        raw = reader.get(key, (int, float, str), None)
        if raw is None:
            continue
        if kind == "size":
            values[name] = parse_size(raw, f"{reader.source}: [limits].{key}")
        elif isinstance(raw, str):
            raise reader.error(key, "expected a number")
        else:
            values[name] = kind(raw)
    reader.done()
    try:
        return Limits(**values)
    except ValueError as exc:
        raise SpecError(f"{reader.source}: [limits]: {exc}") from None


def _item(reader: _Reader) -> Item:
    cell = reader.sub("cell")
    assert cell is not None
    locator = CellLocator(
        id=cell.get("id", str, None),
        after=_strings(cell, "after"),
        before=_strings(cell, "before"),
        contains=_strings(cell, "contains"),
        nth=cell.get("nth", int, 1),
    )
    cell.done()
    extract_reader = reader.sub("extract")
    assert extract_reader is not None
    export = extract_reader.get("export", str)
    if export not in EXPORTS:
        raise extract_reader.error("export", f"'{export}' is not one of {', '.join(EXPORTS)}")
    fresh = extract_reader.get("fresh", str, None)
    args = {k: v for k, v in extract_reader.table.items() if k not in ("export", "fresh")}
    extract_reader.used.update(args)
    extract_reader.done()
    compare_reader = reader.sub("compare")
    assert compare_reader is not None
    kind = compare_reader.get("kind", str)
    options = {k: v for k, v in compare_reader.table.items() if k != "kind"}
    item = Item(
        id=reader.get("id", str),
        points=float(reader.get("points", (int, float))),
        title=_text(reader, "title"),  # type: ignore[arg-type]
        cell=locator,
        extract=Extract(export=export, args=MappingProxyType(args), fresh=fresh),
        compare=Compare(kind=kind, options=MappingProxyType(options)),
        hint=_text(reader, "hint", None),
    )
    reader.done()
    if item.points < 0:
        raise reader.error("points", "must not be negative")
    return item


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
    root = _Reader(data, "", source)
    head = root.sub("exercise")
    assert head is not None
    exercise_id = head.get("id", str)
    if exercise_id != directory.name:
        raise head.error("id", f"'{exercise_id}' differs from the folder name '{directory.name}'")
    title = _text(head, "title")
    template = directory / head.get("template", str, "template.ipynb")
    head.done()

    runtime_reader = root.sub("runtime", {})
    assert runtime_reader is not None
    runtime = Runtime(
        tf1=runtime_reader.get("tf1", bool, False),
        datasets=_strings(runtime_reader, "datasets"),
    )
    runtime_reader.done()
    limits = _limits(root.sub("limits", None))

    accuracy = None
    acc = root.sub("accuracy", None)
    if acc is not None:
        accuracy = AccuracyRule(
            threshold=float(acc.get("threshold", (int, float))),
            floor=float(acc.get("floor", (int, float))),
            claimed_pattern=acc.get("claimed_pattern", str),
            claimed_tolerance=float(acc.get("claimed_tolerance", (int, float), 0.02)),
            derivation=acc.get("derivation", str, ""),
            max_parameters=acc.get("max_parameters", int, 2_000_000),
        )
        acc.done()
        if not 0 <= accuracy.floor < accuracy.threshold <= 1:
            raise SpecError(f"{source}: [accuracy]: need 0 <= floor < threshold <= 1")
        try:
            re.compile(accuracy.claimed_pattern)
        except re.error as exc:
            raise SpecError(f"{source}: [accuracy].claimed_pattern: {exc}") from None

    raw_items = root.get("items", list)
    items = tuple(
        _item(_Reader(raw, f"items[{i}]", source)) for i, raw in enumerate(raw_items)
    )
    root.done()
    ids = [item.id for item in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SpecError(f"{source}: item id '{duplicates[0]}' is used twice")
    for item in items:
        structure = item.compare.options.get("structure")
        if structure is not None and structure not in ids:
            raise SpecError(f"{source}: item '{item.id}': compare.structure names no item "
                            f"('{structure}')")
    reference_root = reference_root or directory.parent.parent / "reference"
    return Exercise(
        id=exercise_id,
        title=title,  # type: ignore[arg-type]
        directory=directory,
        template=template,
        reference_dir=reference_root / exercise_id,
        runtime=runtime,
        limits=limits,
        items=items,
        accuracy=accuracy,
    )


def list_exercises(exercises_root: Path) -> list[str]:
    """Ids of the exercises under ``exercises_root`` (folders holding an exercise.toml)."""
    return sorted(p.parent.name for p in exercises_root.glob("*/exercise.toml"))
