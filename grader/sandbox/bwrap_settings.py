"""What a bubblewrap sandbox is made of: its users, hostname, home and the host paths it shows.

Shared by the backend (:mod:`grader.sandbox.bwrap`, which adds cgroups, staging and seccomp)
and the command line it launches (:mod:`grader.sandbox.launch`), which reads only these
settings: kept apart so that the launch does not import the backend that calls it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from grader.sandbox.base import SandboxUser
from grader.sandbox.cpus import CpuLoan

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


@dataclass
class BwrapSettings:
    """Who and what a sandbox sees; the fields of :class:`~grader.sandbox.bwrap.BubblewrapSandbox`
    that its command line is built from."""

    #: The ``bwrap`` executable (a name looked up in ``PATH``, or a path).
    bwrap: str = "bwrap"
    #: Interpreter made available inside at the same path: its virtualenv and its base prefix
    #: are bound read-only (see :func:`~grader.sandbox.process.runtime_paths`), after the
    #: request's mounts so none hides them; its ``bin`` leads ``PATH``. ``None``
    #: binds no runtime: the request's mounts must then bring one.
    python: str | None = sys.executable
    #: Host user and group of the student's code (``SandboxUser.STUDENT``) when the grader is
    #: root (``nobody`` by default; a dedicated unused id is better on a shared host).
    host_uid: int = 65534
    host_gid: int = 65534
    #: Host user and group of the grader's own sandboxed code (``SandboxUser.GRADER``: the
    #: runner driving the student's kernel, the clean room). 65533 is unused on Debian (just
    #: below ``nobody``); any id that owns no file and is not ``host_uid`` will do. Running as
    #: another user is what keeps the student's processes from signalling, tracing or reading
    #: the grader's where their sandboxes share a network namespace.
    grader_uid: int = 65533
    grader_gid: int = 65533
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
    #: CPUs the run is confined to (a slot of :class:`~grader.sandbox.cpus.CpuSlots`): the
    #: run's cgroup cpuset, which a process inside cannot widen, and ``taskset`` before the
    #: exec (the only pin where no cgroup is made, ``require_cgroup=False``). Empty: every CPU.
    cpu_set: tuple[int, ...] = ()
    #: CPUs the run borrows besides ``cpu_set`` while nobody leases them (the run's cgroups
    #: start confined to both, and are narrowed when one is taken back); ``None``: none.
    #: Only with a cgroup cpuset: without one, the run keeps to ``cpu_set``.
    cpu_loan: CpuLoan | None = None

    def __post_init__(self) -> None:
        if self.grader_uid == self.host_uid:
            raise ValueError(f"grader_uid must differ from host_uid (both {self.host_uid}): "
                             "the student's code must not run as the grader's user")

    def host_ids(self, user: SandboxUser) -> tuple[int, int]:
        """The host ``(uid, gid)`` a request of ``user`` runs as (when the grader is root)."""
        if user == SandboxUser.GRADER:
            return self.grader_uid, self.grader_gid
        return self.host_uid, self.host_gid

