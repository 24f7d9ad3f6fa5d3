"""An exercise's default rules as its ``exercise.toml`` writes them: the ``[schedule]`` table.

The grader keeps the table as written (``grader.spec.Exercise.schedule``, opaque to it: the
grading library knows nothing of due dates); here it becomes the ``ScheduleChange`` that
``schedule set`` would make, so a value is checked by the same code and refused with the same
words as on the command line or the dashboard. The keys are ``schedule set``'s options spelled
as the file's other keys (``late_until`` for ``--late-until``)::

    [schedule]
    opens = 2026-12-01T09:00:00+09:00       # a TOML date-time with its offset, or a string
    due = 2026-12-24T23:59:59+09:00
    late_until = 2026-12-26T23:59:59+09:00
    late_penalty = "10%/day"
    counts = "best"
    attempts_per_day = 5
    timezone = "Asia/Tokyo"
    weight = 2
    release = "holdout_accuracy=on_publish"

Where the table is used (an exercise without a schedule in the database) is
``service.domain.schedules``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from service.domain.course_rules import RulesError, parse_release

#: The keys ``[schedule]`` may hold, in the order ``schedule set`` lists its options.
KEYS = ("opens", "due", "late_until", "late_penalty", "counts", "attempts_per_day", "timezone",
        "weight", "release")
TIMES = ("opens", "due", "late_until")


def change_fields(table: Mapping[str, Any]) -> dict[str, Any]:
    """``ScheduleChange``'s keyword arguments from a ``[schedule]`` table. :class:`RulesError`
    for an unknown key or a value of the wrong type; the values themselves (dates in order, a
    penalty understood, a known time zone) are checked where every change is."""
    fields: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KEYS:
            raise RulesError("rules.table_unknown_key", key=repr(key), known=", ".join(KEYS))
        if key in TIMES:
            fields[key] = _time(key, value)
        elif key == "attempts_per_day":
            if isinstance(value, bool) or not isinstance(value, int):
                raise RulesError("rules.attempts_not_whole", value=_shown(value))
            fields[key] = value
        elif key == "weight":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RulesError("rules.weight_not_number", value=_shown(value))
            fields[key] = value
        elif not isinstance(value, str):
            raise RulesError("rules.table_not_text", field=key, value=_shown(value))
        else:
            fields[key] = parse_release(value) if key == "release" else value
    return fields


def _time(key: str, value: Any) -> str:
    """A TOML date-time (a local one, without an offset, is refused as a string would be)
    or a string, as the ISO 8601 text the checks read."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str) and value.strip():
        return value
    raise RulesError("rules.table_not_time", field=key, value=_shown(value))


def _shown(value: Any) -> str:
    """A value as the refusal quotes it: a string with its quotes, anything else as TOML
    writes it (``2026-12-24``, ``true``)."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    return value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
