"""Which CPUs a grading run of this process may use: a slot of the host, held while it grades.

Every worker of a host (embedded threads, ``flask worker`` processes, Celery's children) leases
its run a slot of :class:`grader.sandbox.cpus.CpuSlots` before grading and gives it back after,
so ``RUNS_PER_HOST`` runs go side by side, each confined to CPUs of its own, and a worker past
that number waits for a slot (its run's lease is renewed meanwhile). A run that holds a GPU
lease gets a CPU slot too: the GPU count only caps how many GPU runs go at once.

``PIN_CPUS=0`` turns it off (every run on every CPU, as before).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from flask import Flask

from grader.sandbox import CpuSlots

_EXTENSION = "cpu_slots"
_made = threading.Lock()


def slots(app: Flask) -> CpuSlots | None:
    """This app's slots (made once per process), or ``None`` when runs are not pinned."""
    if not app.config["PIN_CPUS"]:
        return None
    with _made:
        if _EXTENSION not in app.extensions:
            lock_dir = app.config["CPU_SLOTS_DIR"]
            app.extensions[_EXTENSION] = CpuSlots(
                app.config["RUNS_PER_HOST"], lock_dir=Path(lock_dir) if lock_dir else None)
        found: CpuSlots = app.extensions[_EXTENSION]
        return found


@contextmanager
def held(app: Flask, prefer: Sequence[tuple[int, ...]] = ()) -> Iterator[tuple[int, ...]]:
    """The CPUs of a slot held until the block ends (waits for one; the slots in ``prefer``,
    those with a warm kit, are tried first); ``()`` when not pinned."""
    pool = slots(app)
    if pool is None:
        yield ()
        return
    with pool.lease(prefer=prefer) as lease:
        yield lease.cpus
