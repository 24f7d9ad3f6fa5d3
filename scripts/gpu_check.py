"""Prove the GPU path on a host with a GPU: the ``gpu`` image, a device leased through the
service's database, the reference solution graded through the docker backend on that device,
its score and the seconds each training epoch took.

    scripts/gpu-check [--exercise chap06_cnn] [--base auto|local|IMAGE] [--database URL]

Exit status: 0 when the reference earned full marks on the GPU; 1 when it did not (or the
run failed); 2 when this host cannot run the check (no GPU, no free GPU, no image), saying
why. On a host without a GPU it says so and exits 2: it never pretends.

The database is ``--database``, else ``DATABASE_URL`` (the service's, so that the check takes
a device no worker holds), else a throwaway SQLite file.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader import GraderConfig, Progress, grade_notebook  # noqa: E402
from grader.sandbox.gpus import GpuProbeError, NvidiaSmi, gpu_inventory  # noqa: E402

EPOCH = re.compile(r"\bepoch\W*(\d+)", re.IGNORECASE)
WORKER = f"gpu-check:{socket.gethostname()}:{os.getpid()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exercise", default="chap06_cnn")
    parser.add_argument("--base", default="auto", help="the image's base (grader image build)")
    parser.add_argument("--database", default=os.environ.get("DATABASE_URL", ""))
    args = parser.parse_args(argv)

    smi = NvidiaSmi()
    try:
        devices = gpu_inventory(os.environ.get("GPUS") or "auto", smi)
    except (ValueError, GpuProbeError) as exc:
        print(f"gpu-check: cannot list the GPUs: {exc}")
        return 2
    if not devices:
        print("gpu-check: NO GPU on this host (nvidia-smi is missing or lists no device). "
              "Nothing was checked: run this on a host with an NVIDIA GPU, the driver and the "
              "NVIDIA container toolkit.")
        return 2
    print(f"gpu-check: devices here: {', '.join(devices)}")

    from grader.sandbox.docker_image import ImageVariant, build_image

    built = build_image(ImageVariant.GPU, args.base)
    if built.error:
        print(f"gpu-check: the gpu image could not be built: {built.error}")
        return 2
    print(f"gpu-check: image {built.tag} ({'built' if built.built else 'present'})")

    app, host = _app(args.database)
    from service.extensions import db
    from service.queue import gpu_leases

    with app.app_context():
        gpu_leases.register(db.session, host, devices)
        device = gpu_leases.acquire(db.session, host, devices, WORKER, 3600, smi,
                                    app.config["GPU_FREE_MIB"])
    if device is None:
        print("gpu-check: every GPU here is leased to a run or not free; try again later")
        return 2
    print(f"gpu-check: leased {device} on {host}")
    try:
        return _grade(args.exercise, device)
    finally:
        with app.app_context():
            clean = gpu_leases.release_after_run(db.session, host, device, WORKER, smi,
                                                 app.config["GPU_FREE_MIB"])
        print(f"gpu-check: {device} given back{'' if clean else ' DIRTY (memory not free)'}")


def _app(database: str):
    """The service app on the chosen database, migrated; and this host's name in the leases."""
    from flask_migrate import upgrade

    from service import create_app

    url = database or f"sqlite:///{tempfile.mkdtemp(prefix='gpu-check-')}/leases.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
    print(f"gpu-check: leases in {url.split('@')[-1]}")
    return app, app.config["GPU_HOST"]


def _grade(exercise_id: str, device: str) -> int:
    from grader.sandbox.docker import DockerSandbox

    config = GraderConfig.from_env()
    exercise = config.exercise(exercise_id)
    solution = (exercise.reference_dir / "solution.ipynb").read_bytes()
    epochs: list[tuple[int, float]] = []

    def on_progress(event: Progress) -> None:
        now = time.monotonic()
        if event.kind == "output" and event.text and (match := EPOCH.search(event.text)):
            epochs.append((int(match.group(1)), now))
            print(f"  {event.text.strip()[:120]}")

    started = time.monotonic()
    report = grade_notebook(solution, exercise, config, DockerSandbox(gpu_devices=(device,)),
                            on_progress=on_progress)
    print(f"gpu-check: {exercise_id}: outcome {report.outcome}, score {report.score:g} of "
          f"{report.max_score:g}, {time.monotonic() - started:.1f} s in all")
    if report.reason is not None:
        print(f"gpu-check: {report.reason.en}")
    for (_, before), (number, after) in pairwise(epochs):
        print(f"gpu-check: epoch {number}: {after - before:.2f} s")
    if len(epochs) >= 2:
        spans = [b - a for (_, a), (_, b) in pairwise(epochs)]
        print(f"gpu-check: seconds per epoch: {sum(spans) / len(spans):.2f} "
              f"(between {len(epochs)} printed epochs)")
    else:
        print("gpu-check: fewer than two epoch lines were printed: no seconds per epoch")
    return 0 if report.outcome == "graded" and report.score == report.max_score else 1


if __name__ == "__main__":
    sys.exit(main())
