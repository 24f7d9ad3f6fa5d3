"""One name per concept, read from the source with ``ast`` (nothing is imported): no module of
``grader/`` or ``service/`` binds a Python builtin's name at its top level (a class
``ReferenceError`` would hide the builtin from every reader of that module).
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("grader", "service")


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
