"""``make bench``: notebooks per hour on this host, with 1 and with 2 runs at once.

Grades a mix in the real sandboxes: ``--short`` short notebooks (the blank template and the
solution cut after the pooling items, alternately: a kernel, TensorFlow's import and a few
cells) and ``--full`` full reference runs (the CNN trained), first with one worker, then with
two (``--workers``), each run pinned to a CPU slot of its own
(:class:`grader.sandbox.cpus.CpuSlots`, as the service's workers do). Prints, per pass, the
notebooks per hour over the whole mix and every run's wall time; ``--unpinned`` adds a pass of
the largest worker count with every run on every CPU, to see what pinning saves. Results go to
``--json``.

The full runs are queued first (a long run started last would leave a worker idle at the end).
The figures depend on the machine and on what else runs on it: run it on a quiet host.
"""

from __future__ import annotations

import argparse
import copy
import json
import queue
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nbformat

from grader.config import GraderConfig
from grader.pipeline import grade_notebook
from grader.reference import solution_path
from grader.sandbox import get_sandbox
from grader.sandbox.cpus import CpuSlots, format_cpus, usable_cpus
from grader.spec import Exercise


@dataclass(frozen=True)
class Job:
    kind: str
    data: bytes


@dataclass
class Row:
    kind: str
    cpus: str
    wall: float
    outcome: str
    score: float


def cut_after(nb: nbformat.NotebookNode, cell_id: str) -> bytes:
    """The notebook without the code cells after ``cell_id`` (as tests' ``keep_until``)."""
    nb = copy.deepcopy(nb)
    cells, cut = [], False
    for cell in nb.cells:
        if not (cut and cell.cell_type == "code"):
            cells.append(cell)
        cut = cut or cell.get("id") == cell_id
    nb.cells = cells
    return nbformat.writes(nb).encode()


def make_jobs(exercise: Exercise, short: int, full: int, cut: str) -> list[Job]:
    solution = solution_path(exercise).read_bytes()
    shorts = [exercise.template.read_bytes(),
              cut_after(nbformat.reads(solution.decode(), as_version=4), cut)]
    jobs = [Job("full", solution) for _ in range(full)]
    jobs += [Job("template" if n % 2 == 0 else f"cut@{cut}", shorts[n % 2])
             for n in range(short)]
    return jobs


def run_pass(jobs: list[Job], workers: int, pinned: bool, exercise: Exercise,
             config: GraderConfig) -> tuple[float, list[Row]]:
    """Grade ``jobs`` with ``workers`` threads; the whole wall time and each run's row."""
    todo: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        todo.put(job)
    rows: list[Row] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="bench-cpus-") as lock_dir:
        slots = CpuSlots(workers, lock_dir=Path(lock_dir)) if pinned else None

        def work() -> None:
            while True:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                if slots is None:
                    row = grade(job, (), exercise, config)
                else:
                    with slots.lease() as lease:
                        row = grade(job, lease.cpus, exercise, config)
                with lock:
                    rows.append(row)
                print(f"  {row.kind:<12} cpus {row.cpus:<5} {row.wall:7.1f} s  "
                      f"{row.score:g} [{row.outcome}]", file=sys.stderr, flush=True)

        started = time.monotonic()
        threads = [threading.Thread(target=work) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - started, rows


def grade(job: Job, cpus: tuple[int, ...], exercise: Exercise, config: GraderConfig) -> Row:
    options = {"cpu_set": cpus} if cpus else {}
    started = time.monotonic()
    report = grade_notebook(job.data, exercise, config, get_sandbox(config.sandbox, **options))
    return Row(job.kind, format_cpus(cpus) if cpus else "all", time.monotonic() - started,
               str(report.outcome), report.score)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/throughput.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--exercise", default="chap06_cnn")
    parser.add_argument("--short", type=int, default=6, help="short notebooks in the mix")
    parser.add_argument("--full", type=int, default=1, help="full reference runs in the mix")
    parser.add_argument("--cut", default="pool3", help="the short solution's last code cell")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, in order")
    parser.add_argument("--unpinned", action="store_true",
                        help="also the largest worker count with every run on every CPU")
    parser.add_argument("--json", type=Path, default=Path("var/bench/throughput.json"))
    args = parser.parse_args(argv)
    config = GraderConfig.from_env()
    exercise = config.exercise(args.exercise)
    jobs = make_jobs(exercise, args.short, args.full, args.cut)
    passes = [(int(w), True) for w in args.workers.split(",")]
    if args.unpinned:
        passes.append((max(w for w, _ in passes), False))
    cpus = usable_cpus()
    print(f"{len(jobs)} notebooks ({args.full} full, {args.short} short) of {exercise.id}, "
          f"{config.sandbox} sandbox, CPUs {format_cpus(cpus)}", file=sys.stderr)
    results: list[dict[str, Any]] = []
    for workers, pinned in passes:
        label = f"{workers} worker(s), {'pinned' if pinned else 'unpinned'}"
        print(f"\n{label}:", file=sys.stderr)
        wall, rows = run_pass(jobs, workers, pinned, exercise, config)
        results.append({"workers": workers, "pinned": pinned, "wall": wall,
                        "per_hour": len(jobs) / wall * 3600, "runs": [asdict(r) for r in rows]})
    print(f"\nthroughput on {len(cpus)} CPU(s): {args.full} full + {args.short} short "
          f"notebooks of {exercise.id}\n")
    print(f"{'workers':<22}{'wall s':>8}{'per hour':>10}{'full s':>9}{'short s (median)':>18}")
    for result in results:
        runs = result["runs"]
        full = [r["wall"] for r in runs if r["kind"] == "full"]
        short = sorted(r["wall"] for r in runs if r["kind"] != "full")
        label = f"{result['workers']} {'pinned' if result['pinned'] else 'unpinned'}"
        print(f"{label:<22}{result['wall']:>8.1f}{result['per_hour']:>10.1f}"
              f"{(max(full) if full else 0):>9.1f}"
              f"{(short[len(short) // 2] if short else 0):>18.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"exercise": exercise.id, "cpus": list(cpus),
                                     "passes": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
