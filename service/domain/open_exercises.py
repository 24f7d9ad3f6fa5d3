"""Which exercises take submissions now, or soon: what the warm pool keeps kits for.

An exercise is *open* at a moment when somebody may hand it in then: the class by the
schedule's dates, or one student by an extension. A course that lists every lecture's exercise
keeps warm kits (a kernel with TensorFlow imported, about 1.5 GiB each, per CPU slot) only for
the weeks that are open, and starts warming an exercise :data:`AHEAD` before it opens, so the
first uploads find kits ready. An exercise without a schedule is always open.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from service.domain.course_rules import Dates, Extension, Rules
from service.domain.schedules import load_all_rules, load_extensions
from service.extensions import DbSession

#: How long before an exercise opens its kits start warming.
AHEAD = dt.timedelta(minutes=10)


def takes_submissions(dates: Dates, now: dt.datetime, ahead: dt.timedelta = AHEAD) -> bool:
    """Whether a student with ``dates`` may hand in at some moment of [now, now + ahead]."""
    if dates.opens is not None and dates.opens > now + ahead:
        return False
    closes = dates.closes
    return closes is None or closes >= now


def open_among(rules: Mapping[str, Rules], extensions: Iterable[tuple[str, Extension]],
               now: dt.datetime, ahead: dt.timedelta = AHEAD) -> list[str]:
    """The exercises of ``rules`` (in its order) open for the class or for one extension's
    student within ``ahead`` of ``now``."""
    by_exercise: dict[str, list[Extension]] = {}
    for exercise_id, extension in extensions:
        by_exercise.setdefault(exercise_id, []).append(extension)
    return [exercise_id for exercise_id, found in rules.items()
            if any(takes_submissions(dates, now, ahead)
                   for dates in [found.dates, *(found.dates_for(extension) for extension
                                               in by_exercise.get(exercise_id, ()))])]


def open_exercises(session: DbSession, exercise_ids: Iterable[str], now: dt.datetime,
                   ahead: dt.timedelta = AHEAD) -> list[str]:
    """:func:`open_among` of the stored schedules and extensions (two queries)."""
    rules = load_all_rules(session, exercise_ids)
    extensions = [(exercise_id, extension)
                  for (_, exercise_id), extension in load_extensions(session).items()]
    return open_among(rules, extensions, now, ahead)
