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
from dataclasses import replace
from pathlib import Path

from grader.config import GraderConfig
from grader.limits import Limits
from grader.notebook_run import Progress, ProgressCallback
from grader.pipeline import grade_notebook
from grader.reference import require_reference
from grader.render import default_lang, render_text
from grader.report import Outcome
from grader.sandbox.docker_image import ImageVariant
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

    def course_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--exercises", type=Path, metavar="DIR", dest="exercises_root",
                       help="a course's exercises folder (<id>/exercise.toml each; default: "
                       "GRADER_EXERCISES, else this checkout's exercises/)")
        p.add_argument("--references", type=Path, metavar="DIR", dest="reference_root",
                       help="its references (<id>/solution.ipynb, exports/, expected.json; "
                       "default: GRADER_REFERENCE, else reference/ beside the exercises "
                       "folder when --exercises is given)")

    def sandbox_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--sandbox", choices=list(SANDBOXES), default=None,
                       help="isolation backend (default: bwrap; 'docker' runs each sandbox in "
                       "a container of the runtime image (`grader image build`); 'unsafe' runs "
                       "the notebook directly on this machine, for development only)")

    grade = sub.add_parser("grade", help="grade one notebook and print the report",
                           description="Grade one notebook. Exit 0 once graded (any score), "
                           "2 if the file is not a valid notebook (or, without --exercise, "
                           "answers no exercise of the course that can be told), 3 if the "
                           "sandbox failed.")
    grade.add_argument("path", type=Path, help="the .ipynb file")
    grade.add_argument("--exercise", default=None,
                       help="exercise id (default: the course's only exercise, else the one "
                            "whose graded cells the notebook holds, said on stderr)")
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
    course_options(dry)
    sandbox_options(dry)

    build = sub.add_parser("build-reference", help="run the solution, keep its exports",
                           description="Run reference/<id>/solution.ipynb in the sandbox, keep "
                           "what it exports as reference/<id>/exports/ (what every "
                           "submission is measured against, in the clean room) and write "
                           "reference/<id>/expected.json (what was measured of them). The "
                           "solution must earn full marks against itself.")
    build.add_argument("exercises", nargs="*", metavar="EXERCISE", help="default: all")
    course_options(build)
    sandbox_options(build)

    assign = sub.add_parser("assign", help="make an exercise from one annotated solution",
                            description="Read an annotated solution notebook (markers: "
                            "docs/exercise-spec.md, 'Authoring'), write exercises/<id>/"
                            "exercise.toml and the template, reference/<id>/solution.ipynb, "
                            "then build the reference and dry-run it (the solution must earn "
                            "full marks, the template none). Writes nothing when an annotation "
                            "is wrong (exit 2).")
    assign.add_argument("source", type=Path, metavar="SOLUTION.ipynb")
    assign.add_argument("--out", type=Path, metavar="DIR",
                        help="the course folder: writes DIR/exercises/<id>/ and "
                        "DIR/reference/<id>/ (default: GRADER_EXERCISES and GRADER_REFERENCE, "
                        "else this checkout's exercises/ and reference/)")
    assign.add_argument("--no-check", action="store_true",
                        help="write the files only: no reference build, no dry-run")
    sandbox_options(assign)

    calibrate = sub.add_parser("calibrate", help="spread of the solution's accuracy over seeds",
                               description="Grade the solution RUNS times with shifted seeds, "
                               "print each run's score, its accuracy on each image set (test, "
                               "held-out, and their moved copies) and the counted figure, then "
                               "suggest a moved_error_ratio, and an accuracy threshold from "
                               "the figures as scored and counted again under that ratio "
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
        p.add_argument("--variant", choices=[v.value for v in ImageVariant], default="cpu",
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
        config = replace(config, sandbox=args.sandbox)
    if getattr(args, "exercises_root", None):
        root = args.exercises_root.resolve()
        config = replace(config, exercises_root=root, reference_root=root.parent / "reference")
    if getattr(args, "reference_root", None):
        config = replace(config, reference_root=args.reference_root.resolve())
    if getattr(args, "out", None):
        out = args.out.resolve()
        config = replace(config, exercises_root=out / "exercises", reference_root=out / "reference")
    handlers = {
        "grade": cmd_grade, "dry-run": cmd_dry_run, "build-reference": cmd_build_reference,
        "calibrate": cmd_calibrate, "data": cmd_data, "exercises": cmd_exercises,
        "doctor": cmd_doctor, "image": cmd_image, "assign": cmd_assign,
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
    try:
        data = args.path.read_bytes()
    except OSError as exc:
        print(f"grader: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.exercise is not None:
        exercise = _exercise(config, args.exercise)
    else:
        chosen = _guess_exercise(config, data)
        if chosen is None:
            return EXIT_BAD_INPUT
        exercise = chosen
    limits = _limits(exercise.limits, args)
    try:
        require_reference(exercise)
    except FileNotFoundError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_FAIL
    report = grade_notebook(data, exercise, config, _sandbox(config), limits=limits,
                            on_progress=progress_printer(args.path.name, args.quiet))
    if report.outcome is Outcome.INVALID_NOTEBOOK:
        reason = report.reason.en if report.reason else "not a notebook"
        print(f"grader: {args.path}: {reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.executed and report.executed_notebook:
        args.executed.write_text(report.executed_notebook, encoding="utf-8")
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    else:
        print(render_text(report, args.lang or default_lang()))
    return EXIT_SANDBOX if report.outcome is Outcome.SANDBOX_ERROR else EXIT_OK


def _guess_exercise(config: GraderConfig, data: bytes) -> Exercise | None:
    """``grader grade`` without ``--exercise``: the course's only exercise, else the one whose
    graded cells the notebook holds (said on stderr); ``None`` (said why) when it cannot tell.
    A notebook that does not read goes to the first exercise, whose report says why."""
    from grader.locate import likely_exercise
    from grader.notebook import NotebookError, read_notebook

    ids = config.exercise_ids()
    if not ids:
        _stderr(f"grader: no exercise in {config.exercises_root} (<id>/exercise.toml)")
        return None
    exercises = [_exercise(config, exercise_id) for exercise_id in ids]
    if len(exercises) == 1:
        return exercises[0]
    try:
        nb = read_notebook(data)
    except NotebookError:
        return exercises[0]
    found = likely_exercise(nb, exercises)
    if found is None:
        _stderr("grader: cannot tell which exercise this notebook answers: say --exercise "
                f"(one of {', '.join(ids)})")
        return None
    _stderr(f"grader: grading as {found.id} (its graded cells are in the notebook; "
            "--exercise chooses another)")
    return found


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
    from grader.dryrun import DryRunCheck, dry_run_exercise, failed_check

    ids = _exercise_ids(config, args.exercises)
    if not ids:
        _stderr(f"grader: no exercise in {config.exercises_root} (<id>/exercise.toml)")
        return EXIT_FAIL
    sandbox = _sandbox(config)
    checks: list[DryRunCheck] = []
    for exercise_id in ids:
        try:  # one broken exercise is a failed check; the others are still run
            exercise = _exercise(config, exercise_id)
            require_reference(exercise)
        except (SpecError, FileNotFoundError) as exc:
            _stderr(f"{exercise_id}: FAILED: {exc}")
            checks.append(failed_check(exercise_id, str(exc)))
            continue
        checks += dry_run_exercise(exercise, config, sandbox, log=_stderr,
                                   progress=progress_printer)
    ok = all(check.passed for check in checks)
    if args.json:
        print(json.dumps({"passed": ok, "checks": [c.to_dict() for c in checks]}, indent=1,
                         ensure_ascii=False))
    _stderr("summary:")
    for check in checks:
        _stderr(f"  {check.exercise} {check.notebook}: {check.score:g}/{check.max_score:g} "
                + ("ok" if check.passed else "FAILED: " + "; ".join(check.problems)))
    failed = sorted({c.exercise for c in checks if not c.passed})
    _stderr(("dry-run passed" if ok else f"dry-run FAILED ({', '.join(failed)})")
            + f" ({len(checks)} checks, {len(ids)} exercises)")
    return EXIT_OK if ok else EXIT_FAIL


def cmd_assign(args: argparse.Namespace, config: GraderConfig) -> int:
    from grader.assign import AssignError, make_assignment
    from grader.dryrun import dry_run_exercise
    from grader.reference_build import ReferenceBuildError, build_reference

    try:
        assignment = make_assignment(args.source,
                                     _source_as_named(args.source, config.exercises_root.parent))
    except AssignError as exc:
        _stderr(f"grader assign: {len(exc.problems)} problem(s), nothing written")
        _stderr(str(exc))
        return EXIT_BAD_INPUT
    for path in assignment.write_to(config.exercises_root, config.reference_root):
        _stderr(f"wrote {path}")
    exercise = _exercise(config, assignment.exercise_id)
    if args.no_check:
        _warn_stale_reference(exercise)
        return EXIT_OK
    sandbox = _sandbox(config)
    started = time.monotonic()
    _stderr(f"building the reference of {exercise.id} (runs the solution)...")
    try:
        path = build_reference(exercise, config, sandbox,
                               on_progress=progress_printer(exercise.id))
    except ReferenceBuildError as exc:
        _stderr(f"grader assign: {exercise.id}: the reference cannot be built: {exc}")
        return EXIT_FAIL
    _stderr(f"wrote {path} in {time.monotonic() - started:.0f}s")
    checks = dry_run_exercise(exercise, config, sandbox, log=_stderr, progress=progress_printer)
    ok = all(check.passed for check in checks)
    _stderr(f"{exercise.id}: " + ("ready (the solution earns full marks, the template none)"
                                  if ok else "dry-run FAILED (see above)"))
    return EXIT_OK if ok else EXIT_FAIL


def _source_as_named(source: Path, course: Path) -> str:
    """How the spec's first line names the annotated notebook: relative to the course folder
    when it is inside it, so that the line is the same from every working directory (a
    course's CI regenerates the files from its root and diffs them: docs/ci.md); else relative
    to the working directory; else as given."""
    resolved = source.resolve()
    for base in (course.resolve(), Path.cwd()):
        try:
            return resolved.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(source)


def _warn_stale_reference(exercise: Exercise) -> None:
    """Say so when the reference outputs beside a newly written solution were built from
    another one (``expected.json`` records the solution's hash)."""
    import hashlib

    from grader.reference import read_expected, solution_path

    try:
        built_from = read_expected(exercise).get("solution_sha256")
    except (FileNotFoundError, ValueError):
        _stderr(f"no reference outputs yet: run `grader build-reference {exercise.id}`")
        return
    if built_from != hashlib.sha256(solution_path(exercise).read_bytes()).hexdigest():
        _stderr(f"the reference outputs of {exercise.id} were built from another solution: "
                f"run `grader build-reference {exercise.id}`")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_build_reference(args: argparse.Namespace, config: GraderConfig) -> int:
    from grader.reference_build import ReferenceBuildError, build_reference

    sandbox = _sandbox(config)
    for exercise_id in _exercise_ids(config, args.exercises):
        exercise = _exercise(config, exercise_id)
        started = time.monotonic()
        _stderr(f"building the reference of {exercise_id} (runs the solution)...")
        try:
            path = build_reference(exercise, config, sandbox,
                                   on_progress=progress_printer(exercise_id))
        except ReferenceBuildError as exc:
            _stderr(f"grader: {exercise_id}: {exc}")
            return EXIT_FAIL
        _stderr(f"wrote {path} in {time.monotonic() - started:.0f}s")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace, config: GraderConfig) -> int:
    from grader.reference_build import ReferenceBuildError, calibrate_accuracy

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
    except ReferenceBuildError as exc:
        _stderr(f"grader: {exc}")
        return EXIT_FAIL
    ratio = calibration.suggested_error_ratio()
    at_ratio: dict[str, object] = {}
    if ratio is not None:  # the threshold follows from the figures counted under that ratio
        recounted = calibration.recounted(ratio)
        at_ratio = {"at_suggested_moved_error_ratio": {
            **recounted.summary, "accuracies": recounted.accuracies,
            "suggested_threshold": recounted.suggested_threshold()}}
    print(json.dumps({**calibration.summary, "accuracies": calibration.accuracies,
                      "scores": calibration.scores,
                      "full_marks": sum(s >= exercise.max_score for s in calibration.scores),
                      "suggested_threshold": calibration.suggested_threshold(),
                      "sets": calibration.sets, "moved_error_ratios": calibration.error_ratios,
                      "suggested_moved_error_ratio": ratio, **at_ratio},
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
    tag = image_tag(ImageVariant.CPU)
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

    variant = ImageVariant(args.variant)
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
