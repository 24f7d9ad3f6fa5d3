"""Facts about a graded cell read from its source on the host, where the student cannot lie.

The kernel reports whether a cell raised, and what a name held before and after it; a hostile
notebook can make it report anything. What the cell's *source* says is measured here instead:
a cell that does not even parse cannot have produced an answer (the blank template's
``#WRITE ME``), and a cell that never assigns the answer's name did not compute it (whatever
the kernel claims about an answer left over from an earlier cell).

Reading is bounded, since the cell is the student's: IPython's ``TransformerManager``
re-tokenises the whole cell once per magic or shell line it rewrites, so a cell padded with
``%time`` lines cost time proportional to magics x size (20 magics over 10,000 lines: 6 s; a
4 MiB cell: about an hour). So:

1. a cell beyond :class:`SourceLimits` (bytes, lines) is not parsed at all: its facts say why
   (``refused``) and scoring gives its item an error saying the cell is too large to check;
2. a cell that parses as plain Python (``ast.parse``, linear) is taken as it is: IPython's
   transformers change only what plain Python cannot hold (magics, ``!``, ``?``, a cell
   indented as a whole), except prompts, so a cell that starts with one (:data:`PROMPT`)
   skips this step;
3. only a cell that does not, and is small (``max_ipython_bytes``, ``max_escape_lines``),
   goes through ``TransformerManager``: at most 4 passes over 8 KiB, about 0.3 s. The lines
   it may rewrite are counted as its passes see them (:data:`TRANSFORMED_LINE`: every escape
   it knows, after its own line splitting and prompt stripping), before the first pass.

The limits are far above the course's cells: the largest graded cell of the reference and of
the seed notebook has 1,507 bytes, 39 lines and one magic.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from grader.messages import bilingual
from grader.spec import Text

if TYPE_CHECKING:
    from IPython.core.inputtransformer2 import TransformerManager

KiB = 1024
#: A line IPython may rewrite: one that starts with ``%``, ``!`` or ``?``, assigns the result of
#: one (``x = !ls``), or ends with ``?`` (help). An upper bound: ``"x=%d"`` in a string counts.
ESCAPE_LINE = re.compile(r"^[^\S\n]*[%!?]|=[^\S\n]*[%!]|\?[^\S\n]*$", re.M)
#: IPython strips prompts (``>>>``, ``...``, ``In [1]:``, ``...:``) from every line of a cell
#: whose first or second line (after blank ones) starts with one (its ``classic_prompt`` and
#: ``ipython_prompt``): such a cell may be plain Python that IPython runs differently
#: (``In [1]:  x = 1`` is an annotated assignment; stripped, an indentation error).
PROMPT = re.compile(r"(?:>>>|\.\.\.)(?: |$)|(?:(?:\[nav\]|\[ins\])? )?In \[\d+\]: |\s*\.{3,}:")
LEADING_BLANK_LINES = re.compile(r"(?:[^\S\n]*\n)*")
#: One line as IPython's token transformers see it (after its clean-up: prompts stripped, a
#: cell magic folded), which each pass may rewrite: one whose first token is an escape
#: (IPython's ``ESCAPE_SINGLES``: ``% ! ? , ; /``; ``/f x`` is ``f(x)``), an assignment from a
#: magic or shell command, or one ending in ``?`` (help), perhaps before a backslash and a
#: blank line. :data:`ESCAPE_LINE` read the cell's own lines for ``% ! ?`` only: 999 lines of
#: ``/f``, or ``>>> %pwd``, or ``/f`` separated by ``\x1c`` (a line end to IPython, not to a
#: pattern), cost IPython 500 passes over the cell (5 to 10 s each).
TRANSFORMED_LINE = re.compile(r"^[^\S\n]*[%!?,;/]|=[^\S\n]*[%!]|\?(?:[^\S\n]|\\\n)*$")


@dataclass(frozen=True)
class SourceLimits:
    """How much of a graded cell the host reads; beyond, the item is an error (too large to
    check). The course's largest graded cell: 1,507 bytes, 39 lines, one magic."""

    #: UTF-8 bytes of the cell's source.
    max_bytes: int = 64 * KiB
    #: Lines of the cell's source.
    max_lines: int = 1000
    #: A cell that is not plain Python goes through IPython's transformers, which pass over the
    #: whole cell once per magic or shell line: such a cell may hold at most this many UTF-8
    #: bytes (a pass over 8 KiB costs about 0.08 s)...
    max_ipython_bytes: int = 8 * KiB
    #: ... and this many lines that may be magics or shell commands (:data:`ESCAPE_LINE`).
    max_escape_lines: int = 4


DEFAULT_SOURCE_LIMITS = SourceLimits()


@dataclass(frozen=True)
class SourceFacts:
    #: The parser's message when the cell is not valid (IPython) Python, else ``None``.
    syntax_error: str | None
    #: Names bound at the cell's top level (assignments, class and function definitions,
    #: imports, for/with targets).
    bound: frozenset[str]
    #: Why the host did not read the cell (it is beyond :class:`SourceLimits`), else ``None``.
    refused: Text | None = None


def read_cell(source: str, limits: SourceLimits = DEFAULT_SOURCE_LIMITS) -> SourceFacts:
    """Parse ``source`` as IPython would run it (magics and ``!`` lines turned into calls),
    within ``limits``."""
    size = len(source.encode("utf-8", "surrogatepass"))
    lines = source.count("\n") + (not source.endswith("\n"))
    if size > limits.max_bytes or lines > limits.max_lines:
        return _refused(source, limits, size=size, lines=lines)
    prompts = _has_prompts(source)
    plain: str | None = None
    if not prompts:
        try:
            return SourceFacts(None, frozenset(_bound_names(ast.parse(source))))
        except SyntaxError as exc:  # not plain Python: perhaps IPython's
            plain = f"{exc.msg} (line {exc.lineno})"
        except (ValueError, RecursionError, MemoryError) as exc:
            plain = f"{type(exc).__name__}: {exc}"[:200]
    escapes = len(ESCAPE_LINE.findall(source))
    if plain is not None and escapes == 0 and size > limits.max_ipython_bytes:
        return SourceFacts(plain, frozenset())  # no magic to rewrite: Python's word stands
    if size > limits.max_ipython_bytes or escapes > limits.max_escape_lines:
        return _refused(source, limits, size=size, lines=lines, escapes=escapes)
    from IPython.core.inputtransformer2 import TransformerManager

    manager = TransformerManager()
    try:
        cleaned = _cleaned_lines(manager, source)
        rewritable = sum(1 for line in cleaned if TRANSFORMED_LINE.search(line))
        if rewritable > limits.max_escape_lines:
            return _refused(source, limits, size=size, lines=max(lines, len(cleaned)),
                            escapes=max(escapes, rewritable))
        python = "".join(manager.do_token_transforms(cleaned))
        tree = ast.parse(python)
    except SyntaxError as exc:
        return SourceFacts(f"{exc.msg} (line {exc.lineno})", frozenset())
    except Exception as exc:  # IPython's transformers on odd input
        return SourceFacts(f"{type(exc).__name__}: {exc}"[:200], frozenset())
    return SourceFacts(None, frozenset(_bound_names(tree)))


def _cleaned_lines(manager: TransformerManager, source: str) -> list[str]:
    """The cell's lines as IPython's ``transform_cell`` hands them to its token transformers:
    split at every line end ``str.splitlines`` knows, prompts stripped, a cell magic folded
    (each step one pass over the lines)."""
    cell = source if source.endswith("\n") else source + "\n"
    lines = cell.splitlines(keepends=True)
    steps = cast(list[Callable[[list[str]], list[str]]],
                 [*manager.cleanup_transforms, *manager.line_transforms])
    for step in steps:
        lines = step(lines)
    return lines


def _has_prompts(source: str) -> bool:
    """Whether IPython would strip prompts from ``source`` (:data:`PROMPT`)."""
    start = LEADING_BLANK_LINES.match(source)
    lines = source[start.end() if start else 0:].split("\n", 2)[:2]
    return any(PROMPT.match(line) for line in lines)


def _refused(source: str, limits: SourceLimits, *, size: int, lines: int,
             escapes: int | None = None) -> SourceFacts:
    if escapes is None:
        escapes = len(ESCAPE_LINE.findall(source))
    return SourceFacts(None, frozenset(), refused=bilingual(
        "sourcecheck.too_large", size=f"{size:,}", lines=f"{lines:,}", escapes=f"{escapes:,}",
        max_size=f"{limits.max_bytes:,}", max_lines=f"{limits.max_lines:,}",
        max_ipython_size=f"{limits.max_ipython_bytes:,}",
        max_escapes=limits.max_escape_lines))


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
