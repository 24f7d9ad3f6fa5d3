"""A notebook's code as one text: what is compared across students and shown side by side.

The code cells' sources are joined in notebook order, each after a header line ``# %% cell N``
(the percent format editors know), so a character range of the text maps back to a cell and
:mod:`grader.similarity.kgrams` can split the text into its cells again. IPython's escapes
(``%magic``, ``%%cell magic``, ``!shell``, ``x = !ls``, ``obj?``) are turned into comments: they
are not Python and say nothing about who wrote the code.

Bounded: at most :data:`MAX_CODE_CHARS` characters of code are kept (the cells after that are
left out, the one that crosses it cut), whatever the notebook holds; the upload limits of
:mod:`grader.notebook` bound the rest."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import nbformat

from grader.notebook import read_notebook

#: Characters of code kept of one notebook (200,000: the lecture's notebooks hold about 10,000;
#: the rest of a larger one is not compared).
MAX_CODE_CHARS = 200_000

#: The line that opens each cell in the joined text (``{index}``: the cell's index among all the
#: notebook's cells, markdown included, as the notebook shows it).
CELL_HEADER = "# %% cell {index}\n"
#: A cell header as :func:`split_cells` finds it (a student's own ``# %%`` line splits there too,
#: which changes nothing but where k-grams stop).
CELL_HEADER_LINE = re.compile(r"^# %%[^\n]*\n?", re.M)

# IPython's escapes, as IPython reads them at the start of a line (grader/sourcecheck.py has the
# same): a magic or a shell line, an assignment from one, a help request.
_ESCAPE_LINE = re.compile(r"^[^\S\n]*[%!?]|=[^\S\n]*[%!]|\?[^\S\n]*$")


@dataclass(frozen=True, slots=True)
class CellSpan:
    """Where one code cell's source lies in :attr:`CodeText.text` (``text[start:end]``)."""

    index: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class CodeText:
    """A notebook's code cells joined: ``text`` and each cell's place in it."""

    text: str
    cells: tuple[CellSpan, ...]
    #: True when :data:`MAX_CODE_CHARS` cut the code short.
    truncated: bool = False

    def cell_at(self, offset: int) -> int | None:
        """The index of the cell holding character ``offset`` (None on a header line)."""
        for cell in self.cells:
            if cell.start <= offset < cell.end:
                return cell.index
        return None


def notebook_code(data: bytes | nbformat.NotebookNode,
                  max_chars: int = MAX_CODE_CHARS) -> CodeText:
    """The code of a notebook (bytes as uploaded, or read), joined as :class:`CodeText`.

    Raises :class:`grader.notebook.NotebookError` when ``data`` is bytes that are no notebook."""
    nb = read_notebook(data) if isinstance(data, bytes | bytearray) else data
    cells = nb.get("cells") if isinstance(nb, dict) else None
    return join_cells(_code_sources(cells if isinstance(cells, list) else []), max_chars)


def join_cells(sources: Iterable[tuple[int, str]], max_chars: int = MAX_CODE_CHARS) -> CodeText:
    """Join ``(cell index, source)`` pairs into a :class:`CodeText` (escapes made comments)."""
    parts: list[str] = []
    spans: list[CellSpan] = []
    length = 0
    truncated = False
    for index, source in sources:
        body = neutralise_escapes(source).rstrip()
        if not body.strip():
            continue
        header = CELL_HEADER.format(index=index)
        room = max_chars - length - len(header) - 1  # and the newline after the cell
        if room <= 0:
            truncated = True
            break
        if len(body) > room:
            body, truncated = body[:room], True
        start = length + len(header)
        parts += [header, body, "\n"]
        spans.append(CellSpan(index, start, start + len(body)))
        length = start + len(body) + 1
        if truncated:
            break
    return CodeText("".join(parts), tuple(spans), truncated)


def neutralise_escapes(source: str) -> str:
    """``source`` with every IPython escape line made a comment (``# %%writefile ...``)."""
    if not any(ch in source for ch in "%!?"):
        return source
    lines = source.split("\n")
    return "\n".join("# " + line if _ESCAPE_LINE.search(line) else line for line in lines)


def split_cells(text: str) -> list[str]:
    """The cells of a joined text (a text without headers is one cell)."""
    return [part for part in CELL_HEADER_LINE.split(text) if part.strip()]


def cell_offsets(text: str) -> list[tuple[int, str]]:
    """The cells of a joined text with where each starts in it (a text without headers: one
    cell at 0)."""
    cells: list[tuple[int, str]] = []
    start = 0
    for header in CELL_HEADER_LINE.finditer(text):
        if text[start:header.start()].strip():
            cells.append((start, text[start:header.start()]))
        start = header.end()
    if text[start:].strip():
        cells.append((start, text[start:]))
    return cells


def _code_sources(cells: list[object]) -> Iterable[tuple[int, str]]:
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(part for part in source if isinstance(part, str))
        if isinstance(source, str):
            yield index, source
