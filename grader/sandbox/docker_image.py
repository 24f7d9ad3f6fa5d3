"""The docker backend's image: what goes in, its tag, building it and its local base.

The image (``docker/Dockerfile``) holds Python, TensorFlow, ipykernel and the grader's in-sandbox
code; nothing else of the checkout. Its build context is assembled here from exactly
:func:`image_inputs` (the Dockerfile, the pinned requirements of the variant, ``grader/kernel``
and ``grader/cleanroom``), and its tag is a hash of them
(``notebook-grader-runtime:<variant>-<hash>``): the backend asks for the tag of the code it
runs, so an image built from other code is never used (:func:`image_tag`), and a second build
of the same inputs is a no-op.

The base is ``python:3.11-slim-bookworm`` where a registry is reachable, else a Debian bookworm
made here (:func:`build_base`: ``debootstrap --variant=minbase`` then ``docker import``). pip
inside the build reaches the index this machine's pip reaches: :func:`pip_config_text` (the
network settings of ``pip config list`` and ``PIP_*``) and the CA bundle pip trusts go in as
BuildKit secrets, never into a layer or the Dockerfile.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

GRADER_DIR = Path(__file__).resolve().parent.parent
DOCKER_DIR = GRADER_DIR.parent / "docker"
IMAGE_REPOSITORY = "notebook-grader-runtime"
#: Where a registry is reachable.
REGISTRY_BASE = "python:3.11-slim-bookworm"
#: Made by :func:`build_base` where none is.
LOCAL_BASE = "notebook-grader-base:bookworm"
#: Image label holding the hash of the inputs (the tag has its first 16 digits).
INPUTS_LABEL = "org.notebook-grader.inputs"
#: In-sandbox code copied into the image: context folder -> host folder, and where it lands.
CODE_DIRS = {"kernel": GRADER_DIR / "kernel", "cleanroom": GRADER_DIR / "cleanroom"}
CODE_TARGETS = {"kernel": "/opt/grader/kernel", "cleanroom": "/opt/grader/cleanroom"}
#: The interpreter inside the image (a virtualenv, whatever the base's Python is).
IMAGE_PYTHON = "/opt/venv/bin/python"
#: ``pip config`` keys that make sense inside the build (network settings; host paths do not).
PIP_NETWORK_KEYS = ("index-url", "extra-index-url", "trusted-host", "timeout", "retries",
                    "proxy", "default-timeout")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: Seconds to try pulling :data:`REGISTRY_BASE` before making the local base instead.
PULL_TIMEOUT = 60

BuildLog = Callable[[str], None]


class ImageVariant(StrEnum):
    """Which TensorFlow goes in: ``cpu`` for machines without a GPU (CI), ``gpu`` with CUDA."""

    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True)
class BuildOutcome:
    """What :func:`build_image` did; ``error`` says why there is no image (errors as data)."""

    tag: str
    built: bool = False
    base: str | None = None
    seconds: float = 0.0
    error: str | None = None


def baked_mounts() -> dict[str, Path]:
    """Sandbox path -> host folder of the code the image carries (requests mounting exactly
    these need no bind: the image's copy has the same bytes, its tag says so)."""
    return {CODE_TARGETS[name]: path for name, path in CODE_DIRS.items()}


def image_inputs(variant: ImageVariant) -> dict[str, bytes]:
    """Every file of the build context, by its path in the context."""
    inputs = {name: (DOCKER_DIR / name).read_bytes()
              for name in ("Dockerfile", "requirements.txt", f"requirements-{variant}.txt")}
    for folder, path in CODE_DIRS.items():
        for source in sorted(path.glob("*.py")):
            inputs[f"{folder}/{source.name}"] = source.read_bytes()
    return inputs


def inputs_hash(variant: ImageVariant) -> str:
    """SHA-256 over the variant and every input file (name, size, bytes)."""
    digest = hashlib.sha256(f"variant={variant}\n".encode())
    for name, data in sorted(image_inputs(variant).items()):
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def image_tag(variant: ImageVariant = ImageVariant.CPU) -> str:
    """The tag of the image built from this checkout's inputs."""
    return f"{IMAGE_REPOSITORY}:{variant}-{inputs_hash(variant)[:16]}"


def image_present(tag: str) -> bool:
    """Whether the daemon holds ``tag`` (``False`` when no daemon answers)."""
    try:
        done = subprocess.run([*_cli(), "image", "inspect", "--format", "{{.Id}}", tag],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def build_image(
    variant: ImageVariant = ImageVariant.CPU,
    base: str = "auto",
    *,
    force: bool = False,
    log: BuildLog = print,
) -> BuildOutcome:
    """Build and tag the runtime image unless the daemon already holds this tag.

    ``base``: an image name, ``local`` (:data:`LOCAL_BASE`, made when missing) or ``auto``
    (:data:`REGISTRY_BASE` if present or pullable, else the local one).
    """
    started = time.monotonic()
    tag = image_tag(variant)
    if not force and image_present(tag):
        return BuildOutcome(tag=tag)
    with tempfile.TemporaryDirectory(prefix="grader-image-") as tmp:
        context = Path(tmp) / "context"
        for name, data in image_inputs(variant).items():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            (context / name).write_bytes(data)
        return buildkit_build(tag, context, base, log, started,
                              ["--label", f"{INPUTS_LABEL}={inputs_hash(variant)}",
                               "--build-arg", f"VARIANT={variant}"])


def buildkit_build(tag: str, context: Path, base: str, log: BuildLog, started: float,
                   options: list[str]) -> BuildOutcome:
    """``docker build`` of ``context`` with BuildKit, on the base :func:`resolve_base` picks
    (``--build-arg BASE``), with this machine's pip settings and CA bundle as the secrets
    ``pipconf`` and ``cacert`` (never baked into a layer); ``options``: more build options.
    Shared by the runtime image and the service's image (scripts/service_image.py)."""
    cli = buildkit_cli()
    if isinstance(cli, str):
        return BuildOutcome(tag=tag, error=cli)
    try:
        base_image = resolve_base(base, log)
    except BaseImageError as exc:
        return BuildOutcome(tag=tag, error=str(exc))
    log(f"building {tag} on {base_image} ...")
    with tempfile.TemporaryDirectory(prefix="grader-build-") as tmp:
        pipconf = Path(tmp) / "pip.conf"
        pipconf.write_text(pip_config_text())
        argv = [*cli, "build", "--tag", tag, *options, "--build-arg", f"BASE={base_image}",
                "--secret", f"id=pipconf,src={pipconf}"]
        cacert = ca_bundle()
        if cacert is not None:
            argv += ["--secret", f"id=cacert,src={cacert}"]
        done = subprocess.run([*argv, str(context)], env={**os.environ, "DOCKER_BUILDKIT": "1"},
                              capture_output=True, text=True)
    if done.returncode != 0:
        return BuildOutcome(tag=tag, base=base_image, error="docker build failed: "
                            + " | ".join(done.stderr.strip().splitlines()[-8:]))
    return BuildOutcome(tag=tag, built=True, base=base_image,
                        seconds=time.monotonic() - started)


class BaseImageError(Exception):
    """No base image could be found, pulled or made."""


def resolve_base(base: str, log: BuildLog) -> str:
    """The base image to build on: ``base`` itself when it names one, else as
    :func:`build_image` says (the service's image, scripts/service_image.py, uses it too)."""
    if base not in ("auto", "local"):
        return base
    if base == "auto":
        if image_present(REGISTRY_BASE):
            return REGISTRY_BASE
        if not image_present(LOCAL_BASE):
            try:
                done = subprocess.run([*_cli(), "pull", "--quiet", REGISTRY_BASE],
                                      capture_output=True, timeout=PULL_TIMEOUT)
            except subprocess.TimeoutExpired:
                done = None
            if done is not None and done.returncode == 0:
                return REGISTRY_BASE
            log(f"{REGISTRY_BASE} cannot be pulled: making {LOCAL_BASE} with debootstrap")
    if not image_present(LOCAL_BASE):
        problem = build_base(log)
        if problem:
            raise BaseImageError(problem)
    return LOCAL_BASE


def build_base(log: BuildLog = print, mirror: str = DEBIAN_MIRROR) -> str | None:
    """Make :data:`LOCAL_BASE`: Debian bookworm minbase with Python (debootstrap, about a
    minute), imported into the daemon. ``None`` on success, else the reason."""
    if os.geteuid() != 0:
        return "making the local base image needs root (debootstrap)"
    debootstrap = shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if debootstrap is None:
        return "debootstrap is not installed: apt-get install debootstrap"
    log(f"making {LOCAL_BASE}: debootstrap --variant=minbase bookworm ...")
    with tempfile.TemporaryDirectory(prefix="grader-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        done = subprocess.run(
            [debootstrap, "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(root), mirror], capture_output=True, text=True)
        if done.returncode != 0:
            return "debootstrap failed: " + " | ".join(done.stdout.strip().splitlines()[-3:])
        for trimmed in ("usr/share/doc", "usr/share/man", "usr/share/locale", "var/cache/apt",
                        "var/lib/apt/lists"):
            shutil.rmtree(root / trimmed, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run([*_cli(), "import", "-", LOCAL_BASE], stdin=tar.stdout,
                                  capture_output=True, text=True)
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
    if imported.returncode != 0 or tar.returncode != 0:
        return "docker import failed: " + imported.stderr.strip()[-300:]
    return None


def pip_config_text(environ: dict[str, str] | None = None) -> str:
    """A pip.conf for the build: the index settings this machine's pip uses.

    Read from ``pip config list`` (every configuration file) and ``PIP_*`` variables (which
    win, as in pip); only network settings are kept (:data:`PIP_NETWORK_KEYS`): file indexes,
    find-links folders, constraint files and the ``cert`` path name this machine's disk (the
    CA bundle goes in as a secret of its own).
    """
    env = os.environ if environ is None else environ
    settings: dict[str, str] = {}
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                                capture_output=True, text=True, timeout=60,
                                env={k: v for k, v in env.items() if not k.startswith("PIP_")})
        lines = listed.stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        lines = []
    for line in lines:
        key, _, value = line.partition("=")
        name = key.rpartition(".")[2]
        if name in PIP_NETWORK_KEYS:
            settings[name] = value.strip().strip("'\"")
    for key, value in env.items():
        name = key.removeprefix("PIP_").lower().replace("_", "-")
        if key.startswith("PIP_") and name in PIP_NETWORK_KEYS:
            settings[name] = value
    lines = ["[global]"]
    for name, value in sorted(settings.items()):
        kept = [v for v in value.split() if not v.startswith("file:") and not v.startswith("/")]
        if kept:
            lines.append(f"{name} = {' '.join(kept)}")
    return "\n".join(lines) + "\n"


def ca_bundle(environ: dict[str, str] | None = None) -> Path | None:
    """The CA bundle this machine's pip trusts (``PIP_CERT``, ``SSL_CERT_FILE``, or Debian's
    bundle, which holds the local certificates ``update-ca-certificates`` installed)."""
    env = os.environ if environ is None else environ
    for candidate in (env.get("PIP_CERT"), env.get("REQUESTS_CA_BUNDLE"),
                      env.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _cli() -> list[str]:
    return [shutil.which("docker") or "docker"]


def buildkit_cli() -> list[str] | str:
    """A docker command line that builds with BuildKit (secrets): one with the buildx plugin,
    or a client older than 23 (built-in BuildKit, as Debian's ``docker.io``); else why not."""
    candidates = [c for c in dict.fromkeys([shutil.which("docker"), "/usr/bin/docker"])
                  if c and os.access(c, os.X_OK)]
    for cli in candidates:
        buildx = subprocess.run([cli, "buildx", "version"], capture_output=True)
        if buildx.returncode == 0:
            return [cli]
        version = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True)
        major = version.stdout.strip().split(".")[0]
        if major.isdigit() and int(major) < 23:
            return [cli]
    if not candidates:
        return "the docker command is not installed: apt-get install docker.io"
    return ("no docker command here builds with BuildKit: install the buildx plugin "
            "(docker-buildx) or Debian's docker.io")
