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

**Idle CPUs lent** (``lease(borrow=True)``, ``LEND_IDLE_CPUS``): a run alone on the host would
train on its one slot while the other cores idle. So a run may also *borrow* the CPUs no run
holds (:class:`CpuLoan`): its sandboxes start confined to its slot and the borrowed CPUs, so
TensorFlow, which sizes its thread pools once when its first session or eager context starts,
sizes them to all of them. A run that then leases a slot holding a borrowed CPU takes it back
before its lease is handed out: the borrower's sandboxes are narrowed (a bubblewrap run's cgroup
cpuset written, the kernel moving every task of it off the CPUs it loses; a docker container
updated through the daemon's API), so no two runs share a CPU once a lease is given.
The books are files beside the slots' locks: a record per loan, ``loan-*.json`` (own CPUs,
borrowed CPUs, the walls of the borrower's sandboxes: :mod:`grader.sandbox.loan_records`), on
which the borrower holds a shared ``flock`` while it lives, and ``loans.lock``, held while
anything is borrowed, taken back or confined. A borrower that died leaves a record whose lock
nobody holds: the next take-back narrows what is left of it (a wall already gone is no error)
and deletes it. A warm-up (:meth:`CpuSlots.hold`) does not take a lent CPU back: work started
ahead waits for the run that uses it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from grader.sandbox.loan_records import (
    MAX_RECORD_BYTES,
    MAX_WALLS,
    CpusetFile,
    LoanRecord,
    Wall,
    confine_walls,
    narrow,
)

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
    """A slot held by this process: the run may use :attr:`cpus`, and no other run may;
    :attr:`loan`, the CPUs it borrowed besides (``lease(borrow=True)``), else ``None``."""

    cpus: tuple[int, ...]
    loan: CpuLoan | None = None

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
              prefer: Sequence[tuple[int, ...]] = (), *,
              borrow: bool = False) -> Iterator[CpuLease]:
        """Hold the first free slot until the block ends, trying the slots in ``prefer`` first
        (those with a warm kit); wait for one up to ``timeout`` seconds (``None``: as long as
        it takes). Raises :class:`NoFreeSlot` on the timeout. A CPU of the slot lent to
        another run is taken back first; ``borrow``: the lease also borrows every CPU of the
        other slots that nobody holds or borrows now (:attr:`CpuLease.loan`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        order = [s for s in prefer if s in self.slots]
        order += [s for s in self.slots if s not in order]
        while True:
            for slot in order:
                fds = self._try_slot(slot)
                if fds is not None:
                    loan = None
                    try:
                        take_back(self.lock_dir, slot)
                        if borrow:
                            others = [c for s in self.slots if s != slot for c in s]
                            loan = CpuLoan.open(self.lock_dir, slot, others)
                        yield CpuLease(slot, loan)
                    finally:
                        try:
                            if loan is not None:
                                loan.close()
                        finally:
                            _close_all(fds)
                    return
            if deadline is not None and time.monotonic() >= deadline:
                raise NoFreeSlot(f"no CPU slot of {len(self.slots)} came free in {timeout} s")
            time.sleep(POLL_SECONDS)

    @contextmanager
    def hold(self, slot: tuple[int, ...]) -> Iterator[CpuLease | None]:
        """Hold ``slot`` until the block ends if it is free now, else ``None`` (no wait). A slot
        one of whose CPUs is lent to a run is not free: it is not taken back for a warm-up."""
        fds = self._try_slot(slot)
        if fds is not None:
            with _loans_locked(self.lock_dir):
                lent = any(set(record.borrowed) & set(slot)
                           for record, _ in _records(self.lock_dir, reap=False))
            if lent:
                _close_all(fds)
                fds = None
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
                fd = _open_lock(self.lock_dir, cpu)
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


def _open_lock(lock_dir: Path, cpu: int) -> int:
    """The lock file of ``cpu`` (held ``LOCK_EX`` by the run whose slot has it), opened."""
    return os.open(lock_dir / f"cpu-{cpu}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _cpu_held(lock_dir: Path, cpu: int) -> bool:
    """Whether a slot holding ``cpu`` is leased or held now (by anyone, this process too)."""
    fd = _open_lock(lock_dir, cpu)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
    return False


# --- loans: idle CPUs lent to a run, taken back by the run that leases them ---------------------


class CpuLoan:
    """CPUs a run borrows beside its slot, for as long as nobody leases them (see the module's
    docstring). Made by :meth:`CpuSlots.lease`; closed when the lease ends."""

    def __init__(self, lock_dir: Path, path: Path, fd: int) -> None:
        self.lock_dir, self.path, self._fd = lock_dir, path, fd

    @classmethod
    def open(cls, lock_dir: Path, own: Sequence[int], candidates: Sequence[int]) -> CpuLoan:
        """Borrow those of ``candidates`` that no slot holds and no other loan has now."""
        with _loans_locked(lock_dir):
            lent = {c for record, _ in _records(lock_dir, reap=False) for c in record.borrowed}
            free = tuple(c for c in sorted(set(candidates) - set(own) - lent)
                         if not _cpu_held(lock_dir, c))
            path = lock_dir / f"loan-{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH)  # alive while this is held
            loan = cls(lock_dir, path, fd)
            loan._write(LoanRecord(own=tuple(own), borrowed=free))
        return loan

    def record(self) -> LoanRecord:
        """The loan now (a CPU may have been taken back since it was opened)."""
        with _loans_locked(self.lock_dir):
            return self._read()

    def confine(self, walls: Sequence[Path | Wall]) -> tuple[int, ...]:
        """Confine ``walls`` (a bubblewrap run's ``cpuset.cpus`` file, given as a path or a
        :class:`~grader.sandbox.loan_records.CpusetFile`; a docker container,
        :class:`~grader.sandbox.loan_records.ContainerCpus`) to the slot and the CPUs borrowed
        now, and narrow them whenever one is taken back; returns those CPUs. A wall that is
        gone (its run ended) is left out; one that cannot be widened raises ``OSError`` (after
        the others are recorded), and so do walls past the record's bound (none widened)."""
        asked = [CpusetFile(path=str(w)) if isinstance(w, Path) else w for w in walls]
        with _loans_locked(self.lock_dir):
            record = self._read()
            if len(record.walls) + len(asked) > MAX_WALLS:  # a record past it would not be read
                raise OSError(f"a loan records at most {MAX_WALLS} sandboxes")
            done, failed = confine_walls(asked, record.cpus, format_cpus(record.cpus))
            kept = {wall.model_dump_json(): wall for wall in (*record.walls, *done)}
            self._write(LoanRecord(own=record.own, borrowed=record.borrowed,
                                   walls=tuple(kept.values())))
        if failed:
            raise failed[0][1]
        return record.cpus

    def close(self) -> None:
        """Give back what is borrowed: the sandboxes still there narrowed to the slot, the
        record deleted. Idempotent."""
        if self._fd < 0:
            return
        try:
            with _loans_locked(self.lock_dir):
                record = self._read()
                narrow(record.walls, record.own, format_cpus(record.own))
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = -1

    def _read(self) -> LoanRecord:
        return LoanRecord.load(os.pread(self._fd, MAX_RECORD_BYTES + 1, 0))

    def _write(self, record: LoanRecord) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, record.dump(), 0)


def take_back(lock_dir: Path, cpus: Sequence[int]) -> None:
    """Take ``cpus`` back from every loan that borrows them (their sandboxes narrowed before
    this returns); the records of dead borrowers go. The caller holds the slots of ``cpus``."""
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _loans_locked(lock_dir):
        for record, path in _records(lock_dir, reap=True):
            if not set(record.borrowed) & set(cpus):
                continue
            kept = tuple(c for c in record.borrowed if c not in cpus)
            left = tuple(sorted({*record.own, *kept}))
            live = narrow(record.walls, left, format_cpus(left))
            _rewrite(path, LoanRecord(own=record.own, borrowed=kept, walls=live))


@contextmanager
def _loans_locked(lock_dir: Path) -> Iterator[None]:
    """The host's loans, held exclusively (briefly: no wait happens under it)."""
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock_dir / "loans.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _records(lock_dir: Path, *, reap: bool) -> list[tuple[LoanRecord, Path]]:
    """The live loans' records (under :func:`_loans_locked`). A dead borrower's record is
    skipped, or with ``reap`` its sandboxes narrowed to its own CPUs and the record deleted."""
    found = []
    for path in sorted(lock_dir.glob("loan-*.json")):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alive = False
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                alive = True
            try:
                record = LoanRecord.load(os.pread(fd, MAX_RECORD_BYTES + 1, 0))
            except ValueError:
                record = None  # a borrower that died while writing
            if alive and record is not None:
                found.append((record, path))
            elif not alive and reap:
                if record is not None:
                    narrow(record.walls, record.own, format_cpus(record.own))
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return found


def _rewrite(path: Path, record: LoanRecord) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.dump(), 0)
    finally:
        os.close(fd)
