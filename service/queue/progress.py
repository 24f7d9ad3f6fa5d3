"""A running run's live progress (cell, count, elapsed, last printed line), stored on the run row
so that the pages and the API, which read only the database, can show it."""

from __future__ import annotations

import logging
import threading
from typing import Any

from grader import Progress
from service.extensions import Sessions
from service.models import GradingRun

log = logging.getLogger(__name__)

#: ``progress["phase"]`` once the kernel is up and the cells run (a phase of grading, not a
#: :class:`~service.states.RunState`).
CELLS_PHASE = "running"


#: The least time between two writes of a run's progress: each event is stored at once unless
#: the last write was more recent than this (a cell printing a line per batch would otherwise
#: write the row hundreds of times a second).
MIN_PERIOD = 0.2


class ProgressWriter:
    """Keeps the run's live progress: every event updates the state in memory and wakes a
    background thread that stores it on the run at once, then waits ``period`` before the next
    write (events meanwhile are merged into it), so the pages see a cell end within ``period``
    and the last state is never dropped. Only the worker that owns the run writes (a worker
    that lost it stays silent)."""

    def __init__(self, sessions: Sessions, run_id: int, worker: str,
                 period: float = MIN_PERIOD):
        self.sessions, self.run_id, self.worker, self.period = sessions, run_id, worker, period
        self.state: dict[str, Any] = {}
        self._unsaved = False  # under _lock: an event not yet stored
        self._changed = threading.Event()  # wakes the thread: an event, or the end
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"progress-{run_id}")

    def __enter__(self) -> ProgressWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout=5)
        if self._unsaved:
            self._store()

    def __call__(self, event: Progress) -> None:
        with self._lock:
            self.state["elapsed"] = round(event.elapsed, 1)
            if event.kind == "cell" and event.cell_index is not None:
                self.state.update(cell=event.cell_index + 1, text=None)
                if event.position is not None and event.count:
                    self.state.update(position=event.position + 1, count=event.count)
            elif event.kind == "output" and event.text:
                self.state["text"] = event.text
            elif event.kind == "kernel_ready":
                self.state["phase"] = CELLS_PHASE
            self._unsaved = True
        self._changed.set()

    def _loop(self) -> None:
        while True:
            self._changed.wait()
            if self._stop.is_set():
                return  # __exit__ stores what is left
            self._changed.clear()
            self._store()
            if self._stop.wait(self.period):
                return

    def _store(self) -> None:
        with self._lock:
            progress = dict(self.state)
            self._unsaved = False
        with self.sessions() as session:
            try:
                run = session.get(GradingRun, self.run_id)
                if run is not None and run.worker == self.worker:
                    run.progress = progress
                    session.commit()
            except Exception:
                log.exception("progress of run %s not stored", self.run_id)
                session.rollback()
