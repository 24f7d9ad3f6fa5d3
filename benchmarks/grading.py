"""``make bench``: what grading costs, phase by phase, on the reference solution.

Grades ``reference/<id>/solution.ipynb`` in the real sandboxes (``--runs`` times) and prints,
side by side, the whole grading and its parts: the notebook's run (kernel and runner
sandboxes), the clean room's measurements, scoring. The clean room must cost at most
``--cleanroom-budget`` (10 %) of the whole grading; the exit status says whether it does.
Results are also written as JSON (``--json``) so later work can track them.

Speed goals live here, not in timed tests: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from grader.config import GraderConfig
from grader.pipeline import grade_notebook
from grader.reference import solution_path
from grader.sandbox import get_sandbox

PHASES = ("sandbox", "kernel_start", "bootstrap", "cells", "exports", "cleanroom", "scoring",
          "total")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/grading.py", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--exercise", default="chap06_cnn")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cleanroom-budget", type=float, default=0.10,
                        help="largest share of the whole grading the clean room may take")
    parser.add_argument("--json", type=Path, default=Path("var/bench/grading.json"))
    args = parser.parse_args(argv)
    config = GraderConfig.from_env()
    exercise = config.exercise(args.exercise)
    sandbox = get_sandbox(config.sandbox)
    data = solution_path(exercise).read_bytes()
    rows = []
    for run in range(args.runs):
        started = time.monotonic()
        report = grade_notebook(data, exercise, config, sandbox)
        wall = time.monotonic() - started
        timings = {key: report.timings.get(key, 0.0) for key in PHASES}
        rows.append({"run": run + 1, "score": report.score, "outcome": str(report.outcome),
                     "wall": wall, **timings})
        print(f"run {run + 1}: {report.score:g}/{report.max_score:g} [{report.outcome}] "
              f"in {wall:.1f} s", file=sys.stderr)
    print(f"\ngrading {exercise.id}'s reference solution, {args.runs} run(s), median seconds\n")
    print(f"{'phase':<14}{'seconds':>10}{'share':>9}")
    total = statistics.median(r["total"] for r in rows)
    for key in PHASES:
        value = statistics.median(r[key] for r in rows)
        print(f"{key:<14}{value:>10.2f}{value / total:>9.1%}")
    cleanroom = statistics.median(r["cleanroom"] for r in rows)
    share = cleanroom / total
    ok = share <= args.cleanroom_budget and all(r["score"] == exercise.max_score for r in rows)
    print(f"\nclean room {cleanroom:.2f} s of {total:.2f} s = {share:.1%} "
          f"(budget {args.cleanroom_budget:.0%}): {'ok' if ok else 'OVER BUDGET or not 100'}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"exercise": exercise.id, "runs": rows,
                                     "cleanroom_share": share, "ok": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
