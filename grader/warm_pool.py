"""Kits started ahead of demand, so that a submission finds its sandboxes ready.

A :class:`WarmPool` keeps, for each exercise it is given and each CPU slot of the host,
``size`` kits (:mod:`grader.kit`) whose kernel runs, whose bootstrap is done (TensorFlow
imported) and whose clean room has imported TensorFlow, all waiting for their plans. A worker
that holds a slot takes the kit made for that slot (:meth:`WarmPool.take`) and hands it its
submission; the kit is closed after that one run, and a background thread starts another.

What the pool promises:

- **One kit per submission.** :meth:`WarmPool.take` removes the kit from the pool; a kit refuses
  a second hand-over; :meth:`grader.kit.Kit.close` kills its sandboxes and removes its folder.
  Nothing of one student can reach the next: every kit has its own sandboxes (PID, network,
  mount namespaces, its own ``/tmp`` and home, a fresh message key), made before anybody's
  notebook came.
- **Refilled in the background, without stealing a run's CPUs.** The filler warms a kit for a
  slot only while it can hold that slot itself (:meth:`~grader.sandbox.cpus.CpuSlots.hold`), so
  a warm-up never shares CPUs with a run being graded; a worker waiting for that slot gets it
  once the kit is ready, and then the kit. A slot whose CPUs are lent to a lone run (its idle
  cores borrowed, ``LEND_IDLE_CPUS``) is not free either: the warm-up waits for that run.
- **Bounded by memory.** A kit is started only while ``MemAvailable`` stays above
  ``min_available_bytes`` plus :data:`KIT_MEMORY` (what a warm kit holds, measured: see
  ``docs/sandbox.md``, "Warm pool").
- **Fresh.** A kit that waited ``max_idle`` seconds, or one of whose sandboxes died, is closed
  and replaced (its sandboxes' wall clocks allow that wait and no more).
- **Only what is wanted.** ``exercises`` is a list, or a function the filler asks once per
  pass (:data:`FILL_INTERVAL`) for the exercises worth keeping kits for now (the service's:
  those open for submissions, ``service/queue/warm_kits.py``; its pool is owned by the worker
  process's grading host, ``service/queue/host.py``). Kits of an exercise that left
  that list are closed; a function that fails leaves the last list in force.
- **Nothing left behind.** :meth:`WarmPool.close` closes every kit, and waits for the kits
  taken from it that their takers close in the background (:attr:`WarmPool.closers`); a
  grader killed with ``kill -9`` leaves what any killed grader leaves, which the backends
  clean up: bubblewrap's sandboxes die with their parent and the next run sweeps the cgroups
  and folders
  (:func:`grader.sandbox.sweep_leftovers`), docker's watchdog and reaper remove the containers.

Kits for GPU runs are not kept: a device is leased per run, and a run with one starts cold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from grader.config import GraderConfig
from grader.data import evaluation_images, evaluation_labels
from grader.kit import Kit, KitClosers, KitKey, start_kit
from grader.limits import GiB
from grader.sandbox.base import Sandbox
from grader.sandbox.cpus import CpuSlots

logger = logging.getLogger(__name__)

#: Memory a warm kit holds (kernel with TensorFlow imported, runner, clean room): measured
#: about 1.0 GiB on the lecture's exercise; a margin on top.
KIT_MEMORY = int(1.5 * GiB)
#: How long a kit may take to become ready before it is given up.
WARM_UP_TIMEOUT = 180.0
#: How often the filler looks at the pool when nothing wakes it.
FILL_INTERVAL = 1.0
#: How often the filler asks a function ``exercises`` which exercises are wanted.
WANTED_INTERVAL = 30.0
#: How long the filler waits after a warm-up failed before trying that key again.
RETRY_AFTER = 30.0


@dataclass(frozen=True)
class PoolSettings:
    """How many kits, how long they may wait, how much memory must stay free."""

    #: Kits kept per exercise and CPU slot (0: no pool).
    size: int = 1
    #: Seconds a kit may wait for a submission before it is replaced.
    max_idle: float = 900.0
    #: ``MemAvailable`` the host keeps after starting a kit.
    min_available_bytes: int = 4 * GiB


@dataclass(frozen=True)
class PoolStats:
    """The pool in numbers, for ``/metrics`` and the benchmarks."""

    ready: int
    warming: int
    taken: int
    retired: int
    failed: int


class WarmPool:
    """Warm kits for ``exercises`` (a list, or a function giving the list wanted now), per
    slot of ``slots`` (or one unpinned set when ``None``); ``sandbox_for(cpus)`` gives the
    backend pinned to those CPUs."""

    def __init__(
        self,
        config: GraderConfig,
        exercises: Sequence[str] | Callable[[], Sequence[str]],
        sandbox_for: Callable[[tuple[int, ...]], Sandbox],
        *,
        slots: CpuSlots | None = None,
        settings: PoolSettings | None = None,
        available_memory: Callable[[], int | None] | None = None,
    ) -> None:
        self.config = config
        self._wanted = exercises if callable(exercises) else None
        #: The exercises kits are kept for (a function's last answer).
        self.exercises: tuple[str, ...] = () if callable(exercises) else tuple(exercises)
        self.sandbox_for = sandbox_for
        self.slots = slots
        self.settings = settings or PoolSettings()
        self.available_memory = available_memory or mem_available
        self._kits: list[Kit] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._warming = 0
        self._taken = self._retired = self._failed = 0
        self._failed_at: dict[KitKey, float] = {}
        self._asked_at: float | None = None
        #: The kits taken from the pool and used, closing in the background (the taker hands
        #: them to :meth:`Kit.close`); :meth:`close` waits for them.
        self.closers = KitClosers()

    # --- for workers --------------------------------------------------------------------------

    def keys(self) -> list[KitKey]:
        """Every (exercise, slot) the pool keeps kits for."""
        cpu_sets = list(self.slots.slots) if self.slots is not None else [()]
        return [KitKey(exercise, cpus) for exercise in self.exercises for cpus in cpu_sets]

    def take(self, exercise: str, cpus: tuple[int, ...] = ()) -> Kit | None:
        """A ready kit for ``exercise`` pinned to ``cpus``, now yours to hand one submission
        (and to close); ``None`` when there is none (start one cold)."""
        key = KitKey(exercise, tuple(cpus))
        with self._lock:
            for kit in list(self._kits):
                if kit.key == key and kit.ready():
                    self._kits.remove(kit)
                    self._taken += 1
                    self._wake.set()
                    return kit
        return None

    def ready_slots(self, exercise: str) -> list[tuple[int, ...]]:
        """The CPU slots with a ready kit for ``exercise`` (lease one of these first)."""
        with self._lock:
            return [kit.key.cpus for kit in self._kits
                    if kit.key.exercise == exercise and kit.ready()]

    def idle_kits(self) -> tuple[Kit, ...]:
        """The kits waiting now (ready or not): to look at, never to hand over."""
        with self._lock:
            return tuple(self._kits)

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(ready=sum(1 for k in self._kits if k.ready()),
                             warming=self._warming, taken=self._taken,
                             retired=self._retired, failed=self._failed)

    # --- life ---------------------------------------------------------------------------------

    def start(self) -> WarmPool:
        """Start filling in a background thread (idempotent)."""
        if self.settings.size > 0 and self._thread is None:
            self._refresh()
            self._thread = threading.Thread(target=self._fill_forever, name="warm-pool",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 60.0) -> None:
        """Stop filling and close every kit (their sandboxes killed, folders removed)."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            kits, self._kits = self._kits, []
        for kit in kits:
            kit.close()
        self.closers.wait(timeout)  # the kits taken and used, closing in the background

    def __enter__(self) -> WarmPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, count: int | None = None, timeout: float = WARM_UP_TIMEOUT) -> bool:
        """Block until ``count`` kits (default: every key's ``size``) are ready."""
        wanted = len(self.keys()) * self.settings.size if count is None else count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats().ready >= wanted:
                return True
            time.sleep(0.05)
        return False

    # --- the filler ---------------------------------------------------------------------------

    def _fill_forever(self) -> None:
        self._warm_host()
        while not self._closing.is_set():
            try:
                self._refresh()
                self._retire()
                self._fill_once()
            except Exception:  # a filler that dies leaves the workers cold, never broken
                logger.exception("the warm pool could not start a kit")
            self._wake.wait(FILL_INTERVAL)
            self._wake.clear()

    def _warm_host(self) -> None:
        """The host's side warm too: each exercise read and checked, the evaluation images and
        labels loaded into their caches (0.2 s of the first run's scoring otherwise)."""
        try:
            for exercise_id in self.exercises:
                self.config.exercise(exercise_id)
            evaluation_images(self.config.data_dir)
            evaluation_labels(self.config.data_dir)
        except Exception:  # the first run reads them then, and says what is wrong
            logger.warning("warm pool: the host's side could not be read ahead", exc_info=True)

    def _refresh(self) -> None:
        """Ask ``exercises`` (when a function) which exercises are wanted now."""
        if self._wanted is None:
            return
        now = time.monotonic()
        if self._asked_at is not None and now - self._asked_at < WANTED_INTERVAL:
            return
        self._asked_at = now
        try:
            wanted = tuple(dict.fromkeys(str(e) for e in self._wanted()))
        except Exception:  # a database that does not answer: keep the last list
            logger.warning("warm pool: the wanted exercises could not be read", exc_info=True)
            return
        if wanted != self.exercises:
            logger.info("warm pool: kits for %s", ", ".join(wanted) or "no exercise")
            self.exercises = wanted

    def _retire(self) -> None:
        """Close the kits that waited too long, whose sandboxes ended, or whose exercise is no
        longer wanted."""
        now = time.monotonic()
        with self._lock:
            stale = [k for k in self._kits
                     if not k.alive() or now - k.created > self.settings.max_idle
                     or k.key.exercise not in self.exercises]
            for kit in stale:
                self._kits.remove(kit)
        for kit in stale:
            self._retired += 1
            logger.info("warm kit %s retired (%s)", kit.key,
                        "a sandbox ended" if not kit.alive()
                        else "not wanted" if kit.key.exercise not in self.exercises
                        else "idle too long")
            kit.close()

    def _missing(self) -> list[KitKey]:
        with self._lock:
            have = [k.key for k in self._kits]
        now = time.monotonic()
        return [key for key in self.keys()
                for _ in range(self.settings.size - have.count(key))
                if now - self._failed_at.get(key, -RETRY_AFTER) >= RETRY_AFTER]

    def _fill_once(self) -> None:
        for key in self._missing():
            if self._closing.is_set():
                return
            available = self.available_memory()
            if available is not None and (
                    available < self.settings.min_available_bytes + KIT_MEMORY):
                logger.debug("warm pool: %d bytes available, no kit started", available)
                return
            with self._holding(key.cpus) as held:
                if not held:
                    continue  # a run holds that slot: warm its kit once it is free
                self._warm(key)

    @contextmanager
    def _holding(self, cpus: tuple[int, ...]) -> Iterator[bool]:
        if self.slots is None or not cpus:
            yield True
            return
        with self.slots.hold(cpus) as lease:
            yield lease is not None

    def _warm(self, key: KitKey) -> None:
        exercise = self.config.exercise(key.exercise)
        with self._lock:
            self._warming += 1
        try:
            kit = start_kit(exercise, self.config, self.sandbox_for(key.cpus), exercise.limits,
                            key=key, hold_seconds=self.settings.max_idle, cleanroom=True,
                            preload=True)
            ready = kit.wait_ready(WARM_UP_TIMEOUT, cancel=self._closing)
        except Exception:  # no folder, no backend: tried again after RETRY_AFTER, not at once
            self._failed += 1
            self._failed_at[key] = time.monotonic()
            logger.exception("warm kit %s could not be started", key)
            return
        finally:
            with self._lock:
                self._warming -= 1
        if not ready or self._closing.is_set():
            if not ready:
                self._failed += 1
                self._failed_at[key] = time.monotonic()
                logger.warning("warm kit %s did not become ready: %s", key,
                               kit.failure or "a sandbox ended or the warm-up timed out")
            kit.close()
            return
        with self._lock:
            self._kits.append(kit)


def mem_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes, ``None`` where there is none."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
