"""``make bench``: what a pathological notebook costs the host, before and after the sandboxes
(goal: at most 10 s of preparation for any notebook the service accepts, issue 17).

Builds notebooks at the service's upload limits (``service/settings.py``: 20 MiB, 1,000
cells, 4 MiB a cell, 16 MiB of outputs, 200,000 JSON values) from the seed notebook: cells of
blank lines, cells of ``!pip`` lines, graded cells padded with magics, markdown made of
headings, outputs at their limit, the most cells. Each case runs in a child process (so that
its peak memory is its own and a case that would take hours is cut at ``--timeout``), which
reads the notebook with the service's bounds and then prepares it as
:func:`grader.pipeline.execute_notebook` does
(strip, sanitise, locate, read the graded sources, budgets, plan). Then the results side: the
runner's record, an export and the executed notebook at their size caps, read back as the
host does, and the claimed-accuracy pattern over the most output a cell keeps.

Prints, per case, the read and preparation seconds and the child's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.notebook import ReadLimits, read_notebook  # noqa: E402

MiB = 1024 * 1024
#: The goal of issue 17: the host's preparation of any accepted notebook.
PREPARE_GOAL = 10.0
SEED = ROOT / "tests" / "fixtures" / "chap06_seed_copy.ipynb"
#: The service's default upload bounds (service/settings.py).
UPLOAD = ReadLimits(max_bytes=20 * MiB, max_depth=64, max_values=200_000, max_cells=1000,
                    max_cell_bytes=4 * MiB, max_output_bytes=16 * MiB, validate_seconds=10.0)
#: JSON bytes of one cell's source: the upload's 4 MiB a cell, less room for the rest.
CELL_BYTES = 4 * MiB - 4096


def _seed() -> dict[str, Any]:
    return json.loads(SEED.read_text(encoding="utf-8"))


def _code(source: str, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "execution_count": None,
            "outputs": outputs or [], "source": source}


def _markdown(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def _graded_index(nb: dict[str, Any], text: str) -> int:
    return next(i for i, c in enumerate(nb["cells"])
                if c["cell_type"] == "code" and text in "".join(c["source"]))


def blank_lines() -> dict[str, Any]:
    """Four cells of nothing but newlines, 4 MiB each (the sanitiser's ``^\\s*`` case)."""
    nb = _seed()
    nb["cells"] += [_code("\n" * (CELL_BYTES // 2)) for _ in range(4)]
    return nb


def pip_lines() -> dict[str, Any]:
    """Four cells of ``!pip install x`` lines, 4 MiB each: every line rewritten, each a note
    (notes are capped)."""
    nb = _seed()
    nb["cells"] += [_code("!pip install x\n" * (CELL_BYTES // 16)) for _ in range(4)]
    return nb


def magic_padded() -> dict[str, Any]:
    """The graded training cell and a convolution cell, each padded to 4 MiB with magics."""
    nb = _seed()
    for text in ("n_epochs", "convoluted_image ="):
        index = _graded_index(nb, text)
        source = "".join(nb["cells"][index]["source"])
        pad = "%time\n" * ((CELL_BYTES - 2 * len(source)) // 7)
        nb["cells"][index]["source"] = pad + source
    return nb


def headings() -> dict[str, Any]:
    """Markdown cells of nothing but headings, to the upload's size (every locator reads them)."""
    nb = _seed()
    nb["cells"][1:1] = [_markdown("# h\n" * (CELL_BYTES // 5)) for _ in range(4)]
    return nb


def huge_outputs() -> dict[str, Any]:
    """Outputs at the upload's 16 MiB (stripped before grading)."""
    nb = _seed()
    text = "x" * (MiB - 4096)
    for cell in [c for c in nb["cells"] if c["cell_type"] == "code"][:15]:
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}]
    return nb


def many_cells() -> dict[str, Any]:
    """The seed's cells, then empty code and markdown cells up to the 1,000 allowed."""
    nb = _seed()
    while len(nb["cells"]) < 1000:
        nb["cells"].append(_code("x = 1\n") if len(nb["cells"]) % 2 else _markdown("# a\n"))
    return nb


def seed() -> dict[str, Any]:
    """The seed notebook itself (what an honest submission costs)."""
    return _seed()


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "seed (honest)": seed, "blank-line cells": blank_lines, "pip-line cells": pip_lines,
    "magic-padded cells": magic_padded,
    "heading cells": headings, "outputs at limit": huge_outputs, "1,000 cells": many_cells}


def _exercise() -> Any:
    from grader.config import GraderConfig

    return GraderConfig.from_env().exercise("chap06_cnn")


def _prepare(nb: nbformat.NotebookNode, exercise: Any) -> None:
    try:
        from grader.preparation import prepare_submission
    except ImportError:  # the code before issue 17: the steps one by one
        from grader.budgets import cell_budgets
        from grader.locate import locate_items
        from grader.notebook import strip_outputs
        from grader.notebook_run import build_plan
        from grader.sanitize import sanitize_notebook
        from grader.sourcecheck import read_cell

        nb = strip_outputs(nb)
        sanitize_notebook(nb)
        located = locate_items(nb, exercise)
        for where in located.values():
            if where is not None:
                read_cell(nb.cells[where.index].source)
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        graded = {k: w.index for k, w in located.items() if w is not None}
        build_plan(exercise, exercise.limits, located,
                   cell_budgets(code, graded, None, 600.0, 60.0))
        return
    prepare_submission(nb, exercise, exercise.limits, None)


def _run_case(name: str, queue: Any) -> None:
    nb = CASES[name]()
    data = json.dumps(nb, ensure_ascii=False).encode()
    exercise = _exercise()
    t0 = time.monotonic()
    try:
        parsed = read_notebook(data, UPLOAD)
    except Exception as exc:
        queue.put({"error": f"refused at upload: {exc}"})
        return
    t1 = time.monotonic()
    outcome = "prepared"
    try:
        _prepare(parsed, exercise)
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {str(exc)[:80]}"
    t2 = time.monotonic()
    queue.put({"bytes": len(data), "read": t1 - t0, "prepare": t2 - t1, "outcome": outcome,
               "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _results_case(name: str, queue: Any) -> None:
    """The results side, each file at the cap the host reads it with."""
    from grader.comparators.accuracy import claimed_accuracy
    from grader.exports import MAX_EXPORT_BYTES, ExportError, read_export
    from grader.notebook_run import MAX_EXECUTED_BYTES, _read_executed
    from grader.results import MAX_RESULT_BYTES, ResultError, read_runner_result

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.monotonic()
        if name == "runner result at cap":
            cells = [{"index": i, "status": "error", "ename": "E" * 200, "evalue": "v" * 3000}
                     for i in range(100_000)]
            body = json.dumps({"version": 2, "status": "completed",
                               "cells": cells[:MAX_RESULT_BYTES // 3300]})
            (folder / "r.json").write_text(body)
            t0 = time.monotonic()
            try:
                read_runner_result(folder / "r.json")
            except ResultError:
                pass
        elif name == "export at cap":
            variables = {f"v{i}": {"dtype": "<f4", "shape": [1], "data": "AAAAAA=="}
                         for i in range(10_000)}
            body = json.dumps({"kind": "graph", "output": "y", "variables": variables,
                               "graph_def": "A" * (MAX_EXPORT_BYTES - 1_000_000)})
            (folder / "e.json").write_text(body)
            t0 = time.monotonic()
            try:
                read_export(folder / "e.json")
            except ExportError:
                pass
        elif name == "executed notebook at cap":
            nb = nbformat.v4.new_notebook()
            # nbformat writes a source as a list of lines: about 8 bytes a blank line
            per = (MAX_EXECUTED_BYTES - 8 * MiB) // 2000 // 8
            nb.cells = [nbformat.v4.new_code_cell("\n" * per, outputs=[
                nbformat.v4.new_output("stream", name="stdout", text="accuracy: 0.5 " * 30)])
                for _ in range(2000)]
            nbformat.write(nb, folder / "x.ipynb")
            t0 = time.monotonic()
            executed = _read_executed(folder / "x.ipynb")
            if executed is None:
                raise SystemExit("the executed notebook was not read")
            else:
                nbformat.writes(executed)  # the report keeps it
        elif name == "claimed accuracy on 1 MiB":
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output(
                "stream", name="stdout", text="accuracy" + " " * MiB + ":" * 64 * 1024)])]
            t0 = time.monotonic()
            claimed_accuracy(nb, 0, r"(?i)accuracy\s*[:=]\s*([0-9]*\.[0-9]+)")
        queue.put({"bytes": 0, "read": time.monotonic() - t0, "prepare": 0.0,
                   "outcome": "read",
                   "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


RESULT_CASES = ("runner result at cap", "export at cap", "executed notebook at cap",
                "claimed accuracy on 1 MiB")


def measure(name: str, timeout: float, target: Callable[[str, Any], None]) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=target, args=(name, queue))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        return {"error": f"still running after {timeout:.0f} s (killed)"}
    return queue.get() if not queue.empty() else {"error": f"exit code {child.exitcode}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/host_work.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds a case may take before it is killed")
    parser.add_argument("--json", type=Path, default=Path("var/bench/host_work.json"))
    args = parser.parse_args(argv)
    figures: dict[str, dict[str, Any]] = {}
    print(f"host preparation at the upload limits (goal: {PREPARE_GOAL:.0f} s)\n")
    print(f"{'case':<28}{'MiB':>6}{'read s':>9}{'prepare s':>11}{'peak MiB':>10}  outcome")
    ok = True
    for name in CASES:
        got = figures[name] = measure(name, args.timeout, _run_case)
        if "error" in got:
            ok = ok and not got["error"].startswith("still running")
            print(f"{name:<28}{got['error']}")
            continue
        ok = ok and got["prepare"] <= PREPARE_GOAL
        print(f"{name:<28}{got['bytes'] / MiB:>6.1f}{got['read']:>9.2f}{got['prepare']:>11.2f}"
              f"{got['peak_mib']:>10.0f}  {got['outcome']}")
    print(f"\nresults read back at their caps (goal: {PREPARE_GOAL:.0f} s each)\n")
    for name in RESULT_CASES:
        got = figures[name] = measure(name, args.timeout, _results_case)
        if "error" in got:
            ok = False
            print(f"{name:<28}{got['error']}")
            continue
        ok = ok and got["read"] <= PREPARE_GOAL
        print(f"{name:<28}{got['read']:>9.2f} s{got['peak_mib']:>10.0f} MiB peak")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))
    print(f"\n{'goal met' if ok else 'GOAL MISSED'}; figures in {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
