"""Rebuild the test fixture of a student's lecture 6 notebook from the course's seed text.

    python scripts/build_chap06_seed_copy.py [--seed PATH]

Writes ``tests/fixtures/chap06_seed_copy.ipynb``: a student's copy of the original course
notebook as it was handed in (nbformat 4.2, no cell ids, TF 1.8 code, ``!pip3 install``,
outputs), from the seed (../shared/seed/).

The exercise itself is no longer built here: its source is the annotated solution
``reference/chap06_cnn/source.ipynb`` (first made from the same seed by this script's earlier
version), from which ``grader assign reference/chap06_cnn/source.ipynb`` writes
``exercises/chap06_cnn/exercise.toml`` and ``template.ipynb`` and
``reference/chap06_cnn/solution.ipynb`` (docs/exercise-spec.md, "Authoring").
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEED = ROOT.parent / "shared" / "seed" / "000_e1b985e2b8da3bd9.txt"

CODE_START = re.compile(r"^In \[[^\]]*\]:\s*$")
HEADING = re.compile(r"^#{1,6} ")
OUTPUT_START = re.compile(r"^(Collecting |Downloading |EPOCH: |Writing )")


def parse_seed(text: str) -> list[dict]:
    """Split the exported text into cells: ``{"type", "source", "output"}``."""
    cells: list[dict] = []
    current: dict | None = None

    def close() -> None:
        if current is None:
            return
        lines = current["lines"]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        output: list[str] = []
        if current["type"] == "code":
            blanks = [i for i, line in enumerate(lines) if not line.strip()]
            if blanks and OUTPUT_START.match(lines[blanks[-1] + 1]):
                output = lines[blanks[-1] + 1 :]
                lines = lines[: blanks[-1]]
                while lines and not lines[-1].strip():
                    lines.pop()
        if lines:
            cells.append(
                {"type": current["type"], "source": "\n".join(lines), "output": "\n".join(output)}
            )

    for line in text.splitlines():
        if CODE_START.match(line):
            close()
            current = {"type": "code", "lines": []}
            continue
        in_code = current is not None and current["type"] == "code"
        starts_heading = HEADING.match(line) and (not in_code or line.startswith("##"))
        if starts_heading:
            close()
            current = {"type": "markdown", "lines": [line]}
            continue
        if current is None:
            current = {"type": "markdown", "lines": []}
        current["lines"].append(line)
    close()
    return cells


def seed_copy_cells(cells: list[dict]) -> list:
    out = []
    count = 0
    for cell in cells:
        if cell["type"] == "markdown":
            node = nbformat.v4.new_markdown_cell(cell["source"])
        else:
            count += 1
            node = nbformat.v4.new_code_cell(cell["source"], execution_count=count)
            if cell["output"]:
                node.outputs = [
                    nbformat.v4.new_output("stream", name="stdout", text=cell["output"] + "\n")
                ]
        node.pop("id", None)
        out.append(node)
    return out


KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def write(cells: list, path: Path, minor: int) -> None:
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNEL})
    nb.nbformat_minor = minor
    if minor >= 5:
        nbformat.validate(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    if minor >= 5:
        text = nbformat.writes(nb)
    else:  # nbformat would add cell ids back; an old notebook has none
        raw = json.loads(json.dumps(nb))
        for cell in raw["cells"]:
            cell.pop("id", None)
        text = json.dumps(raw, indent=1, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({len(cells)} cells)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--seed", type=Path, default=DEFAULT_SEED)
    args = parser.parse_args()
    cells = parse_seed(args.seed.read_text(encoding="utf-8"))
    write(seed_copy_cells(cells), ROOT / "tests/fixtures/chap06_seed_copy.ipynb", minor=2)


if __name__ == "__main__":
    main()
