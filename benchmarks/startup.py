"""``make bench``: what one sandbox costs to start, per backend (goal: docker within 0.5 s of
bubblewrap per run).

Runs the same trivial request (``python -c pass`` with no work directory) ``--runs`` times in
each backend that works here and prints the median wall time of a whole run (make, start,
follow, remove) and docker's overhead over bubblewrap. A grading makes three sandboxes (the
kernel, the runner, the clean room), so its overhead is about three times the figure. Results
go to ``--json`` too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from grader.limits import Limits
from grader.sandbox import SandboxRequest, get_sandbox

#: The largest extra start-up cost per run of docker over bubblewrap (issue 10).
OVERHEAD_GOAL = 0.5


def time_runs(name: str, runs: int) -> list[float] | str:
    """Wall seconds of each run, or why the backend cannot run here."""
    sandbox = get_sandbox(name)
    reason = sandbox.check()
    if reason is not None:
        return reason
    request = SandboxRequest(argv=[sys.executable, "-c", "pass"], workdir=None,
                             limits=Limits(notebook_timeout=60.0))
    seconds = []
    for _ in range(runs):
        started = time.monotonic()
        result = sandbox.run(request)
        seconds.append(time.monotonic() - started)
        if result.exit_code != 0:
            return f"the trivial run failed: {result.sandbox_error or result.exit_code}"
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/startup.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, default=Path("var/bench/startup.json"))
    args = parser.parse_args(argv)
    medians: dict[str, float] = {}
    print(f"sandbox start-up, {args.runs} trivial runs each, median seconds\n")
    for name in ("bwrap", "docker"):
        timed = time_runs(name, args.runs)
        if isinstance(timed, str):
            print(f"{name:<8}unavailable: {timed}")
            continue
        medians[name] = statistics.median(timed)
        print(f"{name:<8}{medians[name]:>8.3f}  (min {min(timed):.3f}, max {max(timed):.3f})")
    ok = True
    if {"bwrap", "docker"} <= set(medians):
        overhead = medians["docker"] - medians["bwrap"]
        ok = overhead <= OVERHEAD_GOAL
        print(f"\ndocker over bwrap: {overhead:+.3f} s per run (goal under {OVERHEAD_GOAL} s): "
              + ("ok" if ok else "OVER"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": args.runs, "medians": medians, "ok": ok},
                                    indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
