"""Running a command straight on the host, with a wall clock and capped output: no isolation.

:class:`UnsafeLocalSandbox` is for development on machines without bubblewrap; it must never
grade untrusted notebooks. Having no namespaces, it rewrites sandbox paths to host paths
(:func:`translate_paths`); the streaming loop it shares with the bubblewrap backend is in
:mod:`grader.sandbox.process`, the following of started runs in :mod:`grader.sandbox.runs`.
Every run is on the host's network, so ``join_network`` needs nothing and a run's
:class:`~grader.sandbox.base.NetworkPeer` carries nothing; every run is the caller's user.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from grader.limits import Limits
from grader.sandbox.base import (
    LineCallback,
    NetworkPeer,
    SandboxRequest,
    SandboxResult,
    SandboxRun,
)
from grader.sandbox.cpus import format_cpus
from grader.sandbox.process import (
    MAX_LINE_BYTES,
    base_env,
    error_result,
    follow_process,
    result_of,
    runtime_paths,
    split_returncode,
)
from grader.sandbox.runs import run_launched, start_launched


class UnsafeSandboxWarning(UserWarning):
    """The unsafe backend was constructed: student code would run with the grader's rights."""


def translate_paths(value: str, mapping: Mapping[str, str]) -> str:
    """Replace sandbox paths (``mapping`` keys) by host paths where they start a path.

    A target counts when it begins the string or follows ``=`` or ``:`` (``--out=/work/x``,
    ``PYTHONPATH=/a:/work``) and ends there or continues with ``/`` or ``:``. Longer targets win.
    """
    if not mapping:
        return value
    targets = sorted(mapping, key=len, reverse=True)
    pattern = r"(?<![^=:])(?:" + "|".join(re.escape(t) for t in targets) + r")(?![^/:])"
    return re.sub(pattern, lambda m: mapping[m.group(0)], value)


@dataclass
class UnsafeLocalSandbox:
    """Runs the command on the host as the grader's own user: for development only.

    Paths: the command and ``request.env`` name paths inside the sandbox (``workdir_target``,
    mount targets). Having no mount namespace, this backend rewrites them to the host paths in
    ``argv`` and in environment values (see :func:`translate_paths`) and runs in the host
    ``workdir``. Paths of the Python runtime (see :func:`runtime_paths`) are left alone, as
    the real sandbox binds the runtime over any target that contains it.

    Enforced: the whole-run wall clock and the output caps. Not enforced: memory, processes,
    CPU (``cpu_set`` is only where the command starts), file size, scratch sizes, network,
    file system visibility, identities (every request runs as the caller), system calls. A
    request without a work directory gets a temporary one on the host.
    """

    #: Interpreter whose ``bin`` directory leads ``PATH`` (as inside the bubblewrap sandbox).
    python: str | None = sys.executable
    #: Longest stdout line handed to ``on_line``.
    max_line_bytes: int = MAX_LINE_BYTES
    #: CPUs the command starts pinned to (``taskset``; the command may widen it). Empty: all.
    cpu_set: tuple[int, ...] = ()
    name: str = field(default="unsafe", init=False)

    def __post_init__(self) -> None:
        warnings.warn(
            "UnsafeLocalSandbox runs student code on the host with no isolation: "
            "for development only, never for real submissions",
            UnsafeSandboxWarning,
            stacklevel=3,
        )

    def check(self) -> str | None:
        return None

    def run(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxResult:
        return run_launched(self._launch(request), on_line)

    def start(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxRun:
        return start_launched(self._launch(request), on_line)

    def _launch(self, request: SandboxRequest) -> _LocalRun | SandboxResult:
        started = time.monotonic()
        if request.workdir is not None and not request.workdir.is_dir():
            return error_result(f"work directory does not exist: {request.workdir}", started)
        for mount in request.mounts:
            if not os.path.exists(mount.source):
                return error_result(f"mount source does not exist: {mount.source}", started)
        resources = ExitStack()
        home = resources.enter_context(tempfile.TemporaryDirectory(prefix="grader-home-"))
        workdir = request.workdir
        if workdir is None:  # the sandbox's private tmpfs: a directory of the run's own here
            workdir = Path(home) / "work"
            workdir.mkdir()
        mapping = {request.workdir_target: str(workdir)}
        for mount in request.mounts:
            mapping[mount.target] = str(mount.source)
        # The runtime is bound last in the real sandbox, so its paths win over a target that
        # contains them (``/work`` vs ``/work/main/.venv``): they map to themselves.
        for path in runtime_paths(self.python) if self.python else ():
            mapping[path] = path
        tmpdir = os.path.join(home, "tmp")
        os.mkdir(tmpdir)
        # The real sandbox's /tmp is its own: here a directory of the run's. Shared with the
        # host's, a kernel would load a connection file an earlier run left at
        # /tmp/jupyter-runtime/kernel.json (its key, not this run's) and never answer.
        mapping.setdefault("/tmp", tmpdir)
        env = base_env(home, tmpdir, self.python)
        env.update({k: translate_paths(v, mapping) for k, v in request.env.items()})
        argv = [translate_paths(arg, mapping) for arg in request.argv]
        if self.cpu_set:
            argv = ["taskset", "--cpu-list", format_cpus(self.cpu_set), *argv]
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            resources.close()
            return error_result(f"cannot start {argv[0]!r}: {exc.strerror}", started)
        return _LocalRun(proc, resources, started, request.limits, self.max_line_bytes)


class _LocalRun:
    """A command started on the host (see :class:`~grader.sandbox.runs.Launched`)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        resources: ExitStack,
        started: float,
        limits: Limits,
        max_line_bytes: int,
    ) -> None:
        self.proc = proc
        self.started = started
        self.limits = limits
        self.max_line_bytes = max_line_bytes
        self._resources = resources  # the temporary home, removed after the reap
        resources.callback(self._reap)

    def follow(self, on_line: LineCallback | None, stop: threading.Event | None) -> SandboxResult:
        try:
            outcome = follow_process(self.proc, started=self.started, limits=self.limits,
                                     kill=self.kill, on_line=on_line,
                                     max_line_bytes=self.max_line_bytes, stop=stop)
        finally:
            self._resources.close()
        return result_of(outcome, *split_returncode(outcome.returncode))

    def network_peer(self, timeout: float) -> NetworkPeer:
        return NetworkPeer(backend="unsafe")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self._resources.close()

    def _reap(self) -> None:
        self.kill()
        self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
