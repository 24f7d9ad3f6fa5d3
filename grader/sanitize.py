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

#: Each pattern finds whole lines under ``re.M``, and no part of it can cross a line end
#: (``[^\S\n]`` is a blank that is not one), so a search is linear in the cell. Group 1 is the
#: line without its leading and trailing blanks.
_LINE = r"^[^\S\n]*({})[^\S\n]*"
_REST = r"(?:[^\n]*\S)?"
PIP_LINE = re.compile(_LINE.format(r"[!%][^\S\n]*(?:pip3?|conda|apt(?:-get)?)\b" + _REST), re.M)
PYTHON_PIP = re.compile(_LINE.format(
    r"![^\S\n]*python3?[^\S\n]+-m[^\S\n]+pip\b" + _REST), re.M)
COLAB_MAGIC = re.compile(_LINE.format(r"%tensorflow_version\b" + _REST), re.M)
#: In the order notes are given (every pip line of a cell, then python -m pip, then Colab's).
NOT_RUN = (PIP_LINE, PYTHON_PIP, COLAB_MAGIC)
WRITEFILE = re.compile(r"^(\s*%%writefile(?:\s+-a)?\s+)(\S+)\s*$")
SKIPPED = "# [grader] skipped: "
#: Notes kept per notebook; further lines are rewritten too, and counted in one last note.
MAX_NOTES = 20
#: Characters of the student's line (or path) a note quotes: a ``!pip`` line of 4 MiB was
#: quoted whole, in both languages, and twenty of them made 56 MB of feedback from a 24 MB
#: upload (stored with the report, sent with every view of it).
MAX_QUOTE = 200


def quote(text: str) -> str:
    """``text`` as a note quotes it: at most :data:`MAX_QUOTE` characters."""
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE - 1] + "…"


@dataclass(frozen=True)
class Neutralised:
    #: The cell's index; -1 for the note counting lines beyond :data:`MAX_NOTES`.
    cell_index: int
    original: str
    message: Text


def sanitize_notebook(nb: nbformat.NotebookNode, check: Callable[[], None] | None = None
                      ) -> list[Neutralised]:
    """Rewrite cells in place; return what was changed. ``check`` is called before each code
    cell (a deadline's, :mod:`grader.preparation`)."""
    notes: list[Neutralised] = []
    more = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if check is not None:
            check()
        source, texts, beyond = _skip_lines(cell.source, MAX_NOTES - len(notes))
        notes += [Neutralised(index, text, bilingual("sanitize.not_run", cell=index + 1,
                                                     line=text)) for text in map(quote, texts)]
        more += beyond
        lines = source.split("\n", 1)
        writefile = WRITEFILE.match(lines[0]) if lines else None
        if writefile and writefile.group(2).startswith(("/", "~")):
            target = writefile.group(2)
            local = target.rstrip("/").rsplit("/", 1)[-1] or "writefile.txt"
            lines[0] = writefile.group(1) + local
            source = "\n".join(lines)
            if len(notes) < MAX_NOTES:
                notes.append(Neutralised(index, quote(lines[0]), bilingual(
                    "sanitize.writefile", cell=index + 1, target=quote(target),
                    local=quote(local))))
            else:
                more += 1
        cell.source = source
    if more:
        notes.append(Neutralised(-1, "", bilingual("sanitize.more_not_run", count=more)))
    return notes


def _skip_lines(source: str, keep: int) -> tuple[str, list[str], int]:
    """``source`` with the lines that must not run commented out; the first ``keep`` of those
    lines (stripped) in the order of :data:`NOT_RUN`, and how many more there were. Each
    pattern is a C-speed substitution: no Python step per line."""
    texts: list[str] = []
    more = 0
    if "!" not in source and "%" not in source:
        return source, texts, 0
    for pattern in NOT_RUN:
        rewritten, count = pattern.subn(SKIPPED + r"\1", source)
        if not count:
            continue
        for match in pattern.finditer(source):  # only as far as the notes kept
            if len(texts) >= keep:
                break
            texts.append(match.group(1))
        source, more = rewritten, more + count
    return source, texts, more - len(texts)
