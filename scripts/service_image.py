"""`make service-image`: build the service's image (docker/service.Dockerfile) for
docker-compose.yml, as `grader image build` builds the runtime image.

`docker compose build` builds it too where pip reaches its index with the base image's own
settings. Where it does not (an index or a CA certificate of this machine's), this passes this
machine's pip settings and CA bundle as BuildKit secrets (grader.sandbox.docker_image:
pip_config_text, ca_bundle), and with ``--base auto`` builds on the local Debian base when no
registry is reachable. The tag is the one docker-compose.yml names (``SERVICE_IMAGE``, default
:data:`SERVICE_IMAGE`); the build reuses Docker's layer cache, so an unchanged checkout rebuilds
nothing.

    python scripts/service_image.py [--base auto|local|IMAGE] [--tag TAG]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader.config import PROJECT_ROOT
from grader.sandbox.docker_image import (
    BaseImageError,
    BuildOutcome,
    Log,
    buildkit_cli,
    ca_bundle,
    pip_config_text,
    resolve_base,
)

SERVICE_IMAGE = "notebook-grader-service:latest"
DOCKERFILE = PROJECT_ROOT / "docker" / "service.Dockerfile"


def build_service_image(base: str = "auto", tag: str = SERVICE_IMAGE,
                        log: Log = print) -> BuildOutcome:
    """Build ``tag`` from the checkout; ``error`` says why not (errors as data)."""
    started = time.monotonic()
    cli = buildkit_cli()
    if isinstance(cli, str):
        return BuildOutcome(tag=tag, error=cli)
    try:
        base_image = resolve_base(base, log)
    except BaseImageError as exc:
        return BuildOutcome(tag=tag, error=str(exc))
    log(f"building {tag} on {base_image} ...")
    with tempfile.TemporaryDirectory(prefix="grader-service-image-") as tmp:
        pipconf = Path(tmp) / "pip.conf"
        pipconf.write_text(pip_config_text())
        argv = [*cli, "build", "--tag", tag, "--file", str(DOCKERFILE),
                "--build-arg", f"BASE={base_image}", "--secret", f"id=pipconf,src={pipconf}"]
        cacert = ca_bundle()
        if cacert is not None:
            argv += ["--secret", f"id=cacert,src={cacert}"]
        done = subprocess.run([*argv, str(PROJECT_ROOT)],
                              env={**os.environ, "DOCKER_BUILDKIT": "1"},
                              capture_output=True, text=True)
    if done.returncode != 0:
        return BuildOutcome(tag=tag, base=base_image, error="docker build failed: "
                            + " | ".join(done.stderr.strip().splitlines()[-8:]))
    return BuildOutcome(tag=tag, built=True, base=base_image,
                        seconds=time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="auto",
                        help="auto (the registry's python image, else the local base), local, "
                             "or an image name")
    parser.add_argument("--tag", default=os.environ.get("SERVICE_IMAGE") or SERVICE_IMAGE)
    args = parser.parse_args(argv)
    outcome = build_service_image(args.base, args.tag)
    if outcome.error:
        print(f"error: {outcome.error}", file=sys.stderr)
        return 1
    print(f"{outcome.tag} built on {outcome.base} in {outcome.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
