"""The command line that launches one bubblewrap run.

When the grader runs as root, one run is launched as::

    [nsenter --net=/proc/self/fd/N --]                # only to join another run's network
    unshare --mount --propagation private -- sh -c '
        echo $$ > <run cgroup>/cgroup.procs       # join the cgroup (and its cpuset) before forking
        mount --rbind <host source> <stage>/mN    # in the private namespace only, see below
        unset PWD
        exec prlimit --cpu=.. --fsize=.. --core=0 -- [taskset --cpu-list <slot>] \
             setpriv --reuid=<uid> --regid=<gid> --clear-groups --inh-caps=-all \
                     --bounding-set=-all -- \
             bwrap --args 3 -- \
             /bin/sh -c 'printf x >&0; exec </dev/null; exec "$@"' sh <request argv>'

(the inner ``sh`` tells the host that bwrap's set-up succeeded, see :data:`STARTED_MARKER`),
so the command runs with no capabilities, as a host user that owns nothing, with no network
(only loopback, which the Jupyter kernel uses), seeing only ``/usr``, a few files of ``/etc``,
the Python runtime, the work directory and the request's mounts.

``taskset`` pins the run only where no cgroup cpuset does: the kernel keeps a task's own
affinity as a wish it honours within its cpuset, so a run pinned by both could never be widened
by a loan of idle CPUs (:class:`~grader.sandbox.cpus.CpuLoan`).

``<uid>`` is the request's identity (:class:`~grader.sandbox.base.SandboxUser`): the student's
code and the grader's runner never share a host user.

Nothing of the host leaks in through the launch itself: every process of the chain starts
with an empty environment (``sh`` would export ``PWD``, hence the ``unset``), so the bwrap
process that is PID 1 inside has none in ``/proc/1/environ``; and bwrap's options, which name
staging paths, the seccomp filter and the environment of the command, come from a memfd
(``--args``), so ``/proc/1/cmdline`` shows only the command. The command's environment is
made from nothing (``--clearenv``, then ``--setenv``).

Why the staging mounts: unprivileged bubblewrap resolves every bind source with the
unprivileged user's rights, and the Python runtime or a pytest temporary directory often lies
under a directory that user cannot enter (``/root`` is mode 0700). Root bind-mounts each source
onto an empty directory under a world-traversable staging directory, in a mount namespace of
its own that vanishes with the run; bubblewrap binds from there. Only the parents' modes are
bypassed: the files themselves must still be readable by the sandbox user (or, for the work
directory, owned by it: it is given to the request's user, mode 0700, before the run).

Writable places other than the work directory are tmpfs of ``limits.scratch_bytes`` each
(``/tmp``, ``/dev/shm``, the home, and the work directory itself when the request has none);
the sandbox's root is remounted read-only after the mounts are made: a run cannot fill the
host's disk, nor its memory through a tmpfs without a size, and what it writes is gone with it.

Without root, the same command runs without ``nsenter``/``unshare``/``mount``/``setpriv``
(sources must then be reachable by the caller, every request runs as the caller, and joining
another run's network is impossible) and the cgroup must be a delegated one
(``cgroup_parent``).
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from grader.sandbox.base import SandboxRequest
from grader.sandbox.bwrap_settings import BwrapSettings
from grader.sandbox.cgroups import RunCgroup
from grader.sandbox.cpus import format_cpus
from grader.sandbox.process import base_env, runtime_paths
from grader.sandbox.request_checks import under_any
from grader.sandbox.staging import write_etc

#: ``sh`` exits with this when joining the cgroup or a staging mount fails (before bwrap).
LAUNCH_FAILED = 125
#: Runs inside the sandbox before the command. It tells the host that set-up succeeded by
#: writing to its stdin, the write end of a pipe (bwrap reports its own set-up errors with the
#: same exit status 1 as many commands, and its status fd speaks before the mounts are made),
#: then gives the command /dev/null as stdin.
STARTED_MARKER = 'printf x >&0; exec </dev/null; exec "$@"'

#: Where the host tools (``mount``, ``prlimit``, ...) are looked up, whatever ``PATH`` says.
TOOL_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
#: Namespaces a run that joins another run's network makes of its own (bwrap options).
JOINED_NAMESPACES = ("--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts",
                     "--unshare-cgroup-try", "--share-net")


@dataclass(frozen=True)
class LaunchFds:
    """File descriptors the launch passes down to bwrap (same numbers in every process)."""

    #: A memfd holding bwrap's options, NUL-separated (``--args``).
    args: int
    #: Write end of the pipe bwrap reports its child's pid on (``--info-fd``).
    info: int
    #: A memfd holding the seccomp BPF program (``--seccomp``), or ``None`` for no filter.
    seccomp: int | None = None
    #: An open ``/proc/<pid>/ns/net`` of the run to join (``nsenter``), or ``None``.
    network: int | None = None

    def all(self) -> tuple[int, ...]:
        """Every descriptor, for ``Popen(pass_fds=...)``."""
        return tuple(fd for fd in (self.args, self.info, self.seccomp, self.network)
                     if fd is not None)


@dataclass(frozen=True)
class Bind:
    """A host path (``source``) bound at ``target`` inside the sandbox."""

    source: str
    target: str
    writable: bool


def launch_argv(
    sandbox: BwrapSettings,
    request: SandboxRequest,
    cgroup: RunCgroup | None,
    stage: Path,
    as_root: bool,
    fds: LaunchFds,
) -> tuple[list[str], list[str]]:
    """The argv that runs ``request`` in ``sandbox``'s jail, joining ``cgroup`` first, and the
    bwrap options to write into ``fds.args``.

    ``stage`` (see :mod:`grader.sandbox.staging`) receives the generated ``/etc`` files and,
    when ``as_root``, the empty mount points that sources are bound onto.
    """
    script: list[str] = []
    for procs in cgroup.procs_files if cgroup else ():
        script.append(f"echo $$ > {shlex.quote(str(procs))} || exit {LAUNCH_FAILED}")
    binds = []
    for n, bind in enumerate(_binds(sandbox, request)):
        if as_root:
            staged = stage / f"m{n}"
            if os.path.isdir(bind.source):
                staged.mkdir()
            else:
                staged.touch()
            script.append(f"{tool('mount')} --rbind {shlex.quote(bind.source)} "
                          f"{shlex.quote(str(staged))} || exit {LAUNCH_FAILED}")
            bind = Bind(str(staged), bind.target, bind.writable)
        binds.append(bind)
    options = _bwrap_options(sandbox, request, binds, _write_etc(sandbox, stage))
    options += ["--info-fd", str(fds.info)]
    if fds.seccomp is not None:
        options += ["--seccomp", str(fds.seccomp)]
    bwrap = [shutil.which(sandbox.bwrap) or sandbox.bwrap, "--args", str(fds.args),
             "--", "/bin/sh", "-c", STARTED_MARKER, "sh", *request.argv]
    limits = request.limits
    command = [
        tool("prlimit"),
        f"--cpu={int(limits.cpu_seconds)}",
        f"--fsize={int(limits.file_size_bytes)}",
        "--core=0",
        "--",
    ]
    # the pin without a cgroup cpuset; with one, taskset would be kept by the kernel as the
    # tasks' own narrower wish when a loan widens the cpuset (a warm kit lent more CPUs)
    if sandbox.cpu_set and (cgroup is None or cgroup.cpuset_dir is None):
        command += [tool("taskset"), "--cpu-list", format_cpus(sandbox.cpu_set)]
    if as_root:
        uid, gid = sandbox.host_ids(request.user)
        command += [
            tool("setpriv"),
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    script.append("unset PWD")  # the only variable sh exports unasked
    script.append("exec " + shlex.join(command + bwrap))
    shell = ["/bin/sh", "-c", "\n".join(script)]
    if not as_root:
        return shell, options
    argv = [tool("unshare"), "--mount", "--propagation", "private", "--", *shell]
    if fds.network is not None:
        argv = [tool("nsenter"), f"--net=/proc/self/fd/{fds.network}", "--", *argv]
    return argv, options


def write_args(fd: int, options: list[str]) -> None:
    """Write ``options`` into the memfd ``fd`` as ``--args`` reads them (NUL-separated)."""
    _write_all(fd, b"".join(option.encode() + b"\0" for option in options))


def data_fd(data: bytes, name: str) -> int:
    """A memfd (no file on disk, any size) holding ``data``, positioned at its start."""
    fd = os.memfd_create(name)  # close-on-exec: only Popen's pass_fds hands it down
    try:
        _write_all(fd, data)
    except OSError:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)


def _binds(sandbox: BwrapSettings, request: SandboxRequest) -> list[Bind]:
    """Work directory and mounts in request order, then the runtime so nothing hides it."""
    binds = []
    if request.workdir is not None:
        binds.append(Bind(os.path.realpath(request.workdir), request.workdir_target, True))
    binds += [Bind(os.path.realpath(m.source), m.target, m.writable) for m in request.mounts]
    if sandbox.python:
        binds += [
            Bind(os.path.realpath(p), p, False)
            for p in runtime_paths(sandbox.python)
            if not under_any(p, sandbox.system_paths)
        ]
    return binds


def _bwrap_options(
    sandbox: BwrapSettings, request: SandboxRequest, binds: list[Bind], etc: Path
) -> list[str]:
    if request.join_network is None:
        # user, ipc, pid, net (loopback only), uts, cgroup namespaces
        namespaces = ["--unshare-all", "--unshare-user"]
    else:
        namespaces = list(JOINED_NAMESPACES)
    args = [
        *namespaces,
        "--disable-userns",  # no nested user namespaces: less kernel surface for exploits
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into a terminal
        "--cap-drop", "ALL",
        "--uid", str(sandbox.sandbox_uid),
        "--gid", str(sandbox.sandbox_gid),
        "--hostname", sandbox.hostname,
    ]
    for path in sandbox.system_paths:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for device in sandbox.devices:
        args += ["--dev-bind-try", device, device]
    scratch = str(int(request.limits.scratch_bytes))
    args += ["--size", scratch, "--tmpfs", "/dev/shm"]
    args += ["--size", scratch, "--tmpfs", "/tmp", "--size", scratch, "--tmpfs", sandbox.home]
    for path in sandbox.etc_paths:
        args += ["--ro-bind-try", path, path]
    for generated in sorted(etc.iterdir()):
        args += ["--ro-bind", str(generated), f"/etc/{generated.name}"]
    if request.workdir is None:
        args += ["--size", scratch, "--tmpfs", request.workdir_target]
    for bind in binds:
        args += ["--bind" if bind.writable else "--ro-bind", bind.source, bind.target]
    args += ["--remount-ro", "/"]  # the root tmpfs itself takes no writes: only the sized ones
    args += ["--chdir", request.workdir_target, "--clearenv"]
    env = base_env(sandbox.home, "/tmp", sandbox.python)
    env.update(request.env)
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


def _write_etc(sandbox: BwrapSettings, stage: Path) -> Path:
    return write_etc(stage, uid=sandbox.sandbox_uid, gid=sandbox.sandbox_gid, home=sandbox.home,
                     hostname=sandbox.hostname)


def tool(name: str) -> str:
    """The host tool ``name`` as an absolute path (from :data:`TOOL_PATH`) when found."""
    return shutil.which(name, path=TOOL_PATH) or name
