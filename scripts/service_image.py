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
import sys
import time

from grader.config import PROJECT_ROOT
from grader.sandbox.docker_image import BuildLog, BuildOutcome, buildkit_build

SERVICE_IMAGE = "notebook-grader-service:latest"
DOCKERFILE = PROJECT_ROOT / "docker" / "service.Dockerfile"


def build_service_image(base: str = "auto", tag: str = SERVICE_IMAGE,
                        log: BuildLog = print) -> BuildOutcome:
    """Build ``tag`` from the checkout; ``error`` says why not (errors as data)."""
    return buildkit_build(tag, PROJECT_ROOT, base, log, time.monotonic(),
                          ["--file", str(DOCKERFILE)])


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
