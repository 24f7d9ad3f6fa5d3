"""The embedded carrier: worker threads that take runs from the database, no broker needed (one
machine, ``QUEUE=embedded``: ``python -m service`` starts them, ``flask worker`` adds processes).
An idle thread waits on a :class:`~service.queue.wakeup.Doorbell`, rung by an upload in the same
process or, on PostgreSQL, by a ``NOTIFY`` from any process; it also polls, as a fallback. The
threads share the process's one grading host (``service.queue.host``: CPU slots, warm pool,
spare render child, GPU inventory, their heartbeat), opened when they start and closed when
they stop; the process's grade passback sender (``service.queue.lti_sender``) starts and stops
with them."""

from __future__ import annotations

import logging
import socket
import threading
import uuid

from flask import Flask

from service.extensions import db
from service.queue import heartbeats
from service.queue.grading import take
from service.queue.host import GradingHost
from service.queue.lti_sender import PassbackSender
from service.queue.similarity import take_similarity
from service.queue.wakeup import Doorbell, Listener
from service.queue_channel import is_postgresql
from service.states import WorkerKind

log = logging.getLogger(__name__)


def worker_name(prefix: str = WorkerKind.EMBEDDED) -> str:
    """A name unique to one worker thread: it owns leases and beats under it."""
    return f"{prefix}:{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


class EmbeddedWorkers:
    """Worker threads inside the service process, each taking the oldest queued run with
    :func:`~service.queue.grading.take` whenever it is idle: woken at once by ``wake`` (rung by
    ``service.queue.dispatch.enqueue`` in this process, and on PostgreSQL by a
    :class:`~service.queue.wakeup.Listener` for every process), else every ``poll_seconds``.
    Each thread is a worker with its own name, kept alive on the dashboard by the host's
    :class:`~heartbeats.Heartbeat`."""

    def __init__(self, app: Flask, count: int, poll_seconds: float = 1.0,
                 heartbeat_seconds: float = heartbeats.BEAT_SECONDS):
        self.app, self.count, self.poll_seconds = app, count, poll_seconds
        self.wake = Doorbell()
        self.listener: Listener | None = None
        #: Grade passback's sender of this process (``service.queue.lti_sender``).
        self.passback = PassbackSender(app)
        #: This process's grading resources, shared by the threads (opened by :meth:`start`);
        #: a run's score queued for the LMS wakes the sender.
        self.host = GradingHost(app, heartbeat=WorkerKind.EMBEDDED,
                                heartbeat_seconds=heartbeat_seconds,
                                passback_bell=self.passback.ring)
        self._heartbeat: heartbeats.Heartbeat | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        # a bad GPUS setting stops the start, saying why; kits warm while the threads wait
        self.host.open()
        self._heartbeat = self.host.heartbeat
        names = [worker_name() for _ in range(self.count)]
        try:
            for name in names:
                self.heartbeat.working(name, None)
            with self.app.app_context():
                try:
                    heartbeats.forget(db.session, older_than=heartbeats.FORGET_AFTER)
                finally:
                    db.session.remove()
                if is_postgresql(db.engine):
                    self.listener = Listener(db.engine, self.wake)
                    self.listener.start()
        except BaseException:
            self.host.close()
            raise
        self.passback.start()
        for n, name in enumerate(names):
            thread = threading.Thread(target=self._loop, args=(name,),
                                      name=f"grader-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.wake.ring()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.listener is not None:
            self.listener.stop()
        self.passback.stop()
        self.host.close()  # warm kits closed, none left; the workers' rows forgotten

    @property
    def heartbeat(self) -> heartbeats.Heartbeat:
        """The threads' heartbeat (the host's)."""
        if self._heartbeat is None:
            raise RuntimeError("the embedded workers are not started")
        return self._heartbeat

    def _loop(self, name: str) -> None:
        try:
            self._poll(name)
        finally:
            self.heartbeat.discard(name)

    def _poll(self, name: str) -> None:
        while not self._stop.is_set():
            seen = self.wake.rings  # before looking: a ring after it is not missed
            if not self._take_one(name):
                self.wake.wait(seen, self.poll_seconds)

    def _take_one(self, name: str) -> bool:
        """Take one run as worker ``name``: a grading run, else (none queued) a similarity run;
        ``False`` when there was none (or no database)."""
        claimed: list[int] = []

        def on_claim(run_id: int) -> None:
            claimed.append(run_id)
            self.heartbeat.working(name, run_id)

        try:
            if take(self.host, None, name, on_claim=on_claim).run_id is not None:
                return True
            return take_similarity(self.app, None, name).run_id is not None
        except Exception:
            # The database gone while claiming or storing, say: keep the thread alive; a run
            # claimed meanwhile is queued again when its lease runs out.
            log.exception("worker %s: taking a run failed (claimed: %s)", name, claimed)
            return False
        finally:
            if claimed:
                self.heartbeat.working(name, None)
