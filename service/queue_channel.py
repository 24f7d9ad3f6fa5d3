"""The database's word that a run is queued: on PostgreSQL, ``NOTIFY`` on :data:`CHANNEL`, sent
inside the transaction that queues the run and delivered when (and only if) it commits, so no
worker of another process is woken before the row is visible.

It lives below the domain and the queue because both write it: the domain when an upload or a
regrade commits a queued run, the queue when it puts a run back (``claims.requeue_expired``) or
hands over a similarity run. Who listens is the queue's business (``service.queue.wakeup``).
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from service.extensions import DbSession

#: The PostgreSQL channel a queued run is announced on (the payload is empty: the workers claim
#: the oldest queued run, whichever it is).
CHANNEL = "grader_queue"


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def notify_queued(session: DbSession) -> None:
    """Announce, inside the transaction that queues a run, that one is waiting: PostgreSQL
    delivers it when (and only if) the transaction commits. Nothing on other databases."""
    if is_postgresql(session.get_bind().engine):
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
