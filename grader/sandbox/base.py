"""The seam between the grader and whatever isolates a run (bubblewrap, Docker).

A backend takes a :class:`SandboxRequest` (a command, the files it may see, limits, the host
identity it runs as) and returns a :class:`SandboxResult`. It never interprets what the command
printed: the pipeline reads the JSON the runner wrote into the writable work directory and
validates it on the host.

Grading runs several sandboxes side by side: the student's kernel, and the grader's runner that
drives it over loopback. So a run can also be *started* (:meth:`Sandbox.start`) and followed
while others start; the :class:`SandboxRun` it returns is a context manager that always kills
the run and releases its cgroup and temporary files, as nbclient does with kernels. A started
run's :meth:`~SandboxRun.network_peer` lets another request share its network namespace
(``join_network``) without sharing anything else: the two run as different host users, in
different PID and mount namespaces.

Errors: a sandbox that cannot be made is data (``SandboxResult.sandbox_error``), so a batch
never crashes; only :meth:`SandboxRun.network_peer`, which has no result to return, raises
:class:`SandboxError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Protocol

from grader.limits import Limits


@dataclass(frozen=True)
class Mount:
    """A host path made visible inside the sandbox at ``target`` (read-only unless writable)."""

    source: Path
    target: str
    writable: bool = False


#: How long :meth:`SandboxRun.network_peer` waits for the namespace by default.
PEER_TIMEOUT = 30.0


class SandboxError(Exception):
    """A started run cannot give what was asked of it (its network, within the timeout)."""


class SandboxUser(StrEnum):
    """The host identity a request runs as; each backend maps it to a user of its own.

    The student's code and the grader's own code never share a host user, so neither can
    signal, trace or read the files of the other, even where their sandboxes meet (a shared
    network namespace).
    """

    STUDENT = "student"
    GRADER = "grader"


@dataclass(frozen=True)
class NetworkPeer:
    """A started run's network namespace, for another request to join (``join_network``).

    Opaque to callers: only the backend that made it reads the fields.
    """

    #: Name of the backend that made it (a peer is joinable only by the same backend).
    backend: str
    #: Host pid of a process living in the namespace.
    pid: int | None = None
    #: Inode of the namespace, so that a recycled pid is never mistaken for the run.
    namespace: int | None = None
    #: Id of the container whose network it is (docker).
    container: str | None = None


@dataclass(frozen=True)
class SandboxRequest:
    #: Command to run inside the sandbox; paths in it are paths inside the sandbox.
    argv: Sequence[str]
    #: The writable work directory (host path), mounted at ``workdir_target``; results go here.
    #: ``None``: a private size-limited tmpfs there instead (``limits.scratch_bytes``), gone with
    #: the run; nothing written to it reaches the host's disk.
    workdir: Path | None
    workdir_target: str = "/work"
    #: Extra read-only (or writable) mounts: the data set, the runner code, the Python runtime.
    mounts: Sequence[Mount] = ()
    #: Environment inside the sandbox (nothing is inherited from the host).
    env: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    #: Host identity of the run (the work directory is given to it).
    user: SandboxUser = SandboxUser.STUDENT
    #: Share this started run's network namespace instead of getting a fresh one (only
    #: loopback either way); every other namespace stays the request's own.
    join_network: NetworkPeer | None = None


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
    #: The run was ended by :meth:`SandboxRun.stop` (then neither ``timed_out`` nor an error).
    stopped: bool = False


#: Called with each complete line the command writes on stdout, as it arrives (progress events).
LineCallback = Callable[[str], None]


class SandboxRun(Protocol):
    """A started run, followed in the background; ``with`` always ends and cleans it up."""

    def network_peer(self, timeout: float = PEER_TIMEOUT) -> NetworkPeer:
        """The run's network namespace, once it exists (blocks up to ``timeout`` seconds).

        Raises :class:`SandboxError` when the run ended before it had one, or on the timeout.
        """
        ...

    def stop(self) -> None:
        """Kill every process of the run now; the result says ``stopped``. Idempotent."""
        ...

    def wait(self, timeout: float | None = None) -> SandboxResult:
        """The result, once the run has ended (as :meth:`Sandbox.run` gives it).

        Raises :class:`TimeoutError` when it has not ended within ``timeout`` seconds; the run
        goes on (the wall-clock limit still applies).
        """
        ...

    def __enter__(self) -> SandboxRun: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the run if it still runs, wait for it and release everything it holds."""
        ...


class Sandbox(Protocol):
    """A way to run one command in isolation. Implementations: bubblewrap, docker, unsafe (dev
    only)."""

    name: str

    def run(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxResult:
        """Run ``request`` to completion (or until a limit ends it) and clean up everything.

        ``on_line`` is called in the calling thread.
        """
        ...

    def start(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxRun:
        """Start ``request`` and return at once; a background thread follows it and calls
        ``on_line``. A sandbox that cannot be made gives a run whose result says so."""
        ...

    def check(self) -> str | None:
        """``None`` when the backend can run here, else a one-line reason with the fix."""
        ...
