"""``grader``: grade notebooks, dry-run references in CI, build references, fetch data.

Exit codes: 0 success (``grade``: a report was produced, whatever the score), 1 failure
(``dry-run`` found a reference that does not earn full marks, a missing reference...), 2 bad
input (not a notebook, unknown exercise, bad option), 3 the sandbox could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from grader.config import GraderConfig
from grader.limits import Limits
from grader.notebook_run import Progress, ProgressCallback
from grader.pipeline import grade_notebook
from grader.reference import require_reference
from grader.render import default_lang, render_text
from grader.report import RunStatus
from grader.sandbox.docker_image import Variant
from grader.spec import Exercise, SpecError, parse_size

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_SANDBOX = 0, 1, 2, 3
#: Backends, and what each needs (``grader doctor`` checks them all).
SANDBOXES = {
    "bwrap": "bubblewrap, cgroups and root (the default; no daemon)",
    "docker": "a Docker daemon and the runtime image (`make image`)",
    "unsafe": "nothing: no isolation, for development only",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grader",
        description="Grade Jupyter notebook exercises in a sandbox.",
        epilog="Environment: GRADER_EXERCISES, GRADER_REFERENCE, GRADER_DATA_DIR, "
        "GRADER_SANDBOX (bwrap | docker | unsafe).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def sandbox_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--sandbox", choices=list(SANDBOXES), default=None,
                       help="isolation backend (default: bwrap; 'docker' runs each sandbox in "
                       "a container of the runtime image (`grader image build`); 'unsafe' runs "
                       "the notebook directly on this machine, for development only)")

    grade = sub.add_parser("grade", help="grade one notebook and print the report",
                           description="Grade one notebook. Exit 0 once graded (any score), "
                           "2 if the file is not a valid notebook, 3 if the sandbox failed.")
    grade.add_argument("path", type=Path, help="the .ipynb file")
    grade.add_argument("--exercise", default="chap06_cnn",
                       help="exercise id (default: %(default)s)")
    grade.add_argument("--json", action="store_true", help="print the report as one JSON object")
    grade.add_argument("--lang", choices=["ja", "en"], default=None,
                       help="language of the text report (default: from the locale)")
    grade.add_argument("--executed", type=Path, metavar="OUT.ipynb",
                       help="also save the executed notebook there")
    grade.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                       help="override the exercise's per-cell time limit")
    grade.add_argument("--notebook-timeout", type=float, metavar="SECONDS",
                       help="override the exercise's whole-notebook time limit")
    grade.add_argument("--memory", metavar="SIZE", help="override the memory limit (e.g. 2GiB)")
    grade.add_argument("--quiet", action="store_true", help="no progress on stderr")
    sandbox_options(grade)

    dry = sub.add_parser("dry-run", help="check that references earn full marks, templates none",
                         description="Grade each exercise's reference solution (must earn full "
                         "marks) and blank template (must earn no points). Exit 1 otherwise.")
    dry.add_argument("exercises", nargs="*", metavar="EXERCISE", help="default: all")
    dry.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    sandbox_options(dry)

    build = sub.add_parser("build-reference", help="run the solution, keep its exports",
                           description="Run reference/<id>/solution.ipynb in the sandbox, keep "
                           "what it exports as reference/<id>/artefacts/ (what every "
                           "submission is measured against, in the clean room) and write "
                           "reference/<id>/expected.json (what was measured of them). The "
                           "solution must earn full marks against itself.")
    build.add_argument("exercises", nargs="*", metavar="EXERCISE", help="default: all")
    sandbox_options(build)

    calibrate = sub.add_parser("calibrate", help="spread of the solution's accuracy over seeds",
                               description="Grade the solution RUNS times with shifted seeds, "
                               "print each run's score, its accuracy on each image set (test, "
                               "held-out, and their moved copies) and the counted figure, then "
                               "suggest an accuracy threshold and a moved_error_ratio "
                               "(docs/accuracy-threshold.md).")
    calibrate.add_argument("exercise")
    calibrate.add_argument("--runs", type=int, default=5)
    sandbox_options(calibrate)

    data = sub.add_parser("data", help="offline data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    data_sub.add_parser("fetch", help="fetch and verify MNIST, then hold out part of its "
                        "training set from the sandbox (docs/data.md)")
    data_sub.add_parser("verify", help="verify MNIST and its held-out split by checksum")

    image = sub.add_parser("image", help="the docker backend's runtime image",
                           description="Build the runtime image of the docker backend "
                           "(docker/Dockerfile), tagged with a hash of what goes in, or say "
                           "whether it is present.")
    image_sub = image.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    for action, text in (("build", "build and tag the image unless it is present"),
                         ("status", "print the image's tag; exit 1 when it is missing")):
        p = image_sub.add_parser(action, help=text)
        p.add_argument("--variant", choices=[v.value for v in Variant], default="cpu",
                       help="cpu (no GPU: small) or gpu (tensorflow[and-cuda])")
        if action == "build":
            p.add_argument("--base", default="auto",
                           help="base image: auto (python:3.11-slim-bookworm if it can be "
                           "had, else local), local (Debian made here with debootstrap) or "
                           "an image name")
            p.add_argument("--force", action="store_true", help="build even when present")

    sub.add_parser("exercises", help="list the exercises")
    doctor = sub.add_parser("doctor", help="check that this machine can grade")
    sandbox_options(doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = GraderConfig.from_env()
    if getattr(args, "sandbox", None):
        config = GraderConfig(config.exercises_root, config.reference_root, config.data_dir,
                              args.sandbox)
    handlers = {
        "grade": cmd_grade, "dry-run": cmd_dry_run, "build-reference": cmd_build_reference,
        "calibrate": cmd_calibrate, "data": cmd_data, "exercises": cmd_exercises,
        "doctor": cmd_doctor, "image": cmd_image,
    }
    try:
        return handlers[args.command](args, config)
    except SpecError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def _exercise(config: GraderConfig, exercise_id: str) -> Exercise:
    return config.exercise(exercise_id)


def _sandbox(config: GraderConfig):
    from grader.sandbox import get_sandbox

    return get_sandbox(config.sandbox)


def progress_printer(label: str, quiet: bool = False) -> ProgressCallback:
    """A progress callback writing one line per cell to stderr."""

    def show(event: Progress) -> None:
        if quiet:
            return
        if (event.kind == "cell" and event.count and event.position is not None
                and event.cell_index is not None):
            print(f"  {label}: cell {event.position + 1}/{event.count} "
                  f"(notebook cell {event.cell_index + 1}), {event.elapsed:.0f}s",
                  file=sys.stderr, flush=True)
        elif event.kind == "output" and event.text:
            print(f"  {label}: {event.elapsed:.0f}s | {event.text}", file=sys.stderr, flush=True)
        elif event.kind == "kernel_ready":
            print(f"  {label}: kernel ready, {event.elapsed:.1f}s", file=sys.stderr, flush=True)

    return show


def cmd_grade(args: argparse.Namespace, config: GraderConfig) -> int:
    exercise = _exercise(config, args.exercise)
    try:
        data = args.path.read_bytes()
    except OSError as exc:
        print(f"grader: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    limits = _limits(exercise.limits, args)
    try:
        require_reference(exercise)
    except FileNotFoundError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_FAIL
    report = grade_notebook(data, exercise, config, _sandbox(config), limits=limits,
                            on_progress=progress_printer(args.path.name, args.quiet))
    if report.status is RunStatus.INVALID_NOTEBOOK:
        reason = report.reason.en if report.reason else "not a notebook"
        print(f"grader: {args.path}: {reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.executed and report.executed_notebook:
        args.executed.write_text(report.executed_notebook, encoding="utf-8")
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    else:
        print(render_text(report, args.lang or default_lang()))
    return EXIT_SANDBOX if report.status is RunStatus.SANDBOX_ERROR else EXIT_OK


def _limits(base: Limits, args: argparse.Namespace) -> Limits:
    changes: dict[str, float | int] = {}
    if args.cell_timeout:
        changes["cell_timeout"] = args.cell_timeout
    if args.notebook_timeout:
        changes["notebook_timeout"] = args.notebook_timeout
    if args.memory:
        changes["memory_bytes"] = parse_size(args.memory, "--memory")
    return base.replace(**changes) if changes else base


def _has_reference(exercise: Exercise) -> bool:
    try:
        require_reference(exercise)
    except FileNotFoundError:
        return False
    return True


def _exercise_ids(config: GraderConfig, names: list[str]) -> list[str]:
    return names or config.exercise_ids()


def cmd_dry_run(args: argparse.Namespace, config: GraderConfig) -> int:
    from grader.dryrun import dry_run_exercise

    sandbox = _sandbox(config)
    results = []
    ok = True
    for exercise_id in _exercise_ids(config, args.exercises):
        exercise = _exercise(config, exercise_id)
        for check in dry_run_exercise(exercise, config, sandbox, log=_stderr,
                                      progress=progress_printer):
            results.append(check.to_dict())
            ok &= check.passed
    if args.json:
        print(json.dumps({"passed": ok, "checks": results}, indent=1, ensure_ascii=False))
    print(("dry-run passed" if ok else "dry-run FAILED") + f" ({len(results)} checks)",
          file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAIL


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_build_reference(args: argparse.Namespace, config: GraderConfig) -> int:
    from grader.reference_build import ReferenceError, build_reference

    sandbox = _sandbox(config)
    for exercise_id in _exercise_ids(config, args.exercises):
        exercise = _exercise(config, exercise_id)
        started = time.monotonic()
        _stderr(f"building the reference of {exercise_id} (runs the solution)...")
        try:
            path = build_reference(exercise, config, sandbox,
                                   on_progress=progress_printer(exercise_id))
        except ReferenceError as exc:
            _stderr(f"grader: {exercise_id}: {exc}")
            return EXIT_FAIL
        _stderr(f"wrote {path} in {time.monotonic() - started:.0f}s")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace, config: GraderConfig) -> int:
    from grader.reference_build import ReferenceError, calibrate_accuracy

    exercise = _exercise(config, args.exercise)

    def on_run(offset: int, accuracy: float, report) -> None:
        found = report.item(accuracy_id).details.get("accuracies", {}) if accuracy_id else {}
        parts = ", ".join(f"{k} {v:.4f}" for k, v in found.items())
        _stderr(f"run {offset + 1}/{args.runs} (seeds +{offset}): score "
                f"{report.score:g}/{report.max_score:g}, accuracy {accuracy:.4f} ({parts})")

    accuracy_id = next((i.id for i in exercise.items if i.compare.kind == "accuracy"), None)

    try:
        calibration = calibrate_accuracy(exercise, config, _sandbox(config), args.runs,
                                         on_run=on_run, on_progress=progress_printer("calibrate"))
    except ReferenceError as exc:
        _stderr(f"grader: {exc}")
        return EXIT_FAIL
    print(json.dumps({**calibration.summary, "accuracies": calibration.accuracies,
                      "scores": calibration.scores,
                      "full_marks": sum(s >= exercise.max_score for s in calibration.scores),
                      "suggested_threshold": calibration.suggested_threshold(),
                      "sets": calibration.sets, "moved_error_ratios": calibration.error_ratios,
                      "suggested_moved_error_ratio": calibration.suggested_error_ratio()},
                     indent=1))
    return EXIT_OK


def cmd_data(args: argparse.Namespace, config: GraderConfig) -> int:
    from grader.data import (
        HOLDOUT_SIZE,
        DataError,
        fetch_main,
        sandbox_data_dir,
        verify_data_dir,
    )

    if args.data_command == "fetch":
        return fetch_main(config.data_dir)
    try:
        verify_data_dir(config.data_dir)
    except DataError as exc:
        print(f"grader: {exc} (run `grader data fetch`)", file=sys.stderr)
        return EXIT_FAIL
    print(f"{config.data_dir / 'mnist.npz'}: verified (host only)")
    print(f"{sandbox_data_dir(config.data_dir) / 'mnist.npz'}: verified "
          f"({60000 - HOLDOUT_SIZE:,} training and 10,000 test images, for the sandbox)")
    print(f"{config.data_dir / 'holdout.npz'}: verified ({HOLDOUT_SIZE:,} held-out training "
          "images, host only)")
    return EXIT_OK


def cmd_exercises(args: argparse.Namespace, config: GraderConfig) -> int:
    for exercise_id in config.exercise_ids():
        exercise = _exercise(config, exercise_id)
        reference = "reference ok" if _has_reference(exercise) \
            else "no reference yet"
        print(f"{exercise_id}\t{exercise.max_score:g} points\t{len(exercise.items)} items\t"
              f"{reference}\t{exercise.title.en}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, config: GraderConfig) -> int:
    from grader.data import DataError, verify_data_dir
    from grader.sandbox import get_sandbox
    from grader.sandbox.docker_image import image_present, image_tag

    problems = 0
    reasons: dict[str, str | None] = {}
    for name, needs in SANDBOXES.items():
        chosen = " (selected)" if name == config.sandbox else ""
        if name == "unsafe":
            print(f"sandbox unsafe{chosen}: works anywhere, isolates nothing (development only)")
            continue
        reason = reasons[name] = get_sandbox(name).check()
        print(f"sandbox {name}{chosen}: " + ("ok" if reason is None else
                                             f"unavailable: {reason} (needs {needs})"))
        problems += bool(chosen) and reason is not None
    tag = image_tag(Variant.CPU)
    if reasons.get("docker") and "no Docker daemon answers" in str(reasons["docker"]):
        print(f"image {tag}: unknown (no Docker daemon answers to ask)")
    else:
        print(f"image {tag}: " + ("present" if image_present(tag) else
                                  "missing (run `make image` for the docker backend)"))
    try:
        verify_data_dir(config.data_dir)
        print(f"data: {config.data_dir} verified (MNIST and its held-out split)")
    except DataError as exc:
        print(f"data: {exc} (run `grader data fetch`)")
        problems += 1
    for exercise_id in config.exercise_ids():
        exercise = _exercise(config, exercise_id)
        ok = _has_reference(exercise)
        print(f"exercise {exercise_id}: " + ("reference ok" if ok else
              f"no reference (run `grader build-reference {exercise_id}`)"))
        problems += not ok
    return EXIT_OK if problems == 0 else EXIT_FAIL


def cmd_image(args: argparse.Namespace, config: GraderConfig) -> int:
    from grader.sandbox.docker_image import build_image, image_present, image_tag

    variant = Variant(args.variant)
    if args.image_command == "status":
        tag = image_tag(variant)
        present = image_present(tag)
        print(f"{tag} " + ("present" if present else "missing (run `grader image build`)"))
        return EXIT_OK if present else EXIT_FAIL
    outcome = build_image(variant, args.base, force=args.force, log=_stderr)
    if outcome.error:
        _stderr(f"grader: {outcome.error}")
        return EXIT_FAIL
    if outcome.built:
        _stderr(f"built {outcome.tag} on {outcome.base} in {outcome.seconds:.0f} s")
    else:
        _stderr(f"{outcome.tag} is present (same inputs): nothing to build")
    print(outcome.tag)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
