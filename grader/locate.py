"""Finding each graded item's cell: by cell id in notebooks made from our template, else by the
headings before it and the names in it (a student's copy of the original course notebook has no
ids of ours)."""

from __future__ import annotations

from dataclasses import dataclass

import nbformat

from grader.spec import CellLocator, Exercise


@dataclass(frozen=True)
class Located:
    index: int
    #: "id" when found by cell id, "content" when found by headings and names.
    how: str


def _heading_lines(source: str) -> list[str]:
    return [line for line in source.splitlines() if line.lstrip().startswith("#")]


def _matches_heading(cell: nbformat.NotebookNode, texts: tuple[str, ...]) -> bool:
    if cell.cell_type != "markdown":
        return False
    return any(text in line for line in _heading_lines(cell.source) for text in texts)


def locate_cell(nb: nbformat.NotebookNode, locator: CellLocator) -> Located | None:
    """The cell for ``locator``, or ``None`` when neither its id nor its content is found."""
    cells = nb.cells
    if locator.id is not None:
        for index, cell in enumerate(cells):
            if cell.get("id") == locator.id and cell.cell_type == "code":
                return Located(index, "id")
    start = 0
    if locator.after:
        anchors = [i for i, c in enumerate(cells) if _matches_heading(c, locator.after)]
        if not anchors:
            return None
        start = anchors[0] + 1
    seen = 0
    for index in range(start, len(cells)):
        cell = cells[index]
        if locator.before and _matches_heading(cell, locator.before):
            break
        if cell.cell_type != "code":
            continue
        if all(text in cell.source for text in locator.contains):
            seen += 1
            if seen == locator.nth:
                return Located(index, "content")
    return None


def locate_items(nb: nbformat.NotebookNode, exercise: Exercise) -> dict[str, Located | None]:
    """Item id -> located cell (or None) for every item of the exercise."""
    return {item.id: locate_cell(nb, item.cell) for item in exercise.items}
