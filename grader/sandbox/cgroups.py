"""Per-run control groups: the memory and process limits of one sandboxed run.

A run gets its own cgroup, ``<hierarchy>/<parent>/run-<owner>-<random>``, made by
:func:`create_cgroup` and always removed when the ``with`` block ends, after every process left
in it has been killed. The first process of the run joins it *before* it execs anything (see
:attr:`RunCgroup.procs_files`), so no child can escape the limits.

A grader killed with SIGKILL never reaches that ``finally``: its empty cgroups stay behind.
:func:`sweep_cgroups` removes them, telling them from live runs' by the ``<owner>`` in their
name (the grader's pid, see :func:`~grader.sandbox.process.owner_tag`).

Both layouts are handled:

* cgroup v1 (legacy or hybrid): the ``memory`` and ``pids`` controllers are separate
  hierarchies, e.g. ``/sys/fs/cgroup/memory`` and ``/sys/fs/cgroup/pids``; the run gets one
  directory in each.
* cgroup v2 (unified): one hierarchy; ``memory`` and ``pids`` are enabled in the
  ``cgroup.subtree_control`` of every ancestor of the run's directory.

A run given CPUs (``create_cgroup(cpus=...)``, a slot of :mod:`grader.sandbox.cpus`) is also
confined to them by the ``cpuset`` controller (v1: a directory in the ``cpuset`` hierarchy,
whose ``cpuset.cpus`` and ``cpuset.mems`` are filled from the parent's before the run's are
set; v2: ``cpuset`` enabled like ``memory``). The kernel intersects any ``sched_setaffinity``
of a process inside with its cpuset, so the run cannot widen it.

Errors:

    CgroupError      cgroups cannot be used here (not root, read-only, controller missing...);
                     the sandbox turns it into ``SandboxResult(sandbox_error=...)``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grader.sandbox.cpus import CpuLoan, format_cpus
from grader.sandbox.process import owner_gone, owner_tag

logger = logging.getLogger(__name__)

MOUNTS_FILE = Path("/proc/self/mounts")
#: Directory (relative to each hierarchy's root) that holds the runs' cgroups; kept between runs
#: because concurrent runs share it.
DEFAULT_PARENT = "grader"
#: How long :meth:`RunCgroup.remove` keeps killing and retrying ``rmdir`` before giving up.
REMOVE_TIMEOUT = 2.0

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
#: The default name of a run's cgroup; group 1 is the :func:`owner_tag` of the grader.
_RUN_NAME = re.compile(r"run-(\d+-\d+)-[0-9a-f]+")


class CgroupError(Exception):
    """cgroups cannot be used: the reason says what failed and how to fix it."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        super().__init__(reason if path is None else f"{reason}: {path}")
        self.reason = reason
        self.path = path


@dataclass(frozen=True)
class CgroupLayout:
    """Where the ``memory`` and ``pids`` controllers live on this machine."""

    version: Literal[1, 2]
    #: Mount point of the hierarchy holding ``memory`` (v2: the unified hierarchy).
    memory_root: Path
    #: Mount point of the hierarchy holding ``pids`` (v2: the same as ``memory_root``).
    pids_root: Path
    #: Mount point of the hierarchy holding ``cpuset``, or ``None`` where it is not available
    #: (v2: ``memory_root`` when the controller is listed there).
    cpuset_root: Path | None = None


def parse_mounts(text: str) -> tuple[dict[str, Path], list[Path]]:
    """v1 controller name -> mount point, and the cgroup2 mount points, from a mounts table."""
    v1: dict[str, Path] = {}
    v2: list[Path] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mount_point = Path(fields[1].replace("\\040", " "))
        if fields[2] == "cgroup2":
            v2.append(mount_point)
        elif fields[2] == "cgroup":
            for option in fields[3].split(","):
                v1.setdefault(option, mount_point)
    return v1, v2


def find_layout(mounts_file: Path = MOUNTS_FILE) -> CgroupLayout:
    """The hierarchies to use: v1 when it has ``memory`` and ``pids``, else a v2 that has both."""
    try:
        v1, v2 = parse_mounts(mounts_file.read_text())
    except OSError as exc:
        raise CgroupError(f"cannot read the mount table ({exc.strerror})", mounts_file) from exc
    if "memory" in v1 and "pids" in v1:
        return CgroupLayout(1, v1["memory"], v1["pids"], v1.get("cpuset"))
    for mount_point in v2:
        try:
            controllers = (mount_point / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if {"memory", "pids"} <= set(controllers):
            cpuset = mount_point if "cpuset" in controllers else None
            return CgroupLayout(2, mount_point, mount_point, cpuset)
    raise CgroupError("no cgroup hierarchy with the memory and pids controllers is mounted")


def parse_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``memory.events``, ``memory.oom_control``) as a dict."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


class RunCgroup:
    """The cgroup of one run (one directory per hierarchy; one in all on v2)."""

    def __init__(self, layout: CgroupLayout, memory_dir: Path, pids_dir: Path,
                 cpuset_dir: Path | None = None) -> None:
        self.layout = layout
        self.memory_dir = memory_dir
        self.pids_dir = pids_dir
        #: The directory confining the run to its CPUs, or ``None`` (not confined).
        self.cpuset_dir = cpuset_dir

    @property
    def dirs(self) -> tuple[Path, ...]:
        """Every directory of this cgroup (two or three on v1, one on v2)."""
        cpuset = (self.cpuset_dir,) if self.cpuset_dir is not None else ()
        return tuple(dict.fromkeys((self.memory_dir, self.pids_dir, *cpuset)))

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """Files a process writes its own pid into to join the cgroup (before exec'ing)."""
        return tuple(d / "cgroup.procs" for d in self.dirs)

    def add_pid(self, pid: int) -> None:
        """Move process ``pid`` into the cgroup (its later children are born inside)."""
        for procs in self.procs_files:
            _write(procs, str(pid))

    def pids(self) -> set[int]:
        """Processes currently in the cgroup."""
        found: set[int] = set()
        for procs in self.procs_files:
            try:
                found.update(int(p) for p in procs.read_text().split())
            except OSError:
                continue
        return found

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup, including ones forked while killing."""
        kill_file = self.memory_dir / "cgroup.kill"
        if self.layout.version == 2 and kill_file.exists():
            try:
                _write(kill_file, "1")
                return
            except CgroupError:
                pass  # fall back to signalling each process
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.001)

    def peak_memory_bytes(self) -> int | None:
        """Highest memory use of the run so far, or None where the kernel does not track it."""
        name = "memory.max_usage_in_bytes" if self.layout.version == 1 else "memory.peak"
        try:
            return int((self.memory_dir / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def oom_killed(self, exit_signal: int | None = None) -> bool:
        """Whether the kernel's OOM killer ran in this cgroup.

        v1 kernels older than 4.13 have no ``oom_kill`` counter; there the limit having been hit
        (``memory.failcnt``) together with a SIGKILL death is the best available sign.
        """
        if self.layout.version == 2:
            return self._counter("memory.events", "oom_kill") > 0
        oom_control = self._read_keyed("memory.oom_control")
        if "oom_kill" in oom_control:
            return oom_control["oom_kill"] > 0
        failcnt = self._read_int("memory.failcnt")
        return failcnt > 0 and exit_signal == signal.SIGKILL

    def remove(self, timeout: float = REMOVE_TIMEOUT) -> None:
        """Kill what is left and delete the directories, retrying while processes exit."""
        deadline = time.monotonic() + timeout
        for directory in self.dirs:
            while True:
                self.kill_all()
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        reason = f"cannot remove cgroup ({exc.strerror})"
                        raise CgroupError(reason, directory) from exc
                    time.sleep(0.01)

    def _read_keyed(self, name: str) -> dict[str, int]:
        try:
            return parse_keyed((self.memory_dir / name).read_text())
        except OSError:
            return {}

    def _counter(self, name: str, key: str) -> int:
        return self._read_keyed(name).get(key, 0)

    def _read_int(self, name: str) -> int:
        try:
            return int((self.memory_dir / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0


@contextmanager
def create_cgroup(
    memory_bytes: int,
    max_processes: int,
    *,
    parent: str = DEFAULT_PARENT,
    name: str | None = None,
    layout: CgroupLayout | None = None,
    cpus: tuple[int, ...] = (),
    loan: CpuLoan | None = None,
) -> Iterator[RunCgroup]:
    """A fresh cgroup limited to ``memory_bytes`` (swap included) and ``max_processes`` tasks,
    and to the CPUs ``cpus`` when given (empty: every CPU of the parent); with ``loan``, to
    ``cpus`` and the CPUs borrowed now, narrowed as they are taken back
    (:class:`~grader.sandbox.cpus.CpuLoan`).

    ``parent`` is a path relative to each hierarchy's root (e.g. a directory delegated to the
    grader's service); ``name`` defaults to a random id. Raises :class:`CgroupError` when the
    cgroup cannot be made (also when ``cpus`` are asked for and no ``cpuset`` controller is
    mounted). On exit every process in it is killed and its directories removed.
    """
    run_name = name or f"run-{owner_tag()}-{uuid.uuid4().hex[:12]}"
    if not _NAME.fullmatch(run_name) or run_name in (".", ".."):
        raise CgroupError(f"invalid cgroup name {run_name!r}")
    parent_parts = _parent_parts(parent)
    layout = layout or find_layout()
    cpuset_dir = None
    if cpus:
        if layout.cpuset_root is None:
            raise CgroupError("no cgroup hierarchy with the cpuset controller is mounted: "
                              "runs cannot be pinned to their CPUs")
        cpuset_dir = layout.cpuset_root.joinpath(*parent_parts, run_name)
    cgroup = RunCgroup(
        layout,
        layout.memory_root.joinpath(*parent_parts, run_name),
        layout.pids_root.joinpath(*parent_parts, run_name),
        cpuset_dir,
    )
    try:
        if layout.version == 1:
            _make_v1(cgroup, memory_bytes, max_processes)
        else:
            _make_v2(cgroup, parent_parts, memory_bytes, max_processes)
        if cpus:
            _confine_cpus(cgroup, parent_parts, cpus, loan)
        yield cgroup
    finally:
        try:
            cgroup.remove()
        except CgroupError as exc:
            logger.warning("cgroup left behind: %s", exc)


def sweep_cgroups(
    parent: str = DEFAULT_PARENT, *, layout: CgroupLayout | None = None
) -> list[Path]:
    """Remove the run cgroups under ``parent`` left by graders that were killed; never raises.

    A cgroup goes only when the grader named in it is gone *and* its ``cgroup.procs`` is empty.
    An empty cgroup of a live grader stays: it is empty between its creation and the first
    process joining, and between the run's end and the reading of its OOM counter. Cgroups not
    named by :func:`create_cgroup` (``name=``, or an older version's pid-less names) are never
    touched. Returns the directories removed (one per hierarchy on v1).
    """
    try:
        parent_parts = _parent_parts(parent)
        layout = layout or find_layout()
    except CgroupError:
        return []
    removed: list[Path] = []
    cpuset = (layout.cpuset_root,) if layout.cpuset_root is not None else ()
    for root in dict.fromkeys((layout.memory_root, layout.pids_root, *cpuset)):
        try:
            entries = list(os.scandir(root.joinpath(*parent_parts)))
        except OSError:
            continue
        for entry in entries:
            match = _RUN_NAME.fullmatch(entry.name)
            if not match or not entry.is_dir(follow_symlinks=False) or not owner_gone(match[1]):
                continue
            directory = Path(entry.path)
            try:
                if (directory / "cgroup.procs").read_text().split():
                    logger.warning("cgroup of a dead grader still has processes: %s", directory)
                    continue
                directory.rmdir()  # the kernel refuses (EBUSY) if a process joined meanwhile
            except FileNotFoundError:
                continue  # another grader's sweep was quicker
            except OSError as exc:
                logger.warning("stale cgroup not removed (%s): %s", exc.strerror, directory)
                continue
            removed.append(directory)
    return removed


def _parent_parts(parent: str) -> list[str]:
    parts = [p for p in parent.split("/") if p]
    if any(not _NAME.fullmatch(p) or p in (".", "..") for p in parts):
        raise CgroupError(f"invalid cgroup parent {parent!r}")
    return parts


def _make_v1(cgroup: RunCgroup, memory_bytes: int, max_processes: int) -> None:
    for directory in cgroup.dirs:
        if directory == cgroup.cpuset_dir:
            continue  # made by _confine_cpus, parents first
        _mkdir(directory)
    _write(cgroup.memory_dir / "memory.limit_in_bytes", str(memory_bytes))
    # Without swap accounting (``swapaccount=0``) these files are missing: then only RAM is
    # limited, which is what hosts without swap have anyway.
    _write_optional(cgroup.memory_dir / "memory.memsw.limit_in_bytes", str(memory_bytes))
    _write_optional(cgroup.memory_dir / "memory.swappiness", "0")
    _write(cgroup.pids_dir / "pids.max", str(max_processes))


def _make_v2(
    cgroup: RunCgroup, parent_parts: list[str], memory_bytes: int, max_processes: int
) -> None:
    directory = cgroup.layout.memory_root
    _enable_controllers(directory)
    for part in parent_parts:
        directory = directory / part
        _mkdir(directory, exist_ok=True)
        _enable_controllers(directory)
    _mkdir(cgroup.memory_dir)
    _write(cgroup.memory_dir / "memory.max", str(memory_bytes))
    _write_optional(cgroup.memory_dir / "memory.swap.max", "0")
    _write(cgroup.memory_dir / "pids.max", str(max_processes))


def _confine_cpus(cgroup: RunCgroup, parent_parts: list[str], cpus: tuple[int, ...],
                  loan: CpuLoan | None) -> None:
    """Pin the run's cgroup to ``cpus``, and those borrowed by ``loan`` (before any process
    joins it)."""
    root, directory = cgroup.layout.cpuset_root, cgroup.cpuset_dir
    assert root is not None and directory is not None
    if cgroup.layout.version == 2:
        _enable_controllers(root, {"cpuset"})
        for n in range(len(parent_parts)):
            _enable_controllers(root.joinpath(*parent_parts[:n + 1]), {"cpuset"})
        _write_cpus(directory, cpus, loan)
        return
    # v1: a new cpuset is empty (no CPU, no memory node) and takes no task until both are
    # set, and a child's must lie within its parent's: fill each new ancestor from its parent
    current = root
    for part in parent_parts:
        current = current / part
        _mkdir(current, exist_ok=True)
        _inherit_cpuset(current)
    _mkdir(directory)
    _write(directory / "cpuset.mems", _read(directory.parent / "cpuset.mems"))
    _write_cpus(directory, cpus, loan)


def _write_cpus(directory: Path, cpus: tuple[int, ...], loan: CpuLoan | None) -> None:
    if loan is None:
        _write(directory / "cpuset.cpus", format_cpus(cpus))
        return
    try:
        loan.confine([directory / "cpuset.cpus"])
    except OSError as exc:
        raise CgroupError(f"cannot confine to the lent CPUs ({exc.strerror})",
                          directory / "cpuset.cpus") from exc


def _inherit_cpuset(directory: Path) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not _read(directory / name):
            _write(directory / name, _read(directory.parent / name))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise CgroupError(f"cannot read ({exc.strerror})", path) from exc


def _enable_controllers(directory: Path, wanted: set[str] | None = None) -> None:
    control = directory / "cgroup.subtree_control"
    try:
        enabled = set(control.read_text().split())
    except OSError as exc:
        raise CgroupError(f"cannot read cgroup controls ({exc.strerror})", control) from exc
    missing = (wanted or {"memory", "pids"}) - enabled
    if missing:
        # EBUSY here means processes live in ``directory`` itself (v2 forbids controllers on a
        # cgroup with processes); the fix is a dedicated parent, e.g. a systemd Delegate= unit.
        _write(control, " ".join(f"+{c}" for c in sorted(missing)))


def _mkdir(directory: Path, *, exist_ok: bool = False) -> None:
    try:
        if directory.parent.name and not directory.parent.exists():
            directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(exist_ok=exist_ok)
    except OSError as exc:
        raise CgroupError(
            f"cannot create cgroup ({exc.strerror}; the grader needs root or a delegated cgroup)",
            directory,
        ) from exc


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} ({exc.strerror})", path) from exc


def _write_optional(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        logger.debug("optional cgroup setting %s=%s not applied: %s", path, value, exc)
