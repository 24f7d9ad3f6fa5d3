"""Worker heartbeats: each grading worker keeps a ``workers`` row whose ``last_seen`` it renews
every few seconds, so the dashboard can tell whether anyone is taking jobs off the queue.

The beats come from a background thread (:class:`Heartbeat`) rather than from the workers' own
loops, because grading one notebook blocks a loop for minutes: a worker busy training a CNN is
alive. The heartbeat is its process's, opened and closed by the grading host
(``service.queue.host``): embedded workers beat for as long as their process runs, and so does
a Celery worker process, busy or idle, from its first task on (the task names it).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from service.extensions import DbSession, Sessions, rowcount
from service.models import Worker, utcnow
from service.states import WorkerKind

log = logging.getLogger(__name__)

#: A worker seen within this many seconds counts as alive.
ALIVE_SECONDS = 60
BEAT_SECONDS = 5.0
#: Rows of workers not seen for this long are deleted when a worker process starts.
FORGET_AFTER = dt.timedelta(days=1)


def beat(session: DbSession, name: str, kind: WorkerKind, run_id: int | None = None) -> None:
    """Record that worker ``name`` is alive now (grading ``run_id``, or idle)."""
    now = utcnow()
    changed = rowcount(session.execute(
        update(Worker).where(Worker.name == name).values(last_seen=now, run_id=run_id)
    ))
    if not changed:
        session.add(Worker(name=name, kind=kind, started_at=now, last_seen=now, run_id=run_id))
        try:
            session.commit()
        except IntegrityError:  # made meanwhile by another beat of the same name
            session.rollback()
        return
    session.commit()


def is_alive(worker: Worker, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    return (now - worker.last_seen).total_seconds() <= ALIVE_SECONDS


def recent_workers(session: DbSession, within: dt.timedelta = dt.timedelta(hours=1)
                   ) -> list[Worker]:
    """Workers seen within ``within``, most recently seen first."""
    since = utcnow() - within
    return list(session.execute(
        select(Worker).where(Worker.last_seen >= since).order_by(Worker.last_seen.desc())
    ).scalars())


def forget(session: DbSession, names: list[str] | None = None,
           older_than: dt.timedelta | None = None) -> None:
    """Delete the rows of stopped workers (by name) or of long-gone ones."""
    if names:
        session.execute(delete(Worker).where(Worker.name.in_(names)))
    if older_than is not None:
        session.execute(delete(Worker).where(Worker.last_seen < utcnow() - older_than))
    session.commit()


class Heartbeat:
    """Beats for a set of workers of one kind from a background thread, every ``period``
    seconds and at once when a worker's current run changes, each beat in a session of
    ``sessions``."""

    def __init__(self, sessions: Sessions, kind: WorkerKind, period: float = BEAT_SECONDS):
        self.sessions, self.kind, self.period = sessions, kind, period
        self._runs: dict[str, int | None] = {}
        #: Every name this heartbeat has beaten for (forgotten at a clean stop).
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"heartbeat-{kind}")

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._beat_all()
        self._thread.start()

    def stop(self, forget_workers: bool = False) -> None:
        """Stop beating; ``forget_workers`` deletes their rows (a clean shutdown is not a
        death to report)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if forget_workers:
            with self._lock:
                names = sorted(self._known)
            self._with_session(lambda session: forget(session, names))

    def working(self, name: str, run_id: int | None) -> None:
        """Worker ``name`` is now grading ``run_id`` (``None``: idle); beats at once."""
        with self._lock:
            self._runs[name] = run_id
            self._known.add(name)
        self._with_session(lambda session: beat(session, name, self.kind, run_id))

    def discard(self, name: str) -> None:
        """Stop beating for ``name`` (its thread ended): it will show as not seen."""
        with self._lock:
            self._runs.pop(name, None)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._beat_all()

    def _beat_all(self) -> None:
        with self._lock:
            runs = dict(self._runs)

        def beat_each(session: DbSession) -> None:
            for name, run_id in runs.items():
                beat(session, name, self.kind, run_id)

        self._with_session(beat_each)

    def _with_session(self, work: Callable[[DbSession], None]) -> None:
        try:
            with self.sessions() as session:
                try:
                    work(session)
                except Exception:
                    session.rollback()
                    raise
        except Exception:  # a missed beat is harmless; a dead heartbeat thread is not
            log.exception("worker heartbeat not stored")
