"""The janitor: what repairs the queue when nobody else would.

Workers requeue expired leases before they claim, but with every worker dead nobody claims, and
a run whose message the broker never got (it was down at submit time) waits for a message that
never comes. The janitor runs in the service process every 30 s, and by hand as
``flask --app service requeue``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from flask import Flask

from service.extensions import db
from service.queue import claims, similarity
from service.queue.dispatch import enqueue_similarity, resend_stale, resend_stale_similarity
from service.states import WorkerKind

log = logging.getLogger(__name__)

#: Seconds between two sweeps of the service's janitor thread.
PERIOD = 30.0


@dataclass(frozen=True)
class Swept:
    #: Runs of dead workers queued again, or failed after their last attempt.
    requeued: int
    #: Queued runs (grading and similarity) sent to the broker again (Celery only).
    resent: int
    #: Similarity runs of dead workers queued again (and sent again, with Celery).
    similarity_requeued: int = 0


def sweep(app: Flask, resend_after: dt.timedelta) -> Swept:
    """One pass: requeue (or fail) the runs whose lease ran out, grading and similarity runs;
    with Celery, send again the runs (grading and similarity) that sit queued ``resend_after``
    after they were last sent, and the similarity runs just requeued. Needs an app context."""
    requeued = claims.requeue_expired(db.session, app.config["MAX_ATTEMPTS"])
    celery = app.config["QUEUE"] == WorkerKind.CELERY
    similar = similarity.requeue_expired(db.session, app.config["MAX_ATTEMPTS"])
    for run_id in similar:  # with Celery no message would bring them back; never raises
        enqueue_similarity(run_id)
    resent = resend_stale(resend_after) + resend_stale_similarity(resend_after) if celery else 0
    return Swept(requeued, resent, len(similar))


class Janitor:
    """The service's janitor thread: :func:`sweep` every :data:`PERIOD` seconds until stopped.
    A message is re-sent only after a lease's worth of waiting (at least a minute), so that a
    slow broker is not flooded with duplicates."""

    def __init__(self, app: Flask, period: float = PERIOD):
        self.app, self.period = app, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="janitor")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        resend_after = dt.timedelta(seconds=max(60, self.app.config["LEASE_SECONDS"]))
        while not self._stop.wait(self.period):
            with self.app.app_context():
                try:
                    sweep(self.app, resend_after)
                except Exception:
                    log.exception("janitor pass failed")
                    db.session.rollback()
                finally:
                    db.session.remove()
