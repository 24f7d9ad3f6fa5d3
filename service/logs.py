"""Structured logs: one JSON object a line, carrying the grading run's id in the workers.

``LOG_FORMAT=json`` (production) makes :func:`configure` write records as JSON (time, level,
logger, message, and ``run_id`` while a worker grades a run, plus the exception's traceback);
otherwise the usual text lines. The run id comes from :func:`run_context`, a context variable
set around a run's grading (``service.queue.grading.take``): every record logged meanwhile, by
the service or by the grader library, carries it, so one ``grep '"run_id": 42'`` follows a run.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

CURRENT_RUN: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "grader_run_id", default=None)


@contextmanager
def run_context(run_id: int) -> Iterator[None]:
    """Log records made inside carry ``run_id``."""
    token = CURRENT_RUN.set(run_id)
    try:
        yield
    finally:
        CURRENT_RUN.reset(token)


class RunIdFilter(logging.Filter):
    """Puts the current run's id (or None) on every record as ``record.run_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = CURRENT_RUN.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        run_id = getattr(record, "run_id", CURRENT_RUN.get())
        if run_id is not None:
            entry["run_id"] = run_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: int = logging.INFO, fmt: str | None = None) -> None:
    """The root logger's one handler, JSON when ``fmt`` (default ``$LOG_FORMAT``) is ``json``."""
    handler = logging.StreamHandler()
    handler.addFilter(RunIdFilter())
    if (fmt or os.environ.get("LOG_FORMAT", "text")) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
