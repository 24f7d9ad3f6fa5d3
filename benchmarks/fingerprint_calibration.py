"""``make calibrate-fingerprints``: how much independent trainings of the reference agree.

Grades ``reference/<id>/solution.ipynb`` through the real grader (:func:`grader.grade_notebook`,
the sandbox the configuration names, bubblewrap by default, as the CLI does) several times:
twice with the seeds the template fixes (``np.random.RandomState(1234)`` for the initial
weights, ``random_state=42`` for the shuffles: is training deterministic?), then with the seeds
shifted by 1, 2, ... (:func:`grader.reference_build.reseed`, as ``grader calibrate`` does). Each
run's fingerprint (:mod:`grader.fingerprints`) is kept in ``--cache`` (one JSON file a run, so an
interrupted calibration resumes and ``--analyse`` recomputes without training), and every pair's
error agreement, the accuracies and the summary go to ``--json`` after each run.

Two more kinds of run, because honest students mostly keep the template's seeds: the solution at
the template's seeds with one honest rewrite that rounds differently (``bias_add``: the
convolution's bias added by ``tf.nn.bias_add``, whose gradient sums in another order), and the
committed reference model (``reference/<id>/exports/accuracy.json``, trained by
``grader build-reference`` at the template's seeds, at another time and CPU allotment) measured
in the clean room; and a near-copy, what a flag is for: the template's model trained one epoch
longer (``epochs11``). Pairs are classed ``repeat`` (same seeds, same code), ``same_seed_variant``
(same seeds, other code or run), ``independent`` (other seeds), ``near_copy`` (the near-copy
and a model at the template's seeds) and ``other`` (the near-copy and another seed's model).

Each pair is also judged by :func:`grader.fingerprints.flag_reason` as it stands, with no common
model (``flag``) and with the first template-seed run as the common model
(``flag_beside_template``), and a threshold is suggested: the larger of the highest
independent pair + 0.15 and the same seeds trained elsewhere (the committed reference model)
+ 0.1, rounded up to 0.05.
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
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from grader.config import GraderConfig
from grader.data.evaluation import evaluation_labels
from grader.data.perturb import source_name
from grader.fingerprints import (
    AGREEMENT_FLAG,
    COMMON_MODEL,
    MIN_ACCURACY,
    MIN_UNION,
    ModelFingerprint,
    error_agreement,
    flag_reason,
)
from grader.pipeline import grade_notebook
from grader.reference import solution_path
from grader.reference_build import reseed
from grader.report import Outcome
from grader.sandbox import get_sandbox
from grader.spec import Exercise

#: Honest rewrites of the solution's code: (cell text, replacement).
VARIANTS = {
    "solution": None,
    "bias_add": ("u = tf.nn.conv2d(x, self.W, strides=self.strides, padding=self.padding) "
                 "+ self.b",
                 "u = tf.nn.bias_add(tf.nn.conv2d(x, self.W, strides=self.strides, "
                 "padding=self.padding), self.b)"),
    # not an honest variant but a near-copy: the template's model trained one epoch longer
    "epochs11": ("n_epochs = 10", "n_epochs = 11"),
}


#: Variants that copy the template's model rather than train their own.
NEAR_COPIES = frozenset({"epochs11"})


def plan_runs(seeds: int, same: int, variants: bool) -> list[tuple[str, int, str]]:
    """(run name, seed offset, variant): ``same`` runs at the template's seeds, ``seeds``
    others and (``variants``, after the sixth other seed) the honest rewrite at the template's
    seeds, the committed reference model, and a near-copy of the template's model (one epoch
    more)."""
    runs = [(f"template-{n + 1}", 0, "solution") for n in range(same)]
    extra = [("template-bias_add", 0, "bias_add"), ("reference-export", 0, "export"),
             ("template-epochs11", 0, "epochs11")] if variants else []
    seeded = [(f"seed+{offset}", offset, "solution") for offset in range(1, seeds + 1)]
    return runs + seeded[:6] + extra + seeded[6:]


def notebook_bytes(exercise: Exercise, offset: int, variant: str = "solution") -> bytes:
    """The solution with every literal seed shifted by ``offset`` (0: as the template has it)
    and the ``variant``'s rewrite."""
    nb = nbformat.read(solution_path(exercise), as_version=4)
    changed = copy.deepcopy(nb)
    rewrite = VARIANTS[variant]
    for cell in changed.cells:
        if cell.cell_type == "code":
            cell.source = reseed(cell.source, offset)
            if rewrite is not None and rewrite[0] in cell.source:
                cell.source = cell.source.replace(*rewrite)
    if rewrite is not None and nbformat.writes(changed) == nbformat.writes(nb):
        raise SystemExit(f"the variant {variant} changes nothing in the solution")
    return nbformat.writes(changed).encode()


def measure_reference(exercise: Exercise, config: GraderConfig, sandbox: Any, name: str,
                      workdir: Path) -> dict[str, Any]:
    """The committed reference model measured in the clean room like a student's (the moved
    copies left out: they are not part of a fingerprint)."""
    from grader.clean_room import ImageSets, measure_exports, plan_jobs
    from grader.comparators import Prepared
    from grader.data import evaluation_images
    from grader.reference import reference_exports
    from grader.scoring import Evidence, model_fingerprint

    started = time.monotonic()
    references = reference_exports(exercise)
    item = next(i for i in exercise.items if i.compare.kind == "accuracy")
    jobs = [j for j in plan_jobs(exercise, {item.id: references[item.id]}, references)
            if j.side == "student"]
    measured = measure_exports(jobs, sandbox, workdir, images=ImageSets(
        evaluation_images(config.data_dir), moved=None))
    labels = evaluation_labels(config.data_dir)
    found = model_fingerprint(exercise, Evidence(
        located={}, runner=None, sources={}, exports={}, measured=measured,
        prepared={item.id: Prepared(labels=labels)}))
    record: dict[str, Any] = {
        "run": name, "offset": 0, "variant": "export", "status": "measured", "score": 0.0,
        "measured_accuracy": None, "seconds": time.monotonic() - started, "fingerprint": None}
    if found is not None:
        record["fingerprint"] = {"weights": found.weights, "predictions": {
            k: base64.b64encode(v).decode() for k, v in found.predictions.items()}}
    return record


def grade_run(exercise: Exercise, config: GraderConfig, sandbox: Any, name: str,
              offset: int, variant: str = "solution") -> dict[str, Any]:
    """One graded run of the solution as a JSON-able record (the fingerprint's bytes in base64)."""
    started = time.monotonic()
    report = grade_notebook(notebook_bytes(exercise, offset, variant), exercise, config, sandbox)
    record: dict[str, Any] = {
        "run": name, "offset": offset, "variant": variant, "status": str(report.outcome),
        "score": report.score, "measured_accuracy": report.measured_accuracy,
        "seconds": time.monotonic() - started, "fingerprint": None}
    if report.outcome is not Outcome.GRADED or report.fingerprint is None:
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
    """Every pair's error agreement (and the share of all images predicted alike), classed by
    how the two were trained, with a summary per class. A run whose weights repeat an earlier
    run's is one model: its pairs are listed (``repeated``) but left out of the summaries (the
    ``repeat`` pair itself aside), so no model counts twice."""
    runs = [(r, fp) for r in records if (fp := fingerprint(r)) is not None]
    first: dict[str, str] = {}
    for r, fp in runs:
        first.setdefault(fp.weights, r["run"])
    # the template's model as a grader's own run of the solution gives it (the first run)
    template = [fp for r, fp in runs if r["offset"] == 0 and _variant(r) == "solution"][:1]
    pairs = []
    for (ra, a), (rb, b) in itertools.combinations(runs, 2):
        agreement = error_agreement(a, b, labels)
        alike = sum(int(np.sum(a.labels(n) == b.labels(n))) for n in labels)
        total = sum(len(t) for t in labels.values())
        near = {_variant(ra), _variant(rb)} & NEAR_COPIES
        kind = (("near_copy" if ra["offset"] == rb["offset"] else "other") if near else
                "independent" if ra["offset"] != rb["offset"] else
                "repeat" if _variant(ra) == _variant(rb) and "export" != _variant(ra) else
                "same_seed_variant")
        repeated = first[a.weights] != ra["run"] or first[b.weights] != rb["run"]
        pairs.append({"a": ra["run"], "b": rb["run"], "kind": kind,
                      "repeated": repeated and kind != "repeat",
                      "flag": flag_reason(a, b, labels),
                      "flag_beside_template": flag_reason(a, b, labels, template),
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

    summaries = {kind: summary([p for p in pairs if p["kind"] == kind and not p["repeated"]])
                 for kind in ("independent", "repeat", "same_seed_variant", "near_copy")}
    elsewhere = [p["agreement"] for p in pairs if p["kind"] == "same_seed_variant"
                 and "reference-export" in (p["a"], p["b"]) and p["agreement"] is not None]
    independent = summaries["independent"]
    suggested = None
    if independent is not None:
        raw = max(independent["max"] + 0.15, max(elsewhere, default=0.0) + 0.1)
        suggested = round(float(np.ceil(round(raw / 0.05, 6)) * 0.05), 2)
    return {
        "constants": {"AGREEMENT_FLAG": AGREEMENT_FLAG, "MIN_UNION": MIN_UNION,
                      "MIN_ACCURACY": MIN_ACCURACY, "COMMON_MODEL": COMMON_MODEL},
        "suggested_agreement_flag": suggested,
        "runs": [{"run": r["run"], "offset": r["offset"], "variant": _variant(r),
                  "status": r["status"],
                  "score": r["score"], "measured_accuracy": r["measured_accuracy"],
                  "seconds": round(r["seconds"], 1),
                  "weights": (r.get("fingerprint") or {}).get("weights"),
                  "accuracies": accuracies(fp, labels) if (fp := fingerprint(r)) else None,
                  "errors": (sum(int(np.sum(fp.labels(n) != t)) for n, t in labels.items())
                             if fp else None)}
                 for r in records],
        "pairs": pairs,
        **summaries,
    }


def _variant(record: dict[str, Any]) -> str:
    return str(record.get("variant", "solution"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/fingerprint_calibration.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--exercise", default="chap06_cnn")
    parser.add_argument("--seeds", type=int, default=20,
                        help="runs with the seeds shifted by 1..SEEDS (default %(default)s)")
    parser.add_argument("--same", type=int, default=2,
                        help="runs with the template's own seeds (default %(default)s)")
    parser.add_argument("--cache", type=Path, default=Path("var/fingerprint-calibration"),
                        help="one JSON file per run; runs found there are not graded again")
    parser.add_argument("--json", type=Path, default=Path("docs/data/fingerprint_calibration.json"))
    parser.add_argument("--no-variants", dest="variants", action="store_false",
                        help="leave out the bias_add rewrite and the committed reference model")
    parser.add_argument("--analyse", action="store_true",
                        help="grade nothing: recompute the pairs from the cached runs")
    args = parser.parse_args(argv)
    config = GraderConfig.from_env()
    exercise = config.exercise(args.exercise)
    labels = {n: t for n, t in evaluation_labels(config.data_dir).items() if source_name(n) == n}
    args.cache.mkdir(parents=True, exist_ok=True)
    sandbox = None if args.analyse else get_sandbox(config.sandbox)
    records = []
    for name, offset, variant in plan_runs(args.seeds, args.same, args.variants):
        path = args.cache / f"{name}.json"
        if path.is_file():
            records.append(json.loads(path.read_text()))
        elif sandbox is not None:
            print(f"{name}: {variant} (seed offset {offset})", file=sys.stderr, flush=True)
            if variant == "export":
                with tempfile.TemporaryDirectory() as workdir:
                    record = measure_reference(exercise, config, sandbox, name, Path(workdir))
            else:
                record = grade_run(exercise, config, sandbox, name, offset, variant)
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
        print(f"{pair['a']:>18} {pair['b']:>18}  {pair['kind']:17} "
              f"agreement {'-' if value is None else f'{value:.3f}'} "
              f"({pair['same']}/{pair['union']}), alike {pair['predicted_alike']:.4f}"
              f"{', IDENTICAL WEIGHTS' if pair['identical_weights'] else ''}"
              f"{', flagged: ' + pair['flag'] if pair['flag'] else ''}")
    for key in ("independent", "repeat", "same_seed_variant", "near_copy"):
        print(f"{key}: {result[key]}")
    print(f"suggested AGREEMENT_FLAG: max(highest independent + 0.15, the same seeds trained "
          f"elsewhere + 0.1), rounded up to 0.05 = {result['suggested_agreement_flag']} "
          f"(grader/fingerprints.py has {AGREEMENT_FLAG})")
    return 0


def write(path: Path, exercise: Exercise, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exercise": exercise.id, **result}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
