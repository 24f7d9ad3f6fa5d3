"""Grade passback's sender: a thread of each process that grades (the embedded workers of
``python -m service`` and of ``flask worker``, a Celery worker process) and of the service
process under Celery, sending the outbox's due scores (``service.domain.lti_outbox``) to the
platforms (``service.lti.ags``).

It never sits in grading's way: grading only writes the outbox row (``service.lti.passback``)
and rings this thread; the HTTP calls, with their timeouts and retries, happen here. It wakes
at once when a score is queued in its process, else every :data:`POLL_SECONDS` (a score
queued by another process, a retry whose time has come), so a score reaches a platform that is
up within seconds of the verdict. Every :data:`SWEEP_SECONDS` it also queues again the scores of
runs finished in the last :data:`SWEEP_WINDOW` (a grading's own call lost to an error or a
kill between two commits), and those of the students whose due or late-until time has passed
since (a score released by date, the work closed).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from flask import Flask

from service.domain.lti_outbox import DEFAULT_RETRY, Retry, claim_due, record
from service.extensions import db
from service.lti import passback
from service.lti.ags import Sender
from service.metrics import lti_score_sent
from service.models import utcnow
from service.queue.wakeup import Doorbell

log = logging.getLogger(__name__)

#: Seconds between two looks at the outbox when nothing rings.
POLL_SECONDS = 5.0
#: Seconds between two sweeps of recently finished runs, and how far back they look.
SWEEP_SECONDS = 60.0
SWEEP_WINDOW = dt.timedelta(minutes=10)
#: Rows claimed at a time.
BATCH = 20


class PassbackSender:
    """The sender thread of one process (see the module's docstring). ``app.extensions``
    holds it under :data:`service.lti.passback.EXTENSION` while it runs, so that grading in this
    process rings it."""

    def __init__(self, app: Flask, poll_seconds: float = POLL_SECONDS, retry: Retry = DEFAULT_RETRY,
                 sweep_seconds: float = SWEEP_SECONDS, sender: Sender | None = None) -> None:
        self.app, self.poll_seconds, self.retry = app, poll_seconds, retry
        self.sweep_seconds = sweep_seconds
        self.sender = sender or Sender()
        self.bell = Doorbell()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="lti-sender")
        self._last_sweep = time.monotonic()
        #: The end of the last sweep's look for deadlines passed.
        self._deadlines_until = utcnow() - SWEEP_WINDOW

    def start(self) -> PassbackSender:
        self.app.extensions.setdefault(passback.EXTENSION, self)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.bell.ring()
        self._thread.join(timeout=30)
        if self.app.extensions.get(passback.EXTENSION) is self:
            del self.app.extensions[passback.EXTENSION]

    def ring(self) -> None:
        self.bell.ring()

    def _loop(self) -> None:
        while not self._stop.is_set():
            seen = self.bell.rings
            busy = False
            try:
                busy = self.send_due() > 0
                if time.monotonic() - self._last_sweep >= self.sweep_seconds:
                    self._last_sweep = time.monotonic()
                    self.sweep()
            except Exception:  # the database gone a moment: keep the thread, try again later
                log.exception("grade passback: a pass failed")
            if not busy:
                self.bell.wait(seen, self.poll_seconds)

    def send_due(self) -> int:
        """Claim the due rows (up to :data:`BATCH`) and send them; how many were claimed."""
        with self.app.app_context():
            try:
                claimed = claim_due(db.session, BATCH)
                for row in claimed:
                    if self._stop.is_set():
                        break  # the others' hold runs out: sent by the next sender
                    answer = self.sender.send(db.session, row)
                    state = record(db.session, row, answer, self.retry)
                    lti_score_sent(state)
                    if not answer.ok:
                        log.warning("grade passback: score %s for %s on %s: %s (%s)", row.id,
                                    row.sub, row.issuer, answer.error, state)
                return len(claimed)
            except Exception:
                db.session.rollback()
                raise
            finally:
                db.session.remove()

    def sweep(self) -> int:
        """Queue again the scores of runs finished within :data:`SWEEP_WINDOW`, and those of
        the students whose due or late-until time passed since the last sweep (the first
        looks :data:`SWEEP_WINDOW` back)."""
        with self.app.app_context():
            try:
                now = utcnow()
                queued = passback.queue_recent(self.app, now - SWEEP_WINDOW)
                queued += passback.queue_deadlines(self.app, self._deadlines_until, now)
                self._deadlines_until = now
                return queued
            finally:
                db.session.remove()
