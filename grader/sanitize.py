"""Neutralising what cannot or must not run in the sandbox, with a note for the feedback.

Course notebooks start with ``!pip3 install tensorflow-gpu==1.8`` and end with
``%%writefile /root/userspace/...``: neither may break grading. Each rewrite is recorded as a
:class:`Neutralised` note so the student learns what the grader changed and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import nbformat

from grader.messages import bilingual
from grader.spec import Text

PIP_LINE = re.compile(r"^\s*[!%]\s*(pip3?|conda|apt(-get)?)\b.*$", re.M)
PYTHON_PIP = re.compile(r"^\s*!\s*python3?\s+-m\s+pip\b.*$", re.M)
COLAB_MAGIC = re.compile(r"^\s*%tensorflow_version\b.*$", re.M)
WRITEFILE = re.compile(r"^(\s*%%writefile(?:\s+-a)?\s+)(\S+)\s*$")


@dataclass(frozen=True)
class Neutralised:
    cell_index: int
    original: str
    message: Text


def sanitize_notebook(nb: nbformat.NotebookNode) -> list[Neutralised]:
    """Rewrite cells in place; return what was changed."""
    notes: list[Neutralised] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = cell.source
        for pattern in (PIP_LINE, PYTHON_PIP, COLAB_MAGIC):
            for match in pattern.finditer(source):
                line = match.group(0).strip()
                notes.append(
                    Neutralised(
                        index,
                        line,
                        bilingual("sanitize.not_run", cell=index + 1, line=line),
                    )
                )
            source = pattern.sub(lambda m: "# [grader] skipped: " + m.group(0).strip(), source)
        lines = source.split("\n")
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
