"""The seam between the grader and whatever isolates a run (bubblewrap today, Docker later).

A backend takes a :class:`SandboxRequest` (a command, the files it may see, limits) and returns
a :class:`SandboxResult`. It never interprets what the command printed: the pipeline reads the
JSON the runner wrote into the writable work directory and validates it on the host.

Backends are context managers per run so that cgroups, temporary roots and leases (GPUs, a warm
container) are always released, as nbclient does with kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from grader.limits import Limits


@dataclass(frozen=True)
class Mount:
    """A host path made visible inside the sandbox at ``target`` (read-only unless writable)."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class SandboxRequest:
    #: Command to run inside the sandbox; paths in it are paths inside the sandbox.
    argv: Sequence[str]
    #: The writable work directory (host path); mounted at ``workdir_target``; results go here.
    workdir: Path
    workdir_target: str = "/work"
    #: Extra read-only (or writable) mounts: the data set, the runner code, the Python runtime.
    mounts: Sequence[Mount] = ()
    #: Environment inside the sandbox (nothing is inherited from the host).
    env: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int | None
    #: Signal number when the command was killed by one.
    signal: int | None
    wall_seconds: float
    #: The whole-run wall-clock limit (``limits.notebook_timeout``) was hit and the run was killed.
    timed_out: bool
    #: The memory limit was hit (the kernel's OOM killer ran inside the run's cgroup).
    oom_killed: bool
    #: First ``limits.log_bytes`` of stdout and stderr; ``*_truncated`` says whether more came.
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    #: Peak memory of the run in bytes, where the backend can measure it.
    peak_memory_bytes: int | None = None
    #: Set when the sandbox itself could not be made or started (not the command failing).
    sandbox_error: str | None = None


#: Called with each complete line the command writes on stdout, as it arrives (progress events).
LineCallback = Callable[[str], None]


class Sandbox(Protocol):
    """A way to run one command in isolation. Implementations: bubblewrap, unsafe (dev only)."""

    name: str

    def run(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxResult:
        """Run ``request`` to completion (or until a limit ends it) and clean up everything."""
        ...

    def check(self) -> str | None:
        """``None`` when the backend can run here, else a one-line reason with the fix."""
        ...
