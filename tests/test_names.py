"""One name per concept, read from the source with ``ast`` (nothing is imported):

- no module of ``grader/`` or ``service/`` binds a Python builtin's name at its top level (a
  class ``ReferenceError`` would hide the builtin from every reader of that module);
- no public class (or type alias: a ``CapWords`` name bound at the top level) is defined under
  one name in two modules, but those in :data:`SAME_NAME`, each with its reason: two classes with one name are either one concept written twice (one should
  import the other) or two concepts, one of which needs a name saying what it is.
"""

from __future__ import annotations

import ast
import builtins
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("grader", "service")
#: The API's answers (``service/views/schemas.py``) are named after the domain's values they
#: carry: the class name is the OpenAPI document's schema name, part of the published API.
_API = "the API's form of the domain's value; its name is the OpenAPI schema's, part of the API"
#: Class names defined in more than one module, by design: name -> (modules, reason).
SAME_NAME: dict[str, tuple[frozenset[str], str]] = {
    name: (frozenset({module, "service.views.schemas"}), _API)
    for name, module in (("Accepted", "service.domain.submissions"),
                         ("Exercise", "grader.spec"),
                         ("Gradebook", "service.domain.gradebook"),
                         ("Item", "grader.spec"),
                         ("Submission", "service.models"),
                         ("Withheld", "service.domain.release"))
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield module_name(path), ast.parse(path.read_text(encoding="utf-8"), str(path))


def top_level_names(tree: ast.Module) -> Iterator[tuple[str, ast.stmt]]:
    """The names a module's own statements bind at its top level (imports aside)."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        yield leaf.id, node


def test_no_module_shadows_a_builtin():
    shadowing = {name for name in dir(builtins) if not name.startswith("__")}
    offenders = [f"{module}:{node.lineno} {name}"
                 for module, tree in sources()
                 for name, node in top_level_names(tree) if name in shadowing]
    assert not offenders, f"builtins shadowed: {offenders}"


def is_type_name(name: str, node: ast.stmt) -> bool:
    """A public class, or a type alias (``GpuNeed = Literal[...]``, ``Log = Callable[...]``,
    ``A | B``): not a unit such as ``MiB = 1024 * 1024``."""
    if name.startswith("_") or not name[0].isupper():
        return False
    if isinstance(node, ast.ClassDef):
        return True
    value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
    return isinstance(value, ast.Subscript) or (isinstance(value, ast.BinOp)
                                                 and isinstance(value.op, ast.BitOr))


def type_names() -> dict[str, set[str]]:
    where: dict[str, set[str]] = defaultdict(set)
    for module, tree in sources():
        for name, node in top_level_names(tree):
            if is_type_name(name, node):
                where[name].add(module)
    return where


def test_a_public_class_name_is_defined_once():
    where = type_names()
    twice = {name: sorted(modules) for name, modules in where.items() if len(modules) > 1
             and (name not in SAME_NAME or modules != SAME_NAME[name][0])}
    assert not twice, f"one class name, several modules: {twice}"


def test_every_allowed_same_name_is_still_needed():
    """An exception nobody needs any more is taken out, so the list stays the truth."""
    where = type_names()
    stale = sorted(name for name, (modules, _) in SAME_NAME.items() if where[name] != modules)
    assert not stale, f"SAME_NAME lists what is no longer defined twice: {stale}"
