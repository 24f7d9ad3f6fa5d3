"""The bubblewrap backend: each run in fresh namespaces, as an unprivileged user, in its cgroup.

The command line, and why it is made so, is in :mod:`grader.sandbox.launch`: the command runs
with no capabilities and a seccomp filter (:mod:`grader.sandbox.seccomp`), as a host user that
owns nothing (one for the student's code, another for the grader's), with no network but
loopback, seeing only ``/usr``, a few files of ``/etc``, the Python runtime, the work directory
and the mounts. A launched run is followed by :mod:`grader.sandbox.bwrap_run`, in the calling
thread (:meth:`BubblewrapSandbox.run`) or in a thread of its own
(:meth:`BubblewrapSandbox.start`), so that a second sandbox can join the first one's network.

A grader killed with SIGKILL leaves its run's cgroup, staging directory and run directory
behind; each run first sweeps away those of graders that no longer exist
(:func:`sweep_leftovers`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from grader.limits import Limits
from grader.sandbox.base import (
    LineCallback,
    SandboxError,
    SandboxRequest,
    SandboxResult,
    SandboxRun,
)
from grader.sandbox.bwrap_run import BwrapRun, open_network
from grader.sandbox.bwrap_settings import BwrapSettings
from grader.sandbox.cgroups import (
    DEFAULT_PARENT,
    CgroupError,
    RunCgroup,
    create_cgroup,
    sweep_cgroups,
)
from grader.sandbox.launch import (
    TOOL_PATH,
    LaunchFds,
    data_fd,
    launch_argv,
    write_args,
)
from grader.sandbox.process import MAX_LINE_BYTES, error_result
from grader.sandbox.request_checks import give_workdir, request_problem
from grader.sandbox.runs import run_launched, start_launched
from grader.sandbox.seccomp import SeccompError, seccomp_program
from grader.sandbox.staging import create_stage, sweep_run_dirs, sweep_stages

logger = logging.getLogger(__name__)

#: Targets a request may not mount over: the sandbox's own ``/proc`` and ``/dev``.
RESERVED_TARGETS = ("/proc", "/dev")


@dataclass
class BubblewrapSandbox(BwrapSettings):
    """Runs each request in a bubblewrap sandbox with cgroup limits (Debian's ``bubblewrap``).

    Every option (here and in :class:`~grader.sandbox.bwrap_settings.BwrapSettings`) has a
    default that works on a Debian host where the grader runs as root.
    """

    #: Parent of the runs' cgroups, relative to each cgroup hierarchy's root.
    cgroup_parent: str = DEFAULT_PARENT
    #: Fail (``sandbox_error``) when no cgroup can be made. ``False`` runs without memory and
    #: process limits: only for machines where cgroups are out of reach, never in production.
    require_cgroup: bool = True
    #: Where per-run staging directories go; every parent must be enterable by ``host_uid``
    #: and ``grader_uid``. ``None`` means :func:`tempfile.gettempdir`. Make run directories
    #: (:func:`~grader.sandbox.staging.create_run_dir`) here too: each run sweeps both.
    stage_root: str | None = None
    #: Longest stdout line handed to ``on_line``; the rest of a longer line is dropped.
    max_line_bytes: int = MAX_LINE_BYTES
    #: Load the seccomp filter of :mod:`grader.sandbox.seccomp` (dangerous syscalls fail with
    #: EPERM). Turn off only to find out whether the filter is what breaks a program.
    seccomp: bool = True
    name: str = field(default="bwrap", init=False)

    # --- the Sandbox protocol --------------------------------------------------------------

    def check(self) -> str | None:
        """``None`` when a trivial command runs in a sandbox here, else the reason and the fix."""
        missing = self._missing_tools()
        if missing:
            return missing
        if self.seccomp:
            try:
                seccomp_program()
            except SeccompError as exc:
                return f"cannot build the seccomp filter: {exc}"
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
        return run_launched(self._launch(request), on_line)

    def start(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxRun:
        """Start ``request`` and follow it in a background thread (see :class:`FollowedRun`)."""
        return start_launched(self._launch(request), on_line)

    def _launch(self, request: SandboxRequest) -> BwrapRun | SandboxResult:
        """Make the run's cgroup and staging directory and start ``bwrap``; or say why not."""
        started = time.monotonic()
        as_root = os.geteuid() == 0
        problem = self._missing_tools() or request_problem(request, RESERVED_TARGETS)
        if not problem and request.join_network is not None and not as_root:
            problem = "joining another sandbox's network needs root (nsenter)"
        if problem:
            return error_result(problem, started)
        sweep_leftovers(self.cgroup_parent, self.stage_root)
        resources = ExitStack()  # handed to the run, which releases it when it ends
        info_read: int | None = None  # outlives the resources: the run closes it last
        try:
            cgroup = self._enter_cgroup(resources, request.limits)
            stage = resources.enter_context(create_stage(self.stage_root))
            if as_root and request.workdir is not None:
                give_workdir(request.workdir, *self.host_ids(request.user))
            with ExitStack() as parent_copies:  # closed once the child has its own
                fds, info_read = self._open_fds(parent_copies, request)
                argv, options = launch_argv(self, request, cgroup, stage, as_root, fds)
                write_args(fds.args, options)
                started_read, started_write = os.pipe()
                resources.callback(os.close, started_read)
                parent_copies.callback(os.close, started_write)
                proc = subprocess.Popen(
                    argv,
                    stdin=started_write,  # see launch.STARTED_MARKER
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=fds.all(),
                    env={},  # see launch: nothing of the host's environment goes in
                    start_new_session=True,
                )
        except BaseException as exc:
            resources.close()
            if info_read is not None:
                os.close(info_read)
            if isinstance(exc, CgroupError | SandboxError | SeccompError):
                return error_result(str(exc), started)
            if isinstance(exc, OSError):
                return error_result(f"cannot prepare the sandbox: {exc}", started)
            raise
        return BwrapRun(proc, cgroup=cgroup, resources=resources, started_fd=started_read,
                        info_fd=info_read, started=started, limits=request.limits,
                        max_line_bytes=self.max_line_bytes)

    def _open_fds(self, stack: ExitStack, request: SandboxRequest) -> tuple[LaunchFds, int]:
        """The descriptors bwrap gets (closed by ``stack``) and the read end of its info pipe."""
        info_read, info_write = os.pipe()
        stack.callback(os.close, info_write)
        try:
            args = data_fd(b"", "bwrap-args")
            stack.callback(os.close, args)
            seccomp = None
            if self.seccomp:
                seccomp = data_fd(seccomp_program(), "bwrap-seccomp")
                stack.callback(os.close, seccomp)
            network = None
            if request.join_network is not None:
                network = open_network(request.join_network)
                stack.callback(os.close, network)
        except BaseException:
            os.close(info_read)
            raise
        return LaunchFds(args=args, info=info_write, seccomp=seccomp, network=network), info_read

    # --- parts of a run ---------------------------------------------------------------------

    def _enter_cgroup(self, stack: ExitStack, limits: Limits) -> RunCgroup | None:
        try:
            return stack.enter_context(create_cgroup(
                int(limits.memory_bytes), int(limits.max_processes), parent=self.cgroup_parent,
                cpus=self.cpu_set, loan=self.cpu_loan))
        except CgroupError:
            if self.require_cgroup:
                raise
            return None

    def _missing_tools(self) -> str | None:
        if shutil.which(self.bwrap) is None:
            return "bubblewrap is not installed: apt-get install bubblewrap"
        tools = ["prlimit"] + (["taskset"] if self.cpu_set else [])
        if os.geteuid() == 0:
            tools += ["unshare", "nsenter", "mount", "setpriv"]
        for tool in tools:
            if shutil.which(tool, path=TOOL_PATH) is None:
                return f"{tool} is not installed: apt-get install util-linux mount"
        return None


def sweep_leftovers(
    cgroup_parent: str = DEFAULT_PARENT,
    stage_root: str | None = None,
    run_root: str | None = None,
) -> list[Path]:
    """Remove the run cgroups, staging directories and run directories of killed graders.

    Run directories (:func:`~grader.sandbox.staging.create_run_dir`) are looked for in
    ``run_root``, by default the same directory as the stages: every bubblewrap run sweeps
    there first, so a grader that makes its run directories beside the stages never leaves
    them behind for long.

    Safe while other graders run on the host: only what a process that no longer exists made,
    and only cgroups with no process left, are removed (see :func:`sweep_cgroups`,
    :func:`sweep_stages`). Cheap: it lists a few directories. Never raises; returns the paths
    removed.
    """
    removed = sweep_cgroups(cgroup_parent) + sweep_stages(stage_root)
    removed += sweep_run_dirs(stage_root if run_root is None else run_root)
    for path in removed:
        logger.info("removed the leftover of a killed grader: %s", path)
    return removed
