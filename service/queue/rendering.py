"""The executed notebook rendered while the clean room measures.

The grader hands the executed notebook over as soon as the notebook's run has ended
(``grade_notebook(on_executed=...)``), before the clean room measures the exports. A
:class:`RenderAhead` starts rendering it then, in a thread of its own (the rendering itself is a
child process, :func:`~service.notebook_html.render_bounded`, under the same caps as
ever), so its second or so runs beside the measurement instead of after it; the store waits for
it (:meth:`RenderAhead.result`). A grader that never calls back, or a report whose notebook is
not the one handed over, is rendered at the store, as before.

The render child comes from the worker process's spare (``service.queue.host``).

The lease: ``grading.grade_run`` opens the :class:`RenderAhead` inside its lease keeper and
leaves it (which waits for the thread) before the lease keeper stops, so a rendering, early or
not, never outlives the run's lease.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import nbformat

from service.notebook_html import RENDER_MEMORY, Rendered, render_bounded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderCaps:
    """``render_bounded``'s caps (``HTML_MAX_BYTES``, ``HTML_MAX_CELLS``,
    ``HTML_RENDER_SECONDS``, ``HTML_RENDER_MEMORY``)."""

    max_bytes: int
    max_cells: int
    seconds: float
    memory_bytes: int = RENDER_MEMORY

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> RenderCaps:
        return cls(config["HTML_MAX_BYTES"], config["HTML_MAX_CELLS"],
                   config["HTML_RENDER_SECONDS"],
                   config.get("HTML_RENDER_MEMORY", RENDER_MEMORY))


@dataclass(frozen=True)
class Timed:
    """A rendering, its own seconds, and how long the store waited for it (0 when it was done
    before the report was)."""

    rendered: Rendered
    seconds: float
    waited: float


class RenderAhead:
    """Renders one executed notebook in a thread from the moment :meth:`start` hears of it.

    A context manager: leaving it waits for the thread (bounded by the render's deadline).
    ``take_child``: where its render child comes from (the worker process's spare, owned by
    its grading host: ``service.queue.host``); a cold one when not given."""

    def __init__(self, caps: RenderCaps,
                 take_child: Callable[[], subprocess.Popen[bytes]] | None = None) -> None:
        self.caps = caps
        self.take_child = take_child
        self._source: str | None = None
        self._thread: threading.Thread | None = None
        self._done: Rendered | None = None
        self._error: BaseException | None = None
        self._seconds = 0.0

    def start(self, executed: nbformat.NotebookNode) -> None:
        """The ``on_executed`` callback: serialise the notebook here (the grader goes on with
        it) and render that text in a thread. Only the first call counts."""
        if self._thread is not None:
            return
        self._source = nbformat.writes(executed)
        self._thread = threading.Thread(target=self._render, args=(self._source,),
                                        name="render-ahead", daemon=True)
        self._thread.start()

    def _render(self, source: str) -> None:
        began = time.monotonic()
        try:
            self._done = self._bounded(source)
        except BaseException as exc:  # raised again by result(), in the worker's thread
            self._error = exc
        finally:
            self._seconds = time.monotonic() - began

    def _bounded(self, source: str) -> Rendered:
        return render_bounded(source, max_bytes=self.caps.max_bytes,
                              max_cells=self.caps.max_cells, seconds=self.caps.seconds,
                              memory_bytes=self.caps.memory_bytes, take_child=self.take_child)

    def result(self, notebook_json: str) -> Timed:
        """The rendering of ``notebook_json``: the one started ahead, waited for, when it is of
        this very text; else one made now. A failure of the renderer is raised, as a render at
        the store would raise it."""
        if self._thread is not None and self._source == notebook_json:
            began = time.monotonic()
            self._thread.join()
            waited = time.monotonic() - began
            if self._error is not None:
                raise self._error
            assert self._done is not None
            return Timed(self._done, self._seconds, waited)
        if self._thread is not None:
            log.warning("the report's executed notebook is not the one rendered ahead; "
                        "rendering it again")
        began = time.monotonic()
        rendered = self._bounded(notebook_json)
        seconds = time.monotonic() - began
        return Timed(rendered, seconds, seconds)

    def __enter__(self) -> RenderAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._thread is not None:
            self._thread.join()
