"""``grader assign``: one annotated solution notebook -> an exercise's spec, template and solution.

The marker format (docs/exercise-spec.md, "Authoring"), close to nbgrader's and Otter's:

- a raw cell starting ``# ASSIGNMENT CONFIG``: the exercise's tables in TOML (``[exercise]``,
  ``[runtime]``, ``[limits]``, ``[accuracy]``, ``[schedule]``), copied with their comments into
  ``exercise.toml``, plus ``[assign]`` (placeholders; not copied);
- a raw cell starting ``# ITEM`` before each graded code cell: the item's keys in TOML (``id``,
  ``points``, ``title``, ``extract``, ``compare``, ``hint``, ``cell``); the graded cell's id is
  the item's ``cell.id``;
- in code and markdown cells, ``### BEGIN SOLUTION`` / ``### END SOLUTION`` (the block becomes
  the placeholder), ``### BEGIN SOLUTION NO PROMPT`` (the block just goes),
  ``### BEGIN PROMPT`` / ``### END PROMPT`` (commented lines, uncommented in the template only),
  a line ending in ``# SOLUTION`` (the right of its ``=`` or ``return`` becomes the inline
  placeholder) and a line ending in ``# PROMPT: text`` (reads ``text`` in the template);
- a first line ``### SOLUTION ONLY`` or ``### TEMPLATE ONLY``: the cell is kept in one of them.

Everything is read and checked before anything is written: a wrong annotation is an
:class:`AssignError` listing each problem with its cell number and marker, and no file changes.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from pydantic import ValidationError

from grader.markers import (
    BLOCK_PLACEHOLDER,
    INLINE_PLACEHOLDER,
    ONLY,
    Placeholders,
    Problem,
    transform_source,
)
from grader.spec import Item, SpecError, _describe, load_exercise

CONFIG_MARK = "# ASSIGNMENT CONFIG"
ITEM_MARK = "# ITEM"
TABLE_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*(\]\]?)\s*(#.*)?$")
KEY_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*(\.|=)")
#: ``[assign]``: settings of this command, not of the exercise.
ASSIGN_KEYS = {"placeholder", "block_placeholder"}


class AssignError(SpecError):
    """The annotated notebook cannot be made into an exercise; ``problems`` says where."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = str(path)
        self.problems = tuple(problems)
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


@dataclass(frozen=True)
class Assignment:
    """What ``grader assign`` writes: the exercise id and the three files' text."""

    exercise_id: str
    exercise_toml: str
    template: str
    solution: str
    template_name: str = "template.ipynb"
    items: tuple[str, ...] = field(default=())

    def write(self, out: Path) -> list[Path]:
        """Write under ``out/exercises/<id>/`` and ``out/reference/<id>/``; the paths."""
        return self.write_to(out / "exercises", out / "reference")

    def write_to(self, exercises_root: Path, reference_root: Path) -> list[Path]:
        exercise_dir = exercises_root / self.exercise_id
        reference_dir = reference_root / self.exercise_id
        files = [(exercise_dir / "exercise.toml", self.exercise_toml),
                 (exercise_dir / self.template_name, self.template),
                 (reference_dir / "solution.ipynb", self.solution)]
        for path, text in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return [path for path, _ in files]


# --- cells ----------------------------------------------------------------------------------


def _split_source(cell: dict[str, Any]) -> list[str]:
    return str(cell.get("source", "")).split("\n")


# --- TOML cells -----------------------------------------------------------------------------


def _body(source: str) -> str:
    """A raw cell's text after its marker line."""
    return source.split("\n", 1)[1] if "\n" in source else ""


def _toml(text: str, number: int, marker: str) -> tuple[dict[str, Any], list[Problem]]:
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        return {}, [Problem(number, marker, f"not valid TOML: {exc}")]


def _drop_table(text: str, name: str) -> str:
    """``text`` without the table ``[name]`` (from its header to the next header)."""
    out, skipping = [], False
    for line in text.split("\n"):
        header = TABLE_HEADER.match(line)
        if header:
            skipping = header.group(2).strip() == name or header.group(2).startswith(name + ".")
        if not skipping:
            out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _item_text(body: str, cell_id: str, data: dict[str, Any]) -> tuple[str, str]:
    """The item's TOML under ``[[items]]`` (``cell.id`` added when absent, sub-table headers
    moved under ``items``), and the leading comment lines that go above ``[[items]]``."""
    lines = body.strip("\n").split("\n")
    lead: list[str] = []
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("#")):
        lead.append(lines.pop(0) + "\n")
    out = []
    for line in lines:
        header = TABLE_HEADER.match(line)
        if header and not line.lstrip().startswith("#"):
            line = f"{header.group(1)}items.{header.group(2)}{header.group(3)}" + (
                f" {header.group(4)}" if header.group(4) else "")
        out.append(line)
    cell = data.get("cell")
    if not isinstance(cell, dict) or "id" not in cell:
        quoted = _toml_string(cell_id)
        done = False
        for i, line in enumerate(out):
            key = KEY_LINE.match(line)
            if cell is None and key is not None and key.group(1) == "id":
                out.insert(i + 1, f"cell = {{ id = {quoted} }}")
                done = True
            elif re.match(r"^cell\s*=\s*\{\s*\}", line):
                out[i] = re.sub(r"^cell\s*=\s*\{\s*\}", f"cell = {{ id = {quoted} }}", line)
                done = True
            elif re.match(r"^cell\s*=\s*\{", line):
                out[i] = re.sub(r"^cell\s*=\s*\{\s*", f"cell = {{ id = {quoted}, ", line)
                done = True
            elif re.match(r"^\[items\.cell\]", line):
                out.insert(i + 1, f"id = {quoted}")
                done = True
            elif re.match(r"^cell\.", line):
                out.insert(i, f"cell.id = {quoted}")
                done = True
            if done:
                break
    return "\n".join(out), "".join(lead)


# --- the notebook ---------------------------------------------------------------------------


def _first_line(cell: dict[str, Any]) -> str:
    return _split_source(cell)[0].strip()


def _new_notebook(nb: Any, cells: list[Any]) -> str:
    out = copy.deepcopy(nb)
    out.cells = cells
    out.nbformat, out.nbformat_minor = 4, max(5, int(nb.get("nbformat_minor", 5)))
    nbformat.validate(out)
    return nbformat.writes(out) + "\n"


def _clean(cell: Any, source: str) -> Any:
    out = copy.deepcopy(cell)
    out.source = source
    if out.cell_type == "code":
        out.outputs = []
        out.execution_count = None
    return out


def make_assignment(path: Path, source_name: str | None = None) -> Assignment:
    """Read the annotated notebook at ``path``; :class:`AssignError` when it is wrong.
    ``source_name`` (default: ``path``) is how the spec's first comment names it."""
    try:
        nb = nbformat.read(path, as_version=4)
    except OSError as exc:
        raise AssignError(path, [Problem(None, "", f"cannot read: {exc.strerror}")]) from None
    except Exception as exc:  # nbformat's reader raises several kinds on a bad file
        raise AssignError(path, [Problem(None, "", f"not a notebook: {exc}")]) from None
    problems: list[Problem] = []
    config: tuple[int, str, dict[str, Any]] | None = None
    for number, cell in enumerate(nb.cells, 1):
        if cell.cell_type == "raw" and _first_line(cell) == CONFIG_MARK:
            if config is not None:
                problems.append(Problem(number, CONFIG_MARK, f"a second one (the first is cell "
                                        f"{config[0]})"))
                continue
            data, found = _toml(_body(cell.source), number, CONFIG_MARK)
            problems += found
            config = (number, _body(cell.source), data)
    if config is None:
        raise AssignError(path, [Problem(None, CONFIG_MARK, "no raw cell starting with "
                                         f"'{CONFIG_MARK}' (the [exercise] table and others)")])
    config_number, config_text, config_data = config
    settings = config_data.get("assign", {})
    placeholders = Placeholders()
    if not isinstance(settings, dict) or set(settings) - ASSIGN_KEYS or not all(
            isinstance(v, str) for v in settings.values()):
        problems.append(Problem(config_number, "[assign]", "takes only the strings "
                                + ", ".join(sorted(ASSIGN_KEYS))))
    else:
        placeholders = Placeholders(settings.get("placeholder", INLINE_PLACEHOLDER),
                                     settings.get("block_placeholder", BLOCK_PLACEHOLDER))
    if "items" in config_data:
        problems.append(Problem(config_number, CONFIG_MARK, "items go in '# ITEM' raw cells, "
                                "one before each graded cell"))
    head = config_data.get("exercise")
    exercise_id = head.get("id") if isinstance(head, dict) else None
    if not isinstance(exercise_id, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*",
                                                            exercise_id):
        problems.append(Problem(config_number, "[exercise]", "needs id = \"<folder name>\" "
                                "(letters, digits, _ . -)"))
        exercise_id = "exercise"
    template_name = head.get("template", "template.ipynb") if isinstance(head, dict) else ""

    template_cells: list[Any] = []
    solution_cells: list[Any] = []
    items: list[tuple[int, str, str, str, str]] = []  # (cell, item id, lead, text, cell id)
    pending: tuple[int, str, dict[str, Any]] | None = None
    ids: dict[str, int] = {}
    cell_ids: set[str] = set()
    for number, cell in enumerate(nb.cells, 1):
        first = _first_line(cell)
        if cell.cell_type == "raw" and first == CONFIG_MARK:
            continue
        if cell.cell_type == "raw" and first == ITEM_MARK:
            if pending is not None:
                problems.append(Problem(pending[0], ITEM_MARK, "no code cell follows it"))
            data, found = _toml(_body(cell.source), number, ITEM_MARK)
            problems += found
            pending = (number, _body(cell.source), data) if not found else None
            continue
        only = ONLY.match(first)
        source = cell.source.split("\n", 1)[1] if only and "\n" in cell.source else (
            "" if only else cell.source)
        template, solution, found = transform_source(source, cell.cell_type, number,
                                                     placeholders)
        problems += found
        if "id" not in cell:
            cell.id = f"cell-{number}"
        if cell.id in cell_ids:
            problems.append(Problem(number, "", f"cell id '{cell.id}' is used twice"))
        cell_ids.add(cell.id)
        if pending is not None:
            item_number, body, data = pending
            pending = None
            if cell.cell_type != "code" or (only and only.group(1) == "TEMPLATE"):
                problems.append(Problem(item_number, ITEM_MARK, "the next cell must be a code "
                                        "cell kept in the solution"))
            else:
                item_id = _check_item(data, cell.id, item_number, ids, problems)
                text, lead = _item_text(body, cell.id, data)
                items.append((item_number, item_id, lead, text, cell.id))
        if not only or only.group(1) == "TEMPLATE":
            template_cells.append(_clean(cell, template))
        if not only or only.group(1) == "SOLUTION":
            solution_cells.append(_clean(cell, solution))
    if pending is not None:
        problems.append(Problem(pending[0], ITEM_MARK, "no code cell follows it"))
    if not items and not problems:
        problems.append(Problem(None, ITEM_MARK, "no graded cell: put a raw cell starting "
                                f"'{ITEM_MARK}' before each"))
    if problems:
        raise AssignError(path, sorted(problems, key=lambda p: p.cell or 0))

    spec = _spec_text(config_text, items, source_name or str(path))
    _check_spec(path, exercise_id, spec, items, config_number)
    return Assignment(exercise_id, spec, _new_notebook(nb, template_cells),
                      _new_notebook(nb, solution_cells), str(template_name),
                      tuple(i[1] for i in items))


def _check_item(data: dict[str, Any], cell_id: str, number: int, ids: dict[str, int],
                problems: list[Problem]) -> str:
    cell = data.get("cell")
    if isinstance(cell, dict) and "id" in cell and cell["id"] != cell_id:
        problems.append(Problem(number, ITEM_MARK, f"cell.id '{cell['id']}' is not the id of "
                                f"the next cell ('{cell_id}')"))
    probe = dict(data)
    probe["cell"] = {**(cell if isinstance(cell, dict) else {}), "id": cell_id}
    try:
        Item.model_validate(probe)
    except ValidationError as exc:
        for error in exc.errors():
            problems.append(Problem(number, ITEM_MARK, _describe(error)))
    item_id = data.get("id")
    if not isinstance(item_id, str):
        return ""
    if item_id in ids:
        problems.append(Problem(number, ITEM_MARK, f"item id '{item_id}' is used twice (also "
                                f"cell {ids[item_id]})"))
    ids.setdefault(item_id, number)
    return item_id


def _spec_text(config_text: str, items: list[tuple[int, str, str, str, str]], source: str) -> str:
    parts = [f"# Written by `grader assign {source}`: edit that notebook, not this file.\n"
             + _drop_table(config_text, "assign").strip("\n") + "\n"]
    for _, _, lead, text, _ in items:
        parts.append((lead.lstrip("\n").rstrip(" ") if lead.strip() else "") + "[[items]]\n"
                     + text.strip("\n") + "\n")
    return "\n".join(parts)


def _check_spec(path: Path, exercise_id: str, spec: str,
                items: list[tuple[int, str, str, str, str]], config_number: int) -> None:
    """The spec as the grader will read it; its first problem names the cell it came from."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / exercise_id
        folder.mkdir()
        (folder / "exercise.toml").write_text(spec, encoding="utf-8")
        try:
            exercise = load_exercise(folder, Path(tmp))
        except SpecError as exc:
            message = str(exc).split(": ", 1)[-1]
            where = re.match(r"items\[(\d+)\]", message)
            number = items[int(where.group(1))][0] if where and int(where.group(1)) < len(
                items) else config_number
            marker = ITEM_MARK if where else CONFIG_MARK
            raise AssignError(path, [Problem(number, marker, message)]) from None
    for (number, item_id, *_, cell_id), item in zip(items, exercise.items, strict=True):
        if (item.id, item.cell.id) != (item_id, cell_id):
            raise AssignError(path, [Problem(number, ITEM_MARK, "could not add the cell id to "
                                             f"'cell': write cell.id = \"{cell_id}\" yourself")])
