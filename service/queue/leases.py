"""Keeping a claimed run's lease alive while the grader works on it.

A lease is how the queue tells a slow worker from a dead one: grading blocks for minutes, so a
background thread renews the lease every third of ``LEASE_SECONDS``. When a renewal finds the run
no longer ours (the lease ran out, say after a long database outage, and another worker claimed
it) :attr:`LeaseKeeper.lost` is set and the grade is dropped; the fence in
``service.queue.grading`` refuses the write even if nobody looked. A run that was only requeued
(nobody claimed it yet) is taken back (``claims.reclaim``): a slow host loses no result.

The keeper is held from the claim until the result is stored, rendering included. A run graded
on a GPU has that device's lease renewed with its own (``service.queue.gpu_leases``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from service.extensions import DbSession, Sessions
from service.queue import claims, gpu_leases

log = logging.getLogger(__name__)

#: How a lease is renewed: ``(session, run id, worker, seconds) -> still ours``.
Renew = Callable[[DbSession, int, str, int], bool]


def renew_grading(session: DbSession, run_id: int, worker: str, seconds: int) -> bool:
    """A grading run's renewal: extended, or taken back when it was only requeued."""
    return (claims.renew(session, run_id, worker, seconds)
            or claims.reclaim(session, run_id, worker, seconds))


class LeaseKeeper:
    """Renews a run's lease in the background while it is graded (or, with another ``renew``,
    another job's row: a similarity run's, ``service.queue.similarity``)."""

    def __init__(self, sessions: Sessions, run_id: int, worker: str, seconds: int,
                 gpu_host: str | None = None, renew: Renew = renew_grading):
        self.sessions, self.run_id, self.worker, self.renew = sessions, run_id, worker, renew
        #: ``LEASE_SECONDS``: each renewal extends the lease this long, every third of it.
        self.seconds = seconds
        #: The host whose GPU this run holds (its lease is renewed with the run's), if any.
        self.gpu_host = gpu_host
        #: Set when a renewal found the run taken over: the result will not be stored.
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"lease-{run_id}")

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        seconds = self.seconds
        while not self._stop.wait(max(1.0, seconds / 3)):
            with self.sessions() as session:
                try:
                    if not self.renew(session, self.run_id, self.worker, seconds):
                        self.lost.set()
                        return
                    if self.gpu_host is not None and not gpu_leases.renew(
                            session, self.gpu_host, self.worker, seconds):
                        log.error("run %s: its GPU lease ran out and was taken", self.run_id)
                except Exception:  # a database hiccup: try again next period
                    log.exception("lease renewal of run %s failed", self.run_id)
                    session.rollback()
