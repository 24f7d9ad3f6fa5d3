"""Waking idle embedded workers when a run is queued, instead of leaving it to their poll.

Two bells, one for each distance:

- within a process (``python -m service``: the upload and the worker threads share it),
  ``service.queue.dispatch.enqueue`` rings the workers' :class:`Doorbell` after the commit;
- across processes (``flask worker`` beside gunicorn), on PostgreSQL only: the transaction that
  queues a run also sends ``NOTIFY`` on ``CHANNEL`` (``service.queue_channel.notify_queued``),
  which the database delivers at the commit, so a worker is never woken before the row is
  visible; each worker process keeps one connection listening (``LISTEN``) that rings its
  threads' bell (:class:`Listener`).

SQLite has no such message between processes: there, a ``flask worker`` process still finds a
run at its next poll (``poll_seconds``). On PostgreSQL too the poll stays, as the fallback for a
notification lost while the listening connection was down.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

from service.queue_channel import CHANNEL

log = logging.getLogger(__name__)


class Doorbell:
    """Rung when runs may be waiting. A thread notes :attr:`rings` *before* it looks for work,
    then waits on that number (:meth:`wait`): a ring between the look and the wait is never missed,
    and one ring wakes every idle thread (each then races for the run by compare-and-set)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._rings = 0

    @property
    def rings(self) -> int:
        with self._changed:
            return self._rings

    def ring(self) -> None:
        with self._changed:
            self._rings += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait until rung since ``seen`` (``True``) or ``timeout`` seconds passed."""
        with self._changed:
            return self._changed.wait_for(lambda: self._rings != seen, timeout)


class Listener:
    """A thread holding a PostgreSQL connection of its own that listens on
    :data:`CHANNEL` and rings ``bell`` at each notification. When the connection breaks it
    reconnects after ``retry_seconds`` and rings once (a notification may have been missed)."""

    def __init__(self, engine: Engine, bell: Doorbell, retry_seconds: float = 5.0,
                 check_stop_seconds: float = 1.0):
        self.engine, self.bell = engine, bell
        self.retry_seconds, self.check_stop_seconds = retry_seconds, check_stop_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="grader-queue-listener",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.check_stop_seconds + 1)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.bell.ring()  # whatever was queued while we were not listening
                    self._listen(conn)
            except Exception as exc:  # the database restarting, say: the poll goes on meanwhile
                log.warning("listening for queued runs failed (%s: %s); polling until "
                            "reconnected", type(exc).__name__, exc)
                self._stop.wait(self.retry_seconds)

    def _listen(self, conn: Any) -> None:
        while not self._stop.is_set():
            for _ in conn.notifies(timeout=self.check_stop_seconds):
                self.bell.ring()

    def _connect(self) -> Any:
        """A psycopg connection (autocommit, outside the pool) to the engine's database."""
        import psycopg

        args, params = self.engine.dialect.create_connect_args(self.engine.url)
        return psycopg.connect(*args, **{**params, "autocommit": True})
