"""Finding each graded item's cell: by cell id in notebooks made from our template, else by the
headings before it and the names in it (a student's copy of the original course notebook has no
ids of ours).

Linear in the notebook: each markdown cell's headings are read once, by a pattern that never
crosses a line end, whatever the number of locators."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nbformat

from grader.spec import CellLocator, Exercise


@dataclass(frozen=True)
class Located:
    index: int
    #: "id" when found by cell id, "content" when found by headings and names.
    how: str


#: A heading line: blanks (never a line end), then ``#``; matched per line, so linear.
HEADING = re.compile(r"^[^\S\n]*#.*", re.M)
#: Line ends other than ``\n`` that ``str.splitlines`` also splits on.
OTHER_LINE_ENDS = re.compile("[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def _heading_lines(source: str) -> list[str]:
    """The lines of ``source`` (as ``str.splitlines`` cuts them) that start, after blanks,
    with ``#``."""
    if OTHER_LINE_ENDS.search(source):
        source = OTHER_LINE_ENDS.sub("\n", source.replace("\r\n", "\n"))
    return HEADING.findall(source)


class Headings:
    """Each markdown cell's heading lines, read once (a cell's lines joined by ``\n``, or
    ``None`` without headings) however many locators ask: a notebook of heading-only cells
    cost every locator a pass over every line."""

    def __init__(self, nb: nbformat.NotebookNode, check: Callable[[], None] | None = None):
        self._cells = nb.cells
        self._joined: dict[int, str | None] = {}
        self._check = check

    def match(self, index: int, texts: tuple[str, ...]) -> bool:
        """Whether cell ``index`` is markdown with a heading line holding one of ``texts``."""
        if index not in self._joined:
            cell = self._cells[index]
            lines = _heading_lines(cell.source) if cell.cell_type == "markdown" else []
            self._joined[index] = "\n".join(lines) if lines else None
            if self._check is not None:
                self._check()
        joined = self._joined[index]
        # a text holding a line end is in no single line
        return joined is not None and any("\n" not in text and text in joined
                                          for text in texts)


def locate_cell(nb: nbformat.NotebookNode, locator: CellLocator,
                headings: Headings | None = None) -> Located | None:
    """The cell for ``locator``, or ``None`` when neither its id nor its content is found."""
    cells = nb.cells
    headings = headings or Headings(nb)
    if locator.id is not None:
        for index, cell in enumerate(cells):
            if cell.get("id") == locator.id and cell.cell_type == "code":
                return Located(index, "id")
    start = 0
    if locator.after:
        anchor = next((i for i in range(len(cells)) if headings.match(i, locator.after)), None)
        if anchor is None:
            return None
        start = anchor + 1
    seen = 0
    for index in range(start, len(cells)):
        cell = cells[index]
        if locator.before and headings.match(index, locator.before):
            break
        if cell.cell_type != "code":
            continue
        if all(text in cell.source for text in locator.contains):
            seen += 1
            if seen == locator.nth:
                return Located(index, "content")
    return None


def locate_items(nb: nbformat.NotebookNode, exercise: Exercise,
                 check: Callable[[], None] | None = None) -> dict[str, Located | None]:
    """Item id -> located cell (or None) for every item of the exercise; ``check`` is called
    after each cell's headings are read (a deadline's, :mod:`grader.preparation`)."""
    headings = Headings(nb, check)
    return {item.id: locate_cell(nb, item.cell, headings) for item in exercise.items}


def likely_exercise(nb: nbformat.NotebookNode, exercises: Sequence[Exercise]) -> Exercise | None:
    """The exercise whose graded cells ``nb`` holds the greatest share of (cells found by id
    count before cells found by content; then the greater number: two exercises may both name
    a cell ``model``), or ``None`` when no graded cell of any is found or two exercises tie: a
    guess for ``grader grade`` without ``--exercise``, never for the service (a student names
    the exercise)."""
    ranked: list[tuple[tuple[float, float, int], Exercise]] = []
    for exercise in exercises:
        located = [found for found in locate_items(nb, exercise).values() if found is not None]
        if located and exercise.items:
            by_id = sum(1 for found in located if found.how == "id")
            ranked.append(((by_id / len(exercise.items), len(located) / len(exercise.items),
                            len(located)), exercise))
    ranked.sort(key=lambda pair: pair[0], reverse=True)
    if not ranked or (len(ranked) > 1 and ranked[0][0] == ranked[1][0]):
        return None
    return ranked[0][1]

