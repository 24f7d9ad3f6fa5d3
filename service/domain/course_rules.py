"""The course's rules for one exercise, as plain values and arithmetic (no database, no request):
the dates a student may hand in between, the late penalty, which submission counts, and what a
student may see when. ``service.domain.schedules`` keeps them in the database; the gradebook
(``service.domain.gradebook``), the upload rules (``service.domain.submissions``) and the
release of results (``service.domain.release``) all read them from here, so one set of rules is
written once. docs/course-rules.md states the arithmetic with examples.

Times are naive UTC ``datetime`` values, as the database holds them; a time zone matters only
for showing a date and for where a day starts (``attempts_per_day``).

The edges, the same everywhere:

- an upload at ``opens`` is accepted, one before is refused;
- an upload at ``due`` is on time, one microsecond after is late;
- an upload at ``late_until`` is accepted (late), one after is refused;
- with a ``due`` and no ``late_until`` there is no late window (``late_until`` = ``due``);
- without a ``due`` nothing is late and nothing closes.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from grader import Text
from service.catalog import MESSAGES


class RulesError(ValueError):
    """A rule that cannot be: a penalty not understood, dates in the wrong order, an unknown
    time zone. The message says what was given and what is expected, in both languages.

    ``RulesError("rules.bad_penalty", spec="'ten'")`` is the catalog's message ``key`` (domain
    ``messages``, keys ``rules.*``) with its ``params``; :attr:`text` is it in Japanese and
    English, made from the catalog files alone (no app, no request: the CLI, the tests and the
    domain raise it too). ``str()`` is the English text, what the CLI prints; the dashboard
    shows :attr:`text` in the instructor's language. A value quoted as typed is passed as its
    ``repr``; a refusal inside another (``line 3: ...``) passes the inner one's :attr:`text`.
    """

    def __init__(self, key: str, /, **params: object) -> None:
        #: The catalog key, e.g. ``rules.late_until_before_due``.
        self.key = key
        #: What fills the message's placeholders.
        self.params = params
        #: The message in both languages.
        self.text: Text = MESSAGES.bilingual(key, **params)
        super().__init__(self.text.en)

    def __reduce__(self) -> tuple[object, ...]:
        # rebuilt from the key and parameters, not from the English text (pickle, copy)
        return _rules_error, (self.key, self.params)


def _rules_error(key: str, params: dict[str, object]) -> RulesError:
    return RulesError(key, **params)


# --- dates ------------------------------------------------------------------------------------


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time *with* an offset (``2026-12-24T23:59:59+09:00``, ``...Z``) as naive
    UTC. A time without an offset is refused: whose midnight it is must be said."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise RulesError("rules.not_iso_time", text=repr(text)) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise RulesError("rules.no_offset", text=repr(text), bare=text.strip())
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Asia/Tokyo``, ``UTC``)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RulesError("rules.unknown_zone", name=repr(name)) from None


def local(value: dt.datetime, zone_name: str) -> dt.datetime:
    """A naive UTC time as an aware time in ``zone_name``."""
    return value.replace(tzinfo=dt.UTC).astimezone(zone(zone_name))


def day_start(now: dt.datetime, zone_name: str) -> dt.datetime:
    """The start of ``now``'s day in ``zone_name``, as naive UTC (where a daily limit resets)."""
    here = local(now, zone_name)
    midnight = dt.datetime.combine(here.date(), dt.time(), tzinfo=here.tzinfo)
    return midnight.astimezone(dt.UTC).replace(tzinfo=None)


# --- the late penalty --------------------------------------------------------------------------

_PENALTY = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*%(?:\s*/\s*(?P<unit>day|hour))?")
_UNITS = {"day": dt.timedelta(days=1), "hour": dt.timedelta(hours=1)}


@dataclass(frozen=True)
class LatePenalty:
    """What late work loses: ``percent`` of its score, once (``per`` None) or for every started
    ``per`` (day or hour) after the due time; never more than all of it."""

    percent: float = 0.0
    per: str | None = None

    @classmethod
    def parse(cls, spec: str) -> LatePenalty:
        """``0`` (none), ``N%`` (once), ``N%/day`` or ``N%/hour`` (per started day or hour)."""
        text = spec.strip().lower()
        if text in ("0", "0%", "none", ""):
            return cls()
        match = _PENALTY.fullmatch(text)
        if match is None:
            raise RulesError("rules.bad_penalty", spec=repr(spec))
        percent = float(match["n"])
        if percent > 100:
            raise RulesError("rules.penalty_over_100", spec=repr(spec))
        return cls(percent, match["unit"])

    def __str__(self) -> str:
        if self.percent == 0:
            return "0"
        number = f"{self.percent:g}%"
        return f"{number}/{self.per}" if self.per else number

    def fraction(self, late_by: dt.timedelta) -> float:
        """The share of the score lost by work handed in ``late_by`` after the due time: 0 when
        not late; ``percent``/100 once; or ``percent``/100 times the started days (hours),
        capped at 1."""
        if late_by <= dt.timedelta(0) or self.percent == 0:
            return 0.0
        if self.per is None:
            return min(1.0, self.percent / 100)
        started = math.ceil(late_by / _UNITS[self.per])
        return min(1.0, self.percent / 100 * started)


# --- what counts, and the dates of one student --------------------------------------------------


class Counts(StrEnum):
    """Which of a student's allowed submissions counts."""

    #: The highest score after its late penalty (ties: the later submission).
    BEST = "best"
    #: The latest one that was graded.
    LAST = "last"


@dataclass(frozen=True)
class Dates:
    """When one student may hand in one exercise (the schedule's, or an extension's)."""

    opens: dt.datetime | None = None
    due: dt.datetime | None = None
    late_until: dt.datetime | None = None

    def check(self) -> Dates:
        """These dates, or :class:`RulesError` when they are out of order."""
        if self.late_until is not None and self.due is None:
            raise RulesError("rules.late_until_needs_due")
        if self.opens and self.due and self.opens >= self.due:
            raise RulesError("rules.opens_not_before_due")
        if self.due and self.late_until and self.late_until < self.due:
            raise RulesError("rules.late_until_before_due")
        return self

    @property
    def closes(self) -> dt.datetime | None:
        """The last moment an upload is accepted (None: never closes)."""
        if self.due is None:
            return None
        return self.late_until or self.due

    def window(self, at: dt.datetime) -> Window:
        """Where ``at`` falls: before opening, on time, late or after closing."""
        if self.opens is not None and at < self.opens:
            return Window.NOT_OPEN
        if self.due is None or at <= self.due:
            return Window.ON_TIME
        closes = self.closes
        if closes is not None and at > closes:
            return Window.CLOSED
        return Window.LATE

    def accepts(self, at: dt.datetime) -> bool:
        """``self.window(at).accepts`` (on time or late), without making the window: the
        gradebook asks it of every submission of a course."""
        if self.opens is not None and at < self.opens:
            return False
        closes = self.closes
        return closes is None or at <= closes

    def late_by(self, at: dt.datetime) -> dt.timedelta:
        if self.due is None or at <= self.due:
            return dt.timedelta(0)
        return at - self.due


class Window(StrEnum):
    NOT_OPEN = "not_open"
    ON_TIME = "on_time"
    LATE = "late"
    CLOSED = "closed"

    @property
    def accepts(self) -> bool:
        return self in (Window.ON_TIME, Window.LATE)


@dataclass(frozen=True)
class Extension:
    """One student's own dates for one exercise, and attempts beyond the daily limit."""

    due: dt.datetime
    late_until: dt.datetime | None = None
    extra_attempts: int = 0


# --- what a student sees when -------------------------------------------------------------------


class Shown(StrEnum):
    """When a part of the results becomes visible to the student."""

    ALWAYS = "always"
    AFTER_DUE = "after_due"
    AFTER_LATE_UNTIL = "after_late_until"
    #: When the instructor publishes the exercise's results (``Schedule.published_at``).
    ON_PUBLISH = "on_publish"
    NEVER = "never"


class Part(StrEnum):
    """The parts of a result the release rules govern."""

    #: The score (total and per item) and the gradebook's figures.
    SCORE = "score"
    #: Each item's feedback text and details.
    FEEDBACK = "feedback"
    #: The accuracy measured on the public test images.
    TEST_ACCURACY = "test_accuracy"
    #: The accuracy measured on the held-out images, and what is derived from it (the counted
    #: accuracy, the accuracy item's final score).
    HOLDOUT_ACCURACY = "holdout_accuracy"


#: The default: everything at once but the held-out figure, kept until late-until (the private
#: leaderboard).
DEFAULT_RELEASE: Mapping[Part, Shown] = {
    Part.SCORE: Shown.ALWAYS, Part.FEEDBACK: Shown.ALWAYS, Part.TEST_ACCURACY: Shown.ALWAYS,
    Part.HOLDOUT_ACCURACY: Shown.AFTER_LATE_UNTIL}
#: Named sets of release rules (``schedule set --release exam``).
RELEASE_PRESETS: Mapping[str, Mapping[Part, Shown]] = {
    "default": DEFAULT_RELEASE,
    "open": {part: Shown.ALWAYS for part in Part},
    "exam": {part: Shown.ON_PUBLISH for part in Part},
}


def parse_release(spec: str, base: Mapping[Part, Shown] = DEFAULT_RELEASE) -> dict[Part, Shown]:
    """``exam``, ``default``, ``open``, or ``part=when,...`` over ``base`` (for instance
    ``holdout_accuracy=on_publish,feedback=after_due``)."""
    text = spec.strip()
    if text in RELEASE_PRESETS:
        return dict(RELEASE_PRESETS[text])
    rules = dict(base)
    for piece in filter(None, (p.strip() for p in text.split(","))):
        name, sep, when = piece.partition("=")
        try:
            rules[Part(name.strip())] = Shown(when.strip())
        except ValueError:
            raise RulesError("rules.bad_release_rule", rule=repr(piece),
                             presets=", ".join(RELEASE_PRESETS), parts=", ".join(Part),
                             whens=", ".join(Shown)) from None
        if not sep:
            raise RulesError("rules.release_rule_needs_when", rule=repr(piece))
    return rules


def release_from_json(value: object) -> dict[Part, Shown]:
    """Release rules as stored (a JSON object); unknown keys and values fall back to the
    defaults, so a row written by a newer version still reads."""
    rules = dict(DEFAULT_RELEASE)
    if isinstance(value, dict):
        for name, when in value.items():
            try:
                rules[Part(name)] = Shown(when)
            except ValueError:
                continue
    return rules


# --- one exercise's rules -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """Everything the course decided for one exercise (``Schedule`` as values)."""

    exercise: str
    dates: Dates = Dates()
    penalty: LatePenalty = LatePenalty()
    counts: Counts = Counts.BEST
    attempts_per_day: int | None = None
    timezone: str = "UTC"
    weight: float = 1.0
    release: Mapping[Part, Shown] = field(default_factory=lambda: dict(DEFAULT_RELEASE))
    published_at: dt.datetime | None = None

    def dates_for(self, extension: Extension | None) -> Dates:
        """A student's dates: the schedule's, or their extension's. An extension without its
        own late-until keeps the class's late window's length after its own due time."""
        if extension is None:
            return self.dates
        late_until = extension.late_until
        if late_until is None and self.dates.due and self.dates.late_until:
            late_until = extension.due + (self.dates.late_until - self.dates.due)
        return replace(self.dates, due=extension.due, late_until=late_until)

    def daily_limit(self, extension: Extension | None) -> int | None:
        if self.attempts_per_day is None:
            return None
        return self.attempts_per_day + (extension.extra_attempts if extension else 0)

    def shows(self, part: Part, dates: Dates, now: dt.datetime) -> bool:
        """Whether a student with ``dates`` sees ``part`` of their results at ``now``."""
        when = self.release.get(part, DEFAULT_RELEASE[part])
        if when is Shown.ALWAYS:
            return True
        if when is Shown.NEVER:
            return False
        if when is Shown.ON_PUBLISH:
            return self.published_at is not None and now >= self.published_at
        moment = dates.due if when is Shown.AFTER_DUE else dates.closes
        return moment is None or now > moment
