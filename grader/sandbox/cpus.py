"""CPU slots: concurrent runs on one host each pinned to CPUs of their own.

Two gradings that share every core thrash: TensorFlow starts as many threads as it sees CPUs,
so two runs on two cores each run four busy threads on two cores and both take longer than
one after the other. Instead, the host's usable CPUs (:func:`usable_cpus`, the grader's own
affinity, so a grader already confined by a cpuset or ``taskset`` splits only what it has) are
split into *slots* (:func:`split_cpus`), one per concurrent run, and a run holds a slot for its
lifetime (:meth:`CpuSlots.lease`). The sandbox backends then confine the run to the slot's CPUs:
bubblewrap with the run's cgroup cpuset (the wall: a process inside cannot widen it with
``sched_setaffinity``), docker with the container's ``cpuset_cpus``.

How many runs at once: :func:`runs_per_host`, ``max(1, cpus // cores_per_run)``;
``cores_per_run`` is 1 by default (on two cores, two runs of one core each; see
``docs/sandbox.md``, "Parallel runs").

Leases hold across processes on one host (several ``flask worker`` processes, Celery's
prefork children): a slot is held by ``flock`` on one lock file per CPU in a runtime folder
(:func:`default_lock_dir`), so two layouts (two processes configured differently) still never
hand out the same CPU twice, and the kernel releases the locks when the holder dies, even by
``kill -9``. ``flock`` locks belong to an open file description, so two threads of one process
exclude each other too.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: How often a waiting :meth:`CpuSlots.lease` tries the slots again.
POLL_SECONDS = 0.2


class NoFreeSlot(TimeoutError):
    """Every slot stayed held for the whole wait."""


def usable_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on, in order (its affinity, not the machine's count)."""
    return tuple(sorted(os.sched_getaffinity(0)))


def runs_per_host(cpus: int, cores_per_run: int = 1) -> int:
    """How many runs go at once on ``cpus`` CPUs when each gets ``cores_per_run``: at least 1."""
    if cores_per_run < 1:
        raise ValueError(f"cores_per_run must be at least 1, got {cores_per_run}")
    return max(1, cpus // cores_per_run)


def split_cpus(cpus: Sequence[int], runs: int) -> tuple[tuple[int, ...], ...]:
    """``cpus`` in ``runs`` contiguous slots whose sizes differ by at most one, larger first.

    ``(0, 1), 2 -> ((0,), (1,))``; eight CPUs in three runs: 3, 3 and 2. More runs than CPUs
    is refused: slots would have to share CPUs, which is the thrashing they exist to avoid.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    ordered = tuple(sorted(set(cpus)))
    if len(ordered) < runs:
        raise ValueError(f"{runs} runs cannot each have CPUs of their own on "
                         f"{len(ordered)} CPU(s) {format_cpus(ordered)}")
    size, extra = divmod(len(ordered), runs)
    slots, start = [], 0
    for n in range(runs):
        end = start + size + (1 if n < extra else 0)
        slots.append(ordered[start:end])
        start = end
    return tuple(slots)


def format_cpus(cpus: Sequence[int]) -> str:
    """A CPU list as the kernel writes it (``0-3,6``): cgroup ``cpuset.cpus``, ``taskset -c``."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    n = 0
    while n < len(ordered):
        end = n
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        parts.append(str(ordered[n]) if end == n else f"{ordered[n]}-{ordered[end]}")
        n = end + 1
    return ",".join(parts)


def parse_cpus(text: str) -> tuple[int, ...]:
    """The CPUs of a kernel CPU list (``0-3,6``; empty: none), e.g. ``Cpus_allowed_list``."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return tuple(sorted(cpus))


def default_lock_dir() -> Path:
    """Where the slots' lock files live: ``/run/grader-cpus`` for root, else a folder of the
    user's in the temporary directory. Every grader of the host must use the same one."""
    if os.geteuid() == 0 and os.path.isdir("/run"):
        return Path("/run/grader-cpus")
    return Path(tempfile.gettempdir()) / f"grader-cpus-{os.geteuid()}"


@dataclass(frozen=True)
class CpuLease:
    """A slot held by this process: the run may use :attr:`cpus`, and no other run may."""

    cpus: tuple[int, ...]

    def __str__(self) -> str:
        return format_cpus(self.cpus)


class CpuSlots:
    """The slots of one host, leased to runs (thread-safe, and across processes).

    ``slots`` defaults to :func:`split_cpus` of :func:`usable_cpus` into ``runs`` slots.
    """

    def __init__(self, runs: int, *, cpus: Sequence[int] | None = None,
                 lock_dir: Path | None = None) -> None:
        self.slots = split_cpus(usable_cpus() if cpus is None else cpus, runs)
        self.lock_dir = lock_dir or default_lock_dir()
        self._guard = threading.Lock()

    @contextmanager
    def lease(self, timeout: float | None = None,
              prefer: Sequence[tuple[int, ...]] = ()) -> Iterator[CpuLease]:
        """Hold the first free slot until the block ends, trying the slots in ``prefer`` first
        (those with a warm kit); wait for one up to ``timeout`` seconds (``None``: as long as
        it takes). Raises :class:`NoFreeSlot` on the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        order = [s for s in prefer if s in self.slots]
        order += [s for s in self.slots if s not in order]
        while True:
            for slot in order:
                fds = self._try_slot(slot)
                if fds is not None:
                    try:
                        yield CpuLease(slot)
                    finally:
                        _close_all(fds)
                    return
            if deadline is not None and time.monotonic() >= deadline:
                raise NoFreeSlot(f"no CPU slot of {len(self.slots)} came free in {timeout} s")
            time.sleep(POLL_SECONDS)

    @contextmanager
    def hold(self, slot: tuple[int, ...]) -> Iterator[CpuLease | None]:
        """Hold ``slot`` until the block ends if it is free now, else ``None`` (no wait)."""
        fds = self._try_slot(slot)
        if fds is None:
            yield None
            return
        try:
            yield CpuLease(slot)
        finally:
            _close_all(fds)

    def _try_slot(self, slot: tuple[int, ...]) -> list[int] | None:
        """The locked files of every CPU of ``slot``, or ``None`` (nothing kept) when one of
        them is held."""
        with self._guard:
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fds: list[int] = []
            for cpu in slot:
                fd = os.open(self.lock_dir / f"cpu-{cpu}.lock",
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fds.append(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    _close_all(fds)
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                        return None
                    raise
            return fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)  # closing the last descriptor of the file releases its flock
