"""The bubblewrap backend: each run in fresh namespaces, as an unprivileged user, in its cgroup.

The command line, and why it is made so, is in :mod:`grader.sandbox.launch`: the command runs
with no capabilities, as a host user that owns nothing, with no network but loopback, seeing
only ``/usr``, a few files of ``/etc``, the Python runtime, the work directory and the mounts.

A grader killed with SIGKILL leaves its run's cgroup and staging directory behind; each run
first sweeps away those of graders that no longer exist (:func:`sweep_leftovers`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from grader.limits import Limits
from grader.sandbox.base import LineCallback, SandboxRequest, SandboxResult
from grader.sandbox.cgroups import (
    DEFAULT_PARENT,
    CgroupError,
    RunCgroup,
    create_cgroup,
    sweep_cgroups,
)
from grader.sandbox.launch import (
    ETC_PATHS,
    SYSTEM_PATHS,
    TOOL_PATH,
    launch_argv,
    under_any,
)
from grader.sandbox.process import (
    MAX_LINE_BYTES,
    error_result,
    read_available,
    stream_process,
)
from grader.sandbox.staging import create_stage, sweep_stages

logger = logging.getLogger(__name__)

#: Targets a request may not mount over: the sandbox's own ``/proc`` and ``/dev``.
RESERVED_TARGETS = ("/proc", "/dev")


@dataclass
class BubblewrapSandbox:
    """Runs each request in a bubblewrap sandbox with cgroup limits (Debian's ``bubblewrap``).

    Every option below has a default that works on a Debian host where the grader runs as root.
    """

    #: The ``bwrap`` executable (a name looked up in ``PATH``, or a path).
    bwrap: str = "bwrap"
    #: Interpreter made available inside at the same path: its virtualenv and its base prefix
    #: are bound read-only (see :func:`~grader.sandbox.process.runtime_paths`), after the
    #: request's mounts so none hides them; its ``bin`` leads ``PATH``. ``None``
    #: binds no runtime: the request's mounts must then bring one.
    python: str | None = sys.executable
    #: Host user and group the sandbox runs as when the grader is root (``nobody`` by default;
    #: a dedicated unused id is better on a shared host). It owns the work directory.
    host_uid: int = 65534
    host_gid: int = 65534
    #: User and group ids the command sees inside (``getuid()``); named ``sandbox``.
    sandbox_uid: int = 1000
    sandbox_gid: int = 1000
    #: Hostname inside the sandbox.
    hostname: str = "sandbox"
    #: The private, writable home directory (an empty tmpfs, like ``/tmp``).
    home: str = "/home/sandbox"
    #: Host paths shown read-only at the same path; see :data:`SYSTEM_PATHS`.
    system_paths: tuple[str, ...] = SYSTEM_PATHS
    #: Files and directories of the host's ``/etc`` bound read-only when they exist.
    #: ``passwd``, ``group``, ``hosts``, ``nsswitch.conf`` and ``hostname`` are generated.
    etc_paths: tuple[str, ...] = ETC_PATHS
    #: Device nodes passed through when present, e.g. ``("/dev/nvidia0", "/dev/nvidiactl",
    #: "/dev/nvidia-uvm")`` for GPU runs. Nothing by default.
    devices: tuple[str, ...] = ()
    #: Parent of the runs' cgroups, relative to each cgroup hierarchy's root.
    cgroup_parent: str = DEFAULT_PARENT
    #: Fail (``sandbox_error``) when no cgroup can be made. ``False`` runs without memory and
    #: process limits: only for machines where cgroups are out of reach, never in production.
    require_cgroup: bool = True
    #: Where per-run staging directories go; every parent must be enterable by ``host_uid``.
    #: ``None`` means :func:`tempfile.gettempdir`. See :mod:`grader.sandbox.staging`.
    stage_root: str | None = None
    #: Longest stdout line handed to ``on_line``; the rest of a longer line is dropped.
    max_line_bytes: int = MAX_LINE_BYTES
    name: str = field(default="bwrap", init=False)

    # --- the Sandbox protocol --------------------------------------------------------------

    def check(self) -> str | None:
        """``None`` when a trivial command runs in a sandbox here, else the reason and the fix."""
        missing = self._missing_tools()
        if missing:
            return missing
        if self.require_cgroup:
            try:
                with create_cgroup(64 * 1024 * 1024, 8, parent=self.cgroup_parent):
                    pass
            except CgroupError as exc:
                return (
                    f"cannot create cgroups ({exc}): run the grader as root, or delegate a cgroup "
                    "and set cgroup_parent, or pass require_cgroup=False (no memory limit)"
                )
        with tempfile.TemporaryDirectory(prefix="grader-check-") as workdir:
            request = SandboxRequest(
                argv=["true"], workdir=Path(workdir), limits=Limits(notebook_timeout=30.0)
            )
            result = self.run(request)
        if result.sandbox_error:
            return (
                f"bubblewrap cannot start a sandbox ({result.sandbox_error}); if user namespaces "
                "are disabled: sysctl -w kernel.unprivileged_userns_clone=1 "
                "user.max_user_namespaces=15000"
            )
        if result.exit_code != 0:
            stderr = result.stderr.decode("utf-8", "replace")[-300:]
            return f"`true` failed in the sandbox (exit {result.exit_code}): {stderr}"
        return None

    def run(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxResult:
        """Run ``request``; failures to make the sandbox come back as ``sandbox_error``."""
        started = time.monotonic()
        problem = self._missing_tools() or _request_problem(request)
        if problem:
            return error_result(problem, started)
        sweep_leftovers(self.cgroup_parent, self.stage_root)
        with ExitStack() as stack:
            result = self._run(stack, request, on_line, started)
        return result

    def _run(
        self,
        stack: ExitStack,
        request: SandboxRequest,
        on_line: LineCallback | None,
        started: float,
    ) -> SandboxResult:
        """One run; everything it makes is released by ``stack`` (cgroup last)."""
        as_root = os.geteuid() == 0
        try:
            cgroup = self._enter_cgroup(stack, request.limits)
            stage = stack.enter_context(create_stage(self.stage_root))
            if as_root:
                _chown_tree(request.workdir, self.host_uid, self.host_gid)
            started_read, started_write = os.pipe()
            stack.callback(os.close, started_read)
            try:
                proc = subprocess.Popen(
                    launch_argv(self, request, cgroup, stage, as_root),
                    stdin=started_write,  # see launch.STARTED_MARKER
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            finally:
                os.close(started_write)
        except CgroupError as exc:
            return error_result(str(exc), started)
        except OSError as exc:
            return error_result(f"cannot prepare the sandbox: {exc}", started)
        stack.callback(_reap, proc, cgroup)

        outcome = stream_process(
            proc,
            started=started,
            timeout=request.limits.notebook_timeout,
            log_bytes=request.limits.log_bytes,
            kill=lambda: _kill(proc, cgroup),
            on_line=on_line,
            max_line_bytes=self.max_line_bytes,
        )
        exit_code, exit_signal = _split_exit(outcome.returncode)
        sandbox_error = None
        if not read_available(started_read) and not outcome.timed_out:
            sandbox_error = "sandbox did not start: " + _tail(outcome.stderr)
        return SandboxResult(
            exit_code=exit_code,
            signal=exit_signal,
            wall_seconds=outcome.wall_seconds,
            timed_out=outcome.timed_out,
            oom_killed=cgroup.oom_killed(exit_signal) if cgroup else False,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            stdout_truncated=outcome.stdout_truncated,
            stderr_truncated=outcome.stderr_truncated,
            peak_memory_bytes=cgroup.peak_memory_bytes() if cgroup else None,
            sandbox_error=sandbox_error,
        )

    # --- parts of a run ---------------------------------------------------------------------

    def _enter_cgroup(self, stack: ExitStack, limits: Limits) -> RunCgroup | None:
        try:
            return stack.enter_context(create_cgroup(
                int(limits.memory_bytes), int(limits.max_processes), parent=self.cgroup_parent))
        except CgroupError:
            if self.require_cgroup:
                raise
            return None

    def _missing_tools(self) -> str | None:
        if shutil.which(self.bwrap) is None:
            return "bubblewrap is not installed: apt-get install bubblewrap"
        tools = ("unshare", "mount", "prlimit", "setpriv") if os.geteuid() == 0 else ("prlimit",)
        for tool in tools:
            if shutil.which(tool, path=TOOL_PATH) is None:
                return f"{tool} is not installed: apt-get install util-linux mount"
        return None


def sweep_leftovers(
    cgroup_parent: str = DEFAULT_PARENT, stage_root: str | None = None
) -> list[Path]:
    """Remove the run cgroups and staging directories of graders that were killed.

    Safe while other graders run on the host: only what a process that no longer exists made,
    and only cgroups with no process left, are removed (see :func:`sweep_cgroups`,
    :func:`sweep_stages`). Cheap: it lists two or three directories. Never raises; returns
    the paths removed.
    """
    removed = sweep_cgroups(cgroup_parent) + sweep_stages(stage_root)
    for path in removed:
        logger.info("removed the leftover of a killed grader: %s", path)
    return removed


def _request_problem(request: SandboxRequest) -> str | None:
    if not request.argv:
        return "empty command"
    if not request.workdir.is_dir():
        return f"work directory does not exist: {request.workdir}"
    for target in [request.workdir_target, *(m.target for m in request.mounts)]:
        if not target.startswith("/") or os.path.normpath(target) != target or target == "/":
            return f"mount target must be a normalised absolute path below /: {target!r}"
        if under_any(target, RESERVED_TARGETS):
            return f"mount target is reserved by the sandbox: {target}"
    for mount in request.mounts:
        if not os.path.exists(mount.source):
            return f"mount source does not exist: {mount.source}"
    return None


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give the work directory to the sandbox user (never following symlinks)."""
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def _kill(proc: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> None:
    if cgroup is not None:
        cgroup.kill_all()
    proc.kill()  # no-op once reaped; without a cgroup --die-with-parent takes the rest


def _reap(proc: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> None:
    _kill(proc, cgroup)
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _split_exit(returncode: int | None) -> tuple[int | None, int | None]:
    """``(exit_code, signal)``. bwrap reports a command killed by signal N as exit 128+N (the
    shell's convention), so such codes are read as signals; a command calling ``exit(137)``
    itself is indistinguishable. A negative code means bwrap itself was killed."""
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, -returncode
    if returncode > 128:
        try:
            return None, signal.Signals(returncode - 128).value
        except ValueError:
            pass
    return returncode, None


def _tail(stderr: bytes, limit: int = 500) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    text = " | ".join(line for line in lines[-3:] if line)
    return text[-limit:] or "no message"
