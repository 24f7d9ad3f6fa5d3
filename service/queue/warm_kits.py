"""What a worker process's warm pool (:class:`grader.warm_pool.WarmPool`) is made of.

The pool itself is owned by the process's grading host (``service.queue.host``): opened with
the process's workers (embedded threads, ``flask worker``, a Celery child) and closed when they
stop, ``WARM_POOL`` kits per open exercise (one that takes submissions now or within ten
minutes: :func:`wanted`) and CPU slot, each pinned to its slot like a cold run
(:func:`sandbox_for`). A run holding a slot takes that slot's kit (``host.Seat.pin``); a run
with a GPU, or one that finds no ready kit, starts cold. See ``docs/sandbox.md``, "Warm pool".
"""

from __future__ import annotations

from grader import GraderConfig, get_sandbox
from grader.sandbox import Sandbox
from service.domain.open_exercises import open_exercises
from service.extensions import Sessions
from service.models import utcnow


def sandbox_for(config: GraderConfig, cpus: tuple[int, ...]) -> Sandbox:
    """The configured backend, pinned to ``cpus`` (``()``: not pinned)."""
    return get_sandbox(config.sandbox, **({"cpu_set": cpus} if cpus else {}))


def wanted(sessions: Sessions, config: GraderConfig) -> list[str]:
    """The exercises of ``config`` worth warm kits now: those open for somebody now or soon
    (read in a session of ``sessions``)."""
    with sessions() as session:
        return open_exercises(session, config.exercise_ids(), utcnow())
