"""Facts about a graded cell read from its source on the host, where the student cannot lie.

The kernel reports whether a cell raised, and what a name held before and after it; a hostile
notebook can make it report anything. What the cell's *source* says is measured here instead:
a cell that does not even parse cannot have produced an answer (the blank template's
``#WRITE ME``), and a cell that never assigns the answer's name did not compute it (whatever
the kernel claims about an answer left over from an earlier cell).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceFacts:
    #: The parser's message when the cell is not valid (IPython) Python, else ``None``.
    syntax_error: str | None
    #: Names bound at the cell's top level (assignments, class and function definitions,
    #: imports, for/with targets).
    bound: frozenset[str]


def read_cell(source: str) -> SourceFacts:
    """Parse ``source`` as IPython would run it (magics and ``!`` lines turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        python = TransformerManager().transform_cell(source)
        tree = ast.parse(python)
    except SyntaxError as exc:
        return SourceFacts(f"{exc.msg} (line {exc.lineno})", frozenset())
    except Exception as exc:  # IPython's transformers on odd input
        return SourceFacts(f"{type(exc).__name__}: {exc}"[:200], frozenset())
    return SourceFacts(None, frozenset(_bound_names(tree)))


def _bound_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()

    def targets(node: ast.AST) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)

    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                targets(target)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets(node.target)
        elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith | ast.If
                        | ast.While | ast.Try):
            names.update(_bound_names(ast.Module(body=_children(node), type_ignores=[])))
            if isinstance(node, ast.For | ast.AsyncFor):
                targets(node.target)
            if isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars)
    return names


def _children(node: ast.AST) -> list[ast.stmt]:
    body: list[ast.stmt] = []
    for field in ("body", "orelse", "finalbody"):
        body.extend(getattr(node, field, []) or [])
    for handler in getattr(node, "handlers", []) or []:
        body.extend(handler.body)
    return body
