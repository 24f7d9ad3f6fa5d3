r"""Neutralising what cannot or must not run in the sandbox, with a note for the feedback.

Course notebooks start with ``!pip3 install tensorflow-gpu==1.8`` and end with
``%%writefile /root/userspace/...``: neither may break grading. Each rewrite is recorded as a
:class:`Neutralised` note so the student learns what the grader changed and why.

A cell is read one line at a time, and each pattern matches within one line: a pattern run
over the whole source under ``re.M`` with a leading ``^\s*`` let ``\s`` cross line ends, so
every blank line started a scan to the end of the cell (80,000 blank lines cost 97 s of host
CPU; a 4 MB cell, hours). Per line, the work is linear in the cell, and a line that does not
begin (after blanks) with ``!`` or ``%`` is passed over without a regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import nbformat

from grader.messages import bilingual
from grader.spec import Text

#: Matched against one line (no line end in it), so no ``\s`` can cross into the next.
PIP_LINE = re.compile(r"[!%]\s*(pip3?|conda|apt(-get)?)\b")
PYTHON_PIP = re.compile(r"!\s*python3?\s+-m\s+pip\b")
COLAB_MAGIC = re.compile(r"%tensorflow_version\b")
#: In the order notes are given (every pip line of a cell, then python -m pip, then Colab's).
NOT_RUN = (PIP_LINE, PYTHON_PIP, COLAB_MAGIC)
WRITEFILE = re.compile(r"^(\s*%%writefile(?:\s+-a)?\s+)(\S+)\s*$")
SKIPPED = "# [grader] skipped: "
#: A line that may be a magic or a shell escape: blanks (never a line end), then ``!`` or ``%``.
CANDIDATE = re.compile(r"^[^\S\n]*[!%]", re.M)


@dataclass(frozen=True)
class Neutralised:
    cell_index: int
    original: str
    message: Text


def sanitize_notebook(nb: nbformat.NotebookNode, check: Callable[[], None] | None = None
                      ) -> list[Neutralised]:
    """Rewrite cells in place; return what was changed. ``check`` is called before each code
    cell (a deadline's, :mod:`grader.preparation`)."""
    notes: list[Neutralised] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if check is not None:
            check()
        source, skipped = _skip_lines(cell.source)
        notes += [Neutralised(index, text, bilingual("sanitize.not_run", cell=index + 1,
                                                     line=text))
                  for texts in skipped for text in texts]
        lines = source.split("\n", 1)
        writefile = WRITEFILE.match(lines[0]) if lines else None
        if writefile and writefile.group(2).startswith(("/", "~")):
            target = writefile.group(2)
            local = target.rstrip("/").rsplit("/", 1)[-1] or "writefile.txt"
            lines[0] = writefile.group(1) + local
            source = "\n".join(lines)
            notes.append(
                Neutralised(
                    index,
                    lines[0],
                    bilingual("sanitize.writefile", cell=index + 1, target=target, local=local),
                )
            )
        cell.source = source
    return notes


def _skip_lines(source: str) -> tuple[str, list[list[str]]]:
    """``source`` with the lines that must not run commented out, and those lines (stripped),
    by pattern of :data:`NOT_RUN`. Only lines starting with ``!`` or ``%`` are looked at."""
    skipped: list[list[str]] = [[] for _ in NOT_RUN]
    pieces: list[str] = []
    done = 0
    for candidate in CANDIDATE.finditer(source):
        start = candidate.start()
        end = source.find("\n", start)
        end = len(source) if end < 0 else end
        text = source[start:end].strip()
        kind = next((k for k, pattern in enumerate(NOT_RUN) if pattern.match(text)), None)
        if kind is not None:
            skipped[kind].append(text)
            pieces += [source[done:start], SKIPPED, text]
            done = end
    if not pieces:
        return source, skipped
    pieces.append(source[done:])
    return "".join(pieces), skipped
