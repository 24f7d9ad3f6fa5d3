"""The solution markers of an annotated notebook's cells, and what they make of a cell's source.

One cell's source in, its template and solution sources out (:func:`transform_source`), and the
problems found, each a :class:`Problem` naming the cell and the marker. nbgrader's solution
blocks (``### BEGIN SOLUTION`` / ``### END SOLUTION``), Otter's ``NO PROMPT`` blocks and
``# SOLUTION`` lines, prompt blocks and ``# PROMPT:`` lines: docs/exercise-spec.md, "The marker
format". The notebook-level markers (config and item cells) are :mod:`grader.assign`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: nbgrader's placeholder for a solution block in a code cell, and in a markdown cell.
BLOCK_PLACEHOLDER = "# YOUR CODE HERE\nraise NotImplementedError()"
MARKDOWN_PLACEHOLDER = "YOUR ANSWER HERE"
#: Otter's placeholder for a ``# SOLUTION`` line's right-hand side.
INLINE_PLACEHOLDER = "..."

BEGIN = re.compile(r"^(\s*)#+\s*BEGIN SOLUTION(\s+NO PROMPT)?\s*$")
END = re.compile(r"^\s*#+\s*END SOLUTION\s*$")
BEGIN_PROMPT = re.compile(r"^\s*#+\s*BEGIN PROMPT\s*$")
END_PROMPT = re.compile(r"^\s*#+\s*END PROMPT\s*$")
LINE_SOLUTION = re.compile(r"^(?P<code>.*\S)\s+#\s*SOLUTION\s*$")
LINE_PROMPT = re.compile(r"^(?P<code>.*\S)\s+#\s*PROMPT:\s?(?P<prompt>.*)$")
ASSIGNED = re.compile(r"^(?P<lhs>\s*(?:return\s+|[\w.\[\]'\", ]+?\s*=(?!=)\s*))(?P<rhs>.*?)"
                      r"(?P<comma>,?)$")
ONLY = re.compile(r"^#+\s*(SOLUTION|TEMPLATE) ONLY\s*$")
ANY_MARKER = re.compile(r"#+\s*(BEGIN|END) (SOLUTION|PROMPT)\b")


@dataclass(frozen=True)
class Problem:
    """One wrong annotation: the cell (1-based, as in the notebook), the marker, what is
    wrong."""

    cell: int | None
    marker: str
    message: str

    def __str__(self) -> str:
        where = f"cell {self.cell}" if self.cell is not None else "notebook"
        marker = f" ({self.marker})" if self.marker else ""
        return f"{where}{marker}: {self.message}"


@dataclass(frozen=True)
class Placeholders:
    """The template's stand-ins for answers (``[assign]`` in the config cell)."""

    inline: str = INLINE_PLACEHOLDER
    block: str = BLOCK_PLACEHOLDER


def transform_source(source: str, cell_type: str, number: int,
                     placeholders: Placeholders) -> tuple[str, str, list[Problem]]:
    """``(template, solution)`` sources of one cell, and the problems found."""
    problems: list[Problem] = []
    template: list[str] = []
    solution: list[str] = []
    block: tuple[int, str, bool] | None = None  # (line, indent, prompt wanted)
    prompt = False
    for line in source.split("\n"):
        begin = BEGIN.match(line)
        if block is not None:
            if END.match(line):
                if block[2]:
                    text = placeholders.block if cell_type == "code" else MARKDOWN_PLACEHOLDER
                    template.extend(block[1] + part for part in text.split("\n"))
                block = None
            elif begin or BEGIN_PROMPT.match(line) or END_PROMPT.match(line):
                problems.append(Problem(number, line.strip(), "inside a solution block "
                                        f"opened on line {block[0]}"))
            else:
                solution.append(line)
            continue
        if prompt:
            if END_PROMPT.match(line):
                prompt = False
            elif ANY_MARKER.search(line):
                problems.append(Problem(number, line.strip(), "inside a prompt block"))
            else:
                stripped = line.lstrip()
                indent = line[: len(line) - len(stripped)]
                if stripped and not stripped.startswith("#"):
                    problems.append(Problem(number, "### BEGIN PROMPT", "a prompt line must be "
                                            f"commented out (# ...): {stripped!r}"))
                template.append(indent + re.sub(r"^# ?", "", stripped))
            continue
        if begin:
            block = (len(solution) + 1, begin.group(1), not begin.group(2))
            continue
        if BEGIN_PROMPT.match(line):
            prompt = True
            continue
        if END.match(line) or END_PROMPT.match(line):
            problems.append(Problem(number, line.strip(), "no block of that kind is open"))
            continue
        line_prompt = LINE_PROMPT.match(line) if cell_type == "code" else None
        if line_prompt:
            code = line_prompt.group("code")
            indent = code[: len(code) - len(code.lstrip())]
            solution.append(code)
            template.append(indent + line_prompt.group("prompt"))
            continue
        line_solution = LINE_SOLUTION.match(line) if cell_type == "code" else None
        if line_solution:
            code = line_solution.group("code")
            solution.append(code)
            assigned = ASSIGNED.match(code)
            if assigned:
                template.append(assigned.group("lhs") + placeholders.inline
                                + assigned.group("comma"))
            continue  # Otter's rule: any other solution line goes from the template
        template.append(line)
        solution.append(line)
    if block is not None:
        problems.append(Problem(number, "### BEGIN SOLUTION", "no ### END SOLUTION after it"))
    if prompt:
        problems.append(Problem(number, "### BEGIN PROMPT", "no ### END PROMPT after it"))
    return "\n".join(template), "\n".join(solution), problems
