"""The bubblewrap backend: each run in fresh namespaces, as an unprivileged user, in its cgroup.

When the grader runs as root, one run is launched as::

    unshare --mount --propagation private -- sh -c '
        echo $$ > <run cgroup>/cgroup.procs       # join the cgroup before anything can fork
        mount --rbind <host source> <stage>/mN    # in the private namespace only, see below
        exec prlimit --cpu=.. --fsize=.. --core=0 -- \
             setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
                     --bounding-set=-all -- \
             bwrap --unshare-all --uid 1000 ... -- \
             sh -c 'printf x >&0; exec </dev/null; exec "$@"' sh <request argv>'

(the inner ``sh`` tells the host that bwrap's set-up succeeded, see :data:`STARTED_MARKER`),
so the command runs with no capabilities, as a host user that owns nothing, with no network
(only loopback, which the Jupyter kernel uses), seeing only ``/usr``, a few files of ``/etc``,
the Python runtime, the work directory and the request's mounts.

Why the staging mounts: unprivileged bubblewrap resolves every bind source with the
unprivileged user's rights, and the Python runtime or a pytest temporary directory often lies
under a directory that user cannot enter (``/root`` is mode 0700). Root bind-mounts each source
onto an empty directory under a world-traversable staging directory, in a mount namespace of
its own that vanishes with the run; bubblewrap binds from there. Only the parents' modes are
bypassed: the files themselves must still be readable by the sandbox user (or, for the work
directory, owned by it: it is chown'ed to ``host_uid`` before the run).

Without root, the same command runs without ``unshare``/``mount``/``setpriv`` (sources must
then be reachable by the caller) and the cgroup must be a delegated one (``cgroup_parent``).
"""

from __future__ import annotations

import os
import shlex
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
from grader.sandbox.cgroups import DEFAULT_PARENT, CgroupError, RunCgroup, create_cgroup
from grader.sandbox.unsafe import (
    MAX_LINE_BYTES,
    base_env,
    error_result,
    runtime_paths,
    stream_process,
)

#: Host directories shown read-only at the same path (symlinks, as in merged-/usr systems, are
#: recreated as symlinks).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Pieces of the host's ``/etc`` that Python, NumPy and TensorFlow read; bound when present.
ETC_PATHS = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/mime.types",
)
#: Targets a request may not mount over: the sandbox's own ``/proc`` and ``/dev``.
RESERVED_TARGETS = ("/proc", "/dev")
#: ``sh`` exits with this when joining the cgroup or a staging mount fails (before bwrap).
LAUNCH_FAILED = 125
#: Runs inside the sandbox before the command. It tells the host that set-up succeeded by
#: writing to its stdin, the write end of a pipe (bwrap reports its own set-up errors with the
#: same exit status 1 as many commands, and its status fd speaks before the mounts are made),
#: then gives the command /dev/null as stdin.
STARTED_MARKER = 'printf x >&0; exec </dev/null; exec "$@"'


@dataclass(frozen=True)
class _Bind:
    source: str
    target: str
    writable: bool


@dataclass
class BubblewrapSandbox:
    """Runs each request in a bubblewrap sandbox with cgroup limits (Debian's ``bubblewrap``).

    Every option below has a default that works on a Debian host where the grader runs as root.
    """

    #: The ``bwrap`` executable (a name looked up in ``PATH``, or a path).
    bwrap: str = "bwrap"
    #: Interpreter made available inside at the same path: its virtualenv and its base prefix
    #: are bound read-only (see :func:`~grader.sandbox.unsafe.runtime_paths`), after the
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
    #: ``None`` means :func:`tempfile.gettempdir`.
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
            stage = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="grader-bwrap-", dir=self.stage_root, ignore_cleanup_errors=True)))
            os.chmod(stage, 0o711)
            if as_root:
                _chown_tree(request.workdir, self.host_uid, self.host_gid)
            started_read, started_write = os.pipe()
            stack.callback(os.close, started_read)
            try:
                proc = subprocess.Popen(
                    self._launch_argv(request, cgroup, stage, as_root),
                    stdin=started_write,  # see STARTED_MARKER
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
        if not _read_available(started_read) and not outcome.timed_out:
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

    # --- building the command ---------------------------------------------------------------

    def _enter_cgroup(self, stack: ExitStack, limits: Limits) -> RunCgroup | None:
        try:
            return stack.enter_context(create_cgroup(
                int(limits.memory_bytes), int(limits.max_processes), parent=self.cgroup_parent))
        except CgroupError:
            if self.require_cgroup:
                raise
            return None

    def _launch_argv(
        self,
        request: SandboxRequest,
        cgroup: RunCgroup | None,
        stage: Path,
        as_root: bool,
    ) -> list[str]:
        script: list[str] = []
        for procs in cgroup.procs_files if cgroup else ():
            script.append(f"echo $$ > {shlex.quote(str(procs))} || exit {LAUNCH_FAILED}")
        binds = []
        for n, bind in enumerate(self._binds(request)):
            if as_root:
                staged = stage / f"m{n}"
                if os.path.isdir(bind.source):
                    staged.mkdir()
                else:
                    staged.touch()
                script.append(f"{_tool('mount')} --rbind {shlex.quote(bind.source)} "
                              f"{shlex.quote(str(staged))} || exit {LAUNCH_FAILED}")
                bind = _Bind(str(staged), bind.target, bind.writable)
            binds.append(bind)
        bwrap = [shutil.which(self.bwrap) or self.bwrap,
                 *self._bwrap_options(request, binds, _write_etc(stage, self)),
                 "--", "/bin/sh", "-c", STARTED_MARKER, "sh", *request.argv]
        limits = request.limits
        command = [
            _tool("prlimit"),
            f"--cpu={int(limits.cpu_seconds)}",
            f"--fsize={int(limits.file_size_bytes)}",
            "--core=0",
            "--",
        ]
        if as_root:
            command += [
                _tool("setpriv"),
                f"--reuid={self.host_uid}",
                f"--regid={self.host_gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]
        script.append("exec " + shlex.join(command + bwrap))
        shell = ["/bin/sh", "-c", "\n".join(script)]
        if not as_root:
            return shell
        return [_tool("unshare"), "--mount", "--propagation", "private", "--", *shell]

    def _binds(self, request: SandboxRequest) -> list[_Bind]:
        """Work directory and mounts in request order, then the runtime so nothing hides it."""
        binds = [_Bind(os.path.realpath(request.workdir), request.workdir_target, True)]
        binds += [_Bind(os.path.realpath(m.source), m.target, m.writable) for m in request.mounts]
        if self.python:
            binds += [
                _Bind(os.path.realpath(p), p, False)
                for p in runtime_paths(self.python)
                if not _under_any(p, self.system_paths)
            ]
        return binds

    def _bwrap_options(
        self, request: SandboxRequest, binds: list[_Bind], etc: Path
    ) -> list[str]:
        args = [
            "--unshare-all",  # user, ipc, pid, net (loopback only), uts, cgroup namespaces
            "--unshare-user",
            "--disable-userns",  # no nested user namespaces: less kernel surface for exploits
            "--die-with-parent",
            "--new-session",  # no TIOCSTI into a terminal
            "--cap-drop", "ALL",
            "--uid", str(self.sandbox_uid),
            "--gid", str(self.sandbox_gid),
            "--hostname", self.hostname,
        ]
        for path in self.system_paths:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for device in self.devices:
            args += ["--dev-bind-try", device, device]
        args += ["--tmpfs", "/tmp", "--tmpfs", self.home]
        for path in self.etc_paths:
            args += ["--ro-bind-try", path, path]
        for generated in sorted(etc.iterdir()):
            args += ["--ro-bind", str(generated), f"/etc/{generated.name}"]
        for bind in binds:
            args += ["--bind" if bind.writable else "--ro-bind", bind.source, bind.target]
        args += ["--chdir", request.workdir_target, "--clearenv"]
        env = base_env(self.home, "/tmp", self.python)
        env.update(request.env)
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args

    def _missing_tools(self) -> str | None:
        if shutil.which(self.bwrap) is None:
            return "bubblewrap is not installed: apt-get install bubblewrap"
        tools = ("unshare", "mount", "prlimit", "setpriv") if os.geteuid() == 0 else ("prlimit",)
        for tool in tools:
            if shutil.which(tool, path=_TOOL_PATH) is None:
                return f"{tool} is not installed: apt-get install util-linux mount"
        return None


_TOOL_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


def _tool(name: str) -> str:
    return shutil.which(name, path=_TOOL_PATH) or name


def _request_problem(request: SandboxRequest) -> str | None:
    if not request.argv:
        return "empty command"
    if not request.workdir.is_dir():
        return f"work directory does not exist: {request.workdir}"
    for target in [request.workdir_target, *(m.target for m in request.mounts)]:
        if not target.startswith("/") or os.path.normpath(target) != target or target == "/":
            return f"mount target must be a normalised absolute path below /: {target!r}"
        if _under_any(target, RESERVED_TARGETS):
            return f"mount target is reserved by the sandbox: {target}"
    for mount in request.mounts:
        if not os.path.exists(mount.source):
            return f"mount source does not exist: {mount.source}"
    return None


def _write_etc(stage: Path, sandbox: BubblewrapSandbox) -> Path:
    """The generated ``/etc`` files, in the staging directory (readable by the sandbox user)."""
    etc = stage / "etc"
    etc.mkdir(mode=0o711)
    uid, gid = sandbox.sandbox_uid, sandbox.sandbox_gid
    files = {
        "passwd": f"sandbox:x:{uid}:{gid}:sandbox:{sandbox.home}:/bin/sh\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"sandbox:x:{gid}:\nnogroup:x:65534:\n",
        "hosts": f"127.0.0.1\tlocalhost {sandbox.hostname}\n::1\tlocalhost ip6-localhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
        "hostname": f"{sandbox.hostname}\n",
    }
    for name, text in files.items():
        (etc / name).write_text(text)
        (etc / name).chmod(0o644)
    return etc


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


def _read_available(fd: int) -> bytes:
    """What is in the pipe ``fd`` now, without waiting."""
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


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


def _under_any(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)
