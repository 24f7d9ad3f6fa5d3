"""A function item's answer, taken from the notebook's source on the host.

The student's kernel is not asked for the function: it could hand back anything (a function
patched to return stored answers, a NumPy it patched). Instead the host reads the graded
cell's source and the code cells before it, and builds a small module of only:

- the function's ``def`` from the graded cell (the last binding of its name there);
- every name it uses (read with :mod:`symtable`: its globals, those of the functions nested in
  it, and those its decorators, defaults and annotations read), taken from the last top-level
  binding before the end of the graded cell when that binding is an ``import``, a
  ``from ... import``, another ``def`` (whose own names are taken the same way) or a simple
  constant (``EPS = 1e-12``: a value :func:`ast.literal_eval` accepts).

Nothing else of the notebook runs: a name bound by any other statement (``np.exp = ...`` is
no binding of a name at all; ``W = np.ones(3)``, a ``class``, a loop) makes the item fail
with the name and the reason, as does a name bound nowhere. Cells that are not plain Python
because of IPython's magics are read with their ``%`` and ``!`` lines blanked; a cell that
still does not parse is skipped (its names then are "bound nowhere").

Bounded, since the notebook is the student's: only cells of at most ``max_cell_bytes`` are
parsed, at most ``max_total_bytes`` in all, nesting deeper than ``max_depth`` is refused, the
module built is at most ``max_module_bytes``, and a :class:`~grader.deadline.Deadline` is
checked between cells.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
from dataclasses import dataclass

import nbformat

from grader.deadline import Deadline, DeadlinePassed
from grader.messages import N_, bilingual
from grader.spec import Text

KiB = 1024
#: A line IPython rewrites (a magic or a shell command), blanked before parsing an earlier cell.
MAGIC_LINE = re.compile(r"^[^\S\n]*[%!].*$", re.M)
BUILTINS = frozenset(dir(builtins))
#: The function's name is bound nowhere, bound only in an earlier cell, or last bound in the
#: graded cell by something other than a ``def``.
MISSING = N_("functions.missing")
MISSING_ELSEWHERE = N_("functions.missing_elsewhere")
MISSING_NOT_DEF = N_("functions.missing_not_def")


@dataclass(frozen=True)
class ExtractLimits:
    """How much of the notebook the host reads to build a function's module."""

    max_cell_bytes: int = 64 * KiB
    max_total_bytes: int = 1024 * KiB
    max_depth: int = 100
    max_module_bytes: int = 256 * KiB
    seconds: float = 5.0


DEFAULT_EXTRACT_LIMITS = ExtractLimits()


@dataclass(frozen=True)
class ExtractedFunction:
    """The module to run: imports, constants and definitions, in the notebook's order."""

    name: str
    source: str
    #: The names taken besides the function (for the report's details).
    taken: tuple[str, ...]


@dataclass(frozen=True)
class ExtractionFailure:
    """Why no module could be built: ``code`` (``missing``, ``syntax``, ``unbound``,
    ``not_run``, ``too_large``) and the feedback."""

    code: str
    text: Text


class _Refused(Exception):
    def __init__(self, code: str, text: Text):
        super().__init__(code)
        self.failure = ExtractionFailure(code, text)


@dataclass
class _Binding:
    """A top-level statement binding a name; ``kind``: import, def, constant or other."""

    kind: str
    node: ast.stmt
    position: tuple[int, int]
    cell: int


def extract_function(nb: nbformat.NotebookNode, cell_index: int, name: str,
                     limits: ExtractLimits = DEFAULT_EXTRACT_LIMITS) -> (
                         ExtractedFunction | ExtractionFailure):
    """The module for function ``name`` defined in cell ``cell_index`` of ``nb``."""
    deadline = Deadline(limits.seconds)
    try:
        bindings = _read_bindings(nb, cell_index, limits, deadline)
        return _build(bindings, cell_index, name, limits, deadline)
    except _Refused as refused:
        return refused.failure
    except DeadlinePassed as passed:
        return ExtractionFailure("too_large", bilingual(
            "functions.extract_too_slow", seconds=f"{passed.seconds:g}"))


def _parse(source: str, limits: ExtractLimits) -> ast.Module:
    tree = ast.parse(source)
    if _depth(tree) > limits.max_depth:
        raise ValueError(f"nested more than {limits.max_depth} levels deep")
    return tree


def _depth(tree: ast.AST) -> int:
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _read_bindings(nb: nbformat.NotebookNode, cell_index: int, limits: ExtractLimits,
                   deadline: Deadline) -> dict[str, _Binding]:
    """Each name's last top-level binding in the code cells up to ``cell_index``."""
    bindings: dict[str, _Binding] = {}
    total = 0
    for index, cell in enumerate(nb.cells[:cell_index + 1]):
        deadline.check()
        if cell.cell_type != "code":
            continue
        source = cell.source
        size = len(source.encode("utf-8", "surrogatepass"))
        graded = index == cell_index
        if graded and size > limits.max_cell_bytes:
            raise _Refused("too_large", bilingual("functions.cell_too_large",
                                                  size=f"{size:,}",
                                                  limit=f"{limits.max_cell_bytes:,}"))
        if size > limits.max_cell_bytes or total + size > limits.max_total_bytes:
            continue  # an earlier cell too large to read: its names are bound nowhere
        total += size
        try:
            tree = _parse(source, limits)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            if graded:
                raise _Refused("syntax", bilingual("functions.syntax_error",
                                                   error=_error_text(exc))) from None
            try:
                tree = _parse(MAGIC_LINE.sub("", source), limits)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
        for position, node in enumerate(tree.body):
            for bound, kind in _binds(node):
                bindings[bound] = _Binding(kind, node, (index, position), index)
    return bindings


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"{exc.msg} (line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"[:200]


def _binds(node: ast.stmt) -> list[tuple[str, str]]:
    """The names a top-level statement binds, each with the kind of binding."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        if any(alias.name == "*" for alias in node.names):
            return []
        return [((a.asname or a.name).split(".")[0], "import") for a in node.names]
    if isinstance(node, ast.FunctionDef):
        return [(node.name, "def")]
    if isinstance(node, ast.AsyncFunctionDef | ast.ClassDef):
        return [(node.name, "other")]
    if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if all(isinstance(t, ast.Name) for t in targets) and _is_literal(node.value):
            return [(t.id, "constant") for t in targets if isinstance(t, ast.Name)]
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store | ast.Del):
            names.append((sub.id, "other"))
        elif isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append((sub.name, "other"))
        elif isinstance(sub, ast.Import | ast.ImportFrom):
            names += [((a.asname or a.name).split(".")[0], "other") for a in sub.names]
        if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda) \
                and sub is not node:
            continue
    return names


def _is_literal(value: ast.expr) -> bool:
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _used_globals(node: ast.FunctionDef) -> set[str]:
    """The module-level names a ``def`` reads: at its definition (decorators, defaults,
    annotations) and in its body and the scopes nested in it."""
    table = symtable.symtable(ast.unparse(node), "<function>", "exec")
    used = {s.get_name() for s in table.get_symbols() if s.is_referenced()}
    stack = list(table.get_children())
    while stack:
        scope = stack.pop()
        used |= {s.get_name() for s in scope.get_symbols()
                 if s.is_global() and (s.is_referenced() or s.is_declared_global())}
        stack.extend(scope.get_children())
    return used - {node.name}


def _build(bindings: dict[str, _Binding], cell_index: int, name: str, limits: ExtractLimits,
           deadline: Deadline) -> ExtractedFunction:
    target = bindings.get(name)
    if target is None or target.cell != cell_index or target.kind != "def":
        key = (MISSING if target is None else
               MISSING_ELSEWHERE if target.cell != cell_index else MISSING_NOT_DEF)
        raise _Refused("missing", bilingual(key, name=name))
    taken: dict[str, _Binding] = {name: target}
    queue = [target]
    while queue:
        deadline.check()
        binding = queue.pop()
        assert isinstance(binding.node, ast.FunctionDef)
        try:
            used_names = _used_globals(binding.node)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise _Refused("syntax", bilingual("functions.syntax_error",
                                               error=_error_text(exc))) from None
        for used in sorted(used_names):
            if used in taken:
                continue
            found = bindings.get(used)
            if found is None:
                if used in BUILTINS:
                    continue
                raise _Refused("unbound", bilingual("functions.unbound", name=used,
                                                    function=binding.node.name))
            if found.kind == "other":
                raise _Refused("not_run", bilingual("functions.not_run", name=used,
                                                    function=binding.node.name,
                                                    cell=found.cell + 1))
            taken[used] = found
            if found.kind == "def":
                queue.append(found)
    source = _module_source(taken)
    size = len(source.encode("utf-8"))
    if size > limits.max_module_bytes:
        raise _Refused("too_large", bilingual("functions.module_too_large", size=f"{size:,}",
                                              limit=f"{limits.max_module_bytes:,}"))
    return ExtractedFunction(name, source, tuple(sorted(set(taken) - {name})))


def _module_source(taken: dict[str, _Binding]) -> str:
    """The statements taken, in the notebook's order; an import keeps only the names used."""
    by_position: dict[tuple[int, int], tuple[_Binding, set[str]]] = {}
    for bound, binding in taken.items():
        by_position.setdefault(binding.position, (binding, set()))[1].add(bound)
    lines = []
    for position in sorted(by_position):
        binding, names = by_position[position]
        node = binding.node
        if isinstance(node, ast.Import | ast.ImportFrom):
            aliases = [a for a in node.names if (a.asname or a.name).split(".")[0] in names]
            node = (ast.Import(names=aliases) if isinstance(node, ast.Import) else
                    ast.ImportFrom(module=node.module, names=aliases, level=node.level))
        elif isinstance(node, ast.Assign):
            kept: list[ast.expr] = [t for t in node.targets
                                    if isinstance(t, ast.Name) and t.id in names]
            node = ast.Assign(targets=kept, value=node.value, lineno=0)
        lines.append(ast.unparse(ast.fix_missing_locations(node)))
    return "\n\n".join(lines) + "\n"
