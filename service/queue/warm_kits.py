"""This worker process's warm pool (:class:`grader.warm_pool.WarmPool`), made from the settings.

Started with the process's workers (embedded threads, ``flask worker``, a Celery child) and
closed when they stop: ``WARM_POOL`` kits per open exercise (one that takes submissions now or
within ten minutes: ``service.domain.open_exercises``) and CPU slot, each pinned to its slot
like a cold run (``service.queue.cpu_slots``). A worker holding a slot takes that slot's kit
(:func:`take`); a run with a GPU, or one that finds no ready kit, starts cold. See
``docs/sandbox.md``, "Warm pool".
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from grader import GraderConfig, Kit, PoolSettings, WarmPool, get_sandbox
from grader.sandbox import Sandbox
from service.domain.open_exercises import open_exercises
from service.extensions import db
from service.models import utcnow
from service.queue import cpu_slots

log = logging.getLogger(__name__)

_EXTENSION = "warm_pool"
_made = threading.Lock()


def sandbox_for(config: GraderConfig, cpus: tuple[int, ...]) -> Sandbox:
    """The configured backend, pinned to ``cpus`` (``()``: not pinned)."""
    return get_sandbox(config.sandbox, **({"cpu_set": cpus} if cpus else {}))


def wanted(app: Flask) -> list[str]:
    """The exercises worth warm kits now: those open for somebody now or soon."""
    config: GraderConfig = app.config["GRADER"]
    with app.app_context():
        return open_exercises(db.session, config.exercise_ids(), utcnow())


def start(app: Flask) -> WarmPool | None:
    """Make and start this process's pool (once); ``None`` when ``WARM_POOL`` is 0."""
    size = app.config["WARM_POOL"]
    if size <= 0:
        return None
    with _made:
        found: WarmPool | None = app.extensions.get(_EXTENSION)
        if found is None:
            config: GraderConfig = app.config["GRADER"]
            settings = PoolSettings(size=size, max_idle=app.config["WARM_POOL_MAX_IDLE"],
                                    min_available_bytes=app.config["WARM_POOL_MIN_FREE_MB"]
                                    * 1024 * 1024)
            found = WarmPool(config, lambda: wanted(app),
                             lambda cpus: sandbox_for(config, cpus),
                             slots=cpu_slots.slots(app), settings=settings)
            app.extensions[_EXTENSION] = found
            found.start()
            log.info("warm pool: %d kit(s) per open exercise and CPU slot, %d keys", size,
                     len(found.keys()))
        return found


def pool(app: Flask) -> WarmPool | None:
    """This process's pool if it was started."""
    found: WarmPool | None = app.extensions.get(_EXTENSION)
    return found


def take(app: Flask, exercise: str, cpus: tuple[int, ...]) -> Kit | None:
    """A ready kit for ``exercise`` on ``cpus``, or ``None`` (start cold)."""
    found = pool(app)
    return found.take(exercise, cpus) if found is not None else None


def ready_slots(app: Flask, exercise: str) -> list[tuple[int, ...]]:
    """The slots whose kit for ``exercise`` is ready: a worker leases one of those first."""
    found = pool(app)
    return found.ready_slots(exercise) if found is not None else []


def close(app: Flask) -> None:
    """Close the pool and every kit it holds (idempotent)."""
    with _made:
        found: WarmPool | None = app.extensions.pop(_EXTENSION, None)
    if found is not None:
        found.close()
