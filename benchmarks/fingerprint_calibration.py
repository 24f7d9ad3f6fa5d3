"""``make calibrate-fingerprints``: how much independent trainings of the reference agree.

Grades ``reference/<id>/solution.ipynb`` through the real grader (:func:`grader.grade_notebook`,
the sandbox the configuration names, bubblewrap by default, as the CLI does) several times:
twice with the seeds the template fixes (``np.random.RandomState(1234)`` for the initial
weights, ``random_state=42`` for the shuffles: is training deterministic?), then with the seeds
shifted by 1, 2, ... (:func:`grader.reference_build.reseed`, as ``grader calibrate`` does). Each
run's fingerprint (:mod:`grader.fingerprints`) is kept in ``--cache`` (one JSON file a run, so an
interrupted calibration resumes and ``--analyse`` recomputes without training), and every pair's
error agreement, the accuracies and the summary go to ``--json`` after each run.

The figures and the threshold drawn from them: docs/model-fingerprints.md.
"""

from __future__ import annotations

import argparse
import base64
import copy
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from grader.config import GraderConfig
from grader.data.evaluation import evaluation_labels
from grader.data.perturb import source_name
from grader.fingerprints import ModelFingerprint, error_agreement
from grader.pipeline import grade_notebook
from grader.reference import solution_path
from grader.reference_build import reseed
from grader.report import RunStatus
from grader.sandbox import get_sandbox
from grader.spec import Exercise


def plan_runs(seeds: int, same: int) -> list[tuple[str, int]]:
    """(run name, seed offset): ``same`` runs at the template's seeds, then ``seeds`` others."""
    runs = [(f"template-{n + 1}", 0) for n in range(same)]
    runs += [(f"seed+{offset}", offset) for offset in range(1, seeds + 1)]
    return runs


def notebook_bytes(exercise: Exercise, offset: int) -> bytes:
    """The solution with every literal seed shifted by ``offset`` (0: as the template has it)."""
    nb = nbformat.read(solution_path(exercise), as_version=4)
    variant = copy.deepcopy(nb)
    for cell in variant.cells:
        if cell.cell_type == "code":
            cell.source = reseed(cell.source, offset)
    return nbformat.writes(variant).encode()


def grade_run(exercise: Exercise, config: GraderConfig, sandbox: Any, name: str,
              offset: int) -> dict[str, Any]:
    """One graded run of the solution as a JSON-able record (the fingerprint's bytes in base64)."""
    started = time.monotonic()
    report = grade_notebook(notebook_bytes(exercise, offset), exercise, config, sandbox)
    record: dict[str, Any] = {
        "run": name, "offset": offset, "status": str(report.status), "score": report.score,
        "measured_accuracy": report.measured_accuracy, "seconds": time.monotonic() - started,
        "fingerprint": None}
    if report.status is not RunStatus.GRADED or report.fingerprint is None:
        return record
    record["fingerprint"] = {
        "weights": report.fingerprint.weights,
        "predictions": {k: base64.b64encode(v).decode()
                        for k, v in report.fingerprint.predictions.items()}}
    return record


def fingerprint(record: dict[str, Any]) -> ModelFingerprint | None:
    found = record.get("fingerprint")
    if not found:
        return None
    return ModelFingerprint(found["weights"], {k: base64.b64decode(v)
                                               for k, v in found["predictions"].items()})


def accuracies(fp: ModelFingerprint, labels: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.mean(fp.labels(name) == truth)) for name, truth in labels.items()
            if name in fp.predictions}


def analyse(records: list[dict[str, Any]], labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every pair's error agreement (and the share of all images predicted alike), split into
    pairs trained with the same seeds and pairs with different ones, with their summaries."""
    runs = [(r, fp) for r in records if (fp := fingerprint(r)) is not None]
    pairs = []
    for (ra, a), (rb, b) in itertools.combinations(runs, 2):
        agreement = error_agreement(a, b, labels)
        alike = sum(int(np.sum(a.labels(n) == b.labels(n))) for n in labels)
        total = sum(len(t) for t in labels.values())
        pairs.append({"a": ra["run"], "b": rb["run"], "same_seed": ra["offset"] == rb["offset"],
                      "identical_weights": a.weights == b.weights, "same": agreement.same,
                      "union": agreement.union, "agreement": agreement.agreement,
                      "predicted_alike": alike / total})

    def summary(chosen: list[dict[str, Any]]) -> dict[str, Any] | None:
        values = [p["agreement"] for p in chosen if p["agreement"] is not None]
        if not values:
            return None
        return {"pairs": len(values), "min": min(values), "median": statistics.median(values),
                "max": max(values), "mean": statistics.fmean(values),
                "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
                "identical_weights": sum(p["identical_weights"] for p in chosen)}

    return {
        "runs": [{"run": r["run"], "offset": r["offset"], "status": r["status"],
                  "score": r["score"], "measured_accuracy": r["measured_accuracy"],
                  "seconds": round(r["seconds"], 1),
                  "weights": (r.get("fingerprint") or {}).get("weights"),
                  "accuracies": accuracies(fp, labels) if (fp := fingerprint(r)) else None,
                  "errors": (sum(int(np.sum(fp.labels(n) != t)) for n, t in labels.items())
                             if fp else None)}
                 for r in records],
        "pairs": pairs,
        "independent": summary([p for p in pairs if not p["same_seed"]]),
        "same_seed": summary([p for p in pairs if p["same_seed"]]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/fingerprint_calibration.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--exercise", default="chap06_cnn")
    parser.add_argument("--seeds", type=int, default=6,
                        help="runs with the seeds shifted by 1..SEEDS (default %(default)s)")
    parser.add_argument("--same", type=int, default=2,
                        help="runs with the template's own seeds (default %(default)s)")
    parser.add_argument("--cache", type=Path, default=Path("var/fingerprint-calibration"),
                        help="one JSON file per run; runs found there are not graded again")
    parser.add_argument("--json", type=Path, default=Path("docs/data/fingerprint_calibration.json"))
    parser.add_argument("--analyse", action="store_true",
                        help="grade nothing: recompute the pairs from the cached runs")
    args = parser.parse_args(argv)
    config = GraderConfig.from_env()
    exercise = config.exercise(args.exercise)
    labels = {n: t for n, t in evaluation_labels(config.data_dir).items() if source_name(n) == n}
    args.cache.mkdir(parents=True, exist_ok=True)
    sandbox = None if args.analyse else get_sandbox(config.sandbox)
    records = []
    for name, offset in plan_runs(args.seeds, args.same):
        path = args.cache / f"{name}.json"
        if path.is_file():
            records.append(json.loads(path.read_text()))
        elif sandbox is not None:
            print(f"{name}: grading the solution (seed offset {offset})", file=sys.stderr,
                  flush=True)
            record = grade_run(exercise, config, sandbox, name, offset)
            path.write_text(json.dumps(record))
            records.append(record)
        else:
            continue
        last = records[-1]
        print(f"{name}: {last['status']} {last['score']:g}, accuracy "
              f"{last['measured_accuracy']}, {last['seconds']:.0f} s, weights "
              f"{((last.get('fingerprint') or {}).get('weights') or '-')[:16]}",
              file=sys.stderr, flush=True)
        write(args.json, exercise, analyse(records, labels))
    result = analyse(records, labels)
    write(args.json, exercise, result)
    for pair in result["pairs"]:
        value = pair["agreement"]
        print(f"{pair['a']:>11} {pair['b']:>11}  {'same seed' if pair['same_seed'] else '':9} "
              f"agreement {'-' if value is None else f'{value:.3f}'} "
              f"({pair['same']}/{pair['union']}), alike {pair['predicted_alike']:.4f}"
              f"{', IDENTICAL WEIGHTS' if pair['identical_weights'] else ''}")
    for key in ("independent", "same_seed"):
        print(f"{key}: {result[key]}")
    return 0


def write(path: Path, exercise: Exercise, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exercise": exercise.id, **result}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
