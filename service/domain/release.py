"""What a student may see of one submission's result, under the exercise's release rules
(``course_rules.Part``/``Shown``, ``Rules.shows``): every page and API answer a student reads
passes the submission's API body through :func:`release` first, so nothing hidden on a page is
readable in JSON. The dashboard (instructors) reads the stored report unfiltered.

What each hidden part takes away:

- ``score``: the total ``score`` and every item's ``score`` are null (``max_score`` stays), and
  so is an item's ``status`` that judges it (``correct``, ``partial``, ``incorrect``);
- ``feedback``: every item's ``feedback`` is empty and its ``details`` gone (the run's
  ``notes`` and ``reason``, why a run failed, stay);
- ``test_accuracy``: the test sets' figures (``test``, ``test-moved``) leave the accuracy
  item's ``details["accuracies"]``; the accuracy the notebook printed stays;
- ``holdout_accuracy`` (hidden until the student's late-until by default): the held-out sets'
  figures leave the details, and every figure derived from them is replaced by the **public**
  one, counted on the test sets alone (``grader.public_accuracy``): ``measured_accuracy`` (run
  and details), the accuracy item's score (re-judged, provisional, like a public leaderboard)
  and the total. The item's feedback, which quotes the counted figure, is replaced by a text
  that says the result is provisional and when the final one comes.

``withheld`` (added to the body) lists each hidden part with the moment it is shown (None:
when the instructor publishes, or never).
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _

from grader import public_accuracy
from service.domain.course_rules import Dates, Part, Rules, Shown, local
from service.domain.schedules import extension_for, load_rules
from service.extensions import DbSession
from service.models import utcnow

#: The accuracy item's per-set figures that come from the public test images.
TEST_SETS = ("test", "test-moved")
#: ... and from the held-out images.
HOLDOUT_SETS = ("holdout", "holdout-moved")
#: Item statuses that are judgements of the score (hidden with it); ``error``, ``missing`` and
#: ``not_reached`` say what happened to the run and stay.
JUDGED = ("correct", "partial", "incorrect")
#: Keys of the accuracy item's details that are judgements of the held-out-derived figure.
HOLDOUT_FLAGS = ("memorised", "collapsed", "claimed_mismatch")


@dataclass(frozen=True)
class Withheld:
    """A part of the result the student does not see yet, and when they will (None: when the
    instructor publishes, or never)."""

    part: Part
    until: dt.datetime | None

    def body(self) -> dict[str, Any]:
        return {"part": self.part.value,
                "until": None if self.until is None else self.until.isoformat() + "Z"}


def release_time(rules: Rules, part: Part, dates: Dates) -> dt.datetime | None:
    """When ``part`` is shown to a student with ``dates`` (None: not at a known time)."""
    when = rules.release.get(part)
    if when is Shown.AFTER_DUE:
        return dates.due
    if when is Shown.AFTER_LATE_UNTIL:
        return dates.closes
    return None


def withheld_parts(rules: Rules, dates: Dates, now: dt.datetime) -> list[Withheld]:
    """The parts a student with ``dates`` does not see at ``now``, in ``Part`` order."""
    return [Withheld(part, release_time(rules, part, dates))
            for part in Part if not rules.shows(part, dates, now)]


@dataclass(frozen=True)
class Released:
    """A submission's API body as the student may see it."""

    body: dict[str, Any]
    withheld: list[Withheld]

    @property
    def provisional(self) -> bool:
        """The score shown is counted on the public images only (the held-out figure is
        withheld): it may change when that figure is released."""
        hidden = {w.part for w in self.withheld}
        return Part.HOLDOUT_ACCURACY in hidden and Part.SCORE not in hidden

    def hides(self, part: Part) -> bool:
        return any(w.part is part for w in self.withheld)


def release(body: dict[str, Any], rules: Rules, dates: Dates, now: dt.datetime) -> Released:
    """``body`` (``schemas.Submission.of(...).body()``, not changed) as the student with
    ``dates`` may see it at ``now``, with ``withheld`` added."""
    withheld = withheld_parts(rules, dates, now)
    hidden = {w.part for w in withheld}
    shown = copy.deepcopy(body)
    items = [item for item in shown.get("items") or [] if isinstance(item, dict)]
    if Part.HOLDOUT_ACCURACY in hidden:
        _public_only(shown, items, rules, next(w for w in withheld
                                               if w.part is Part.HOLDOUT_ACCURACY).until,
                     figures=Part.TEST_ACCURACY not in hidden)
    if Part.TEST_ACCURACY in hidden:
        until = next(w for w in withheld if w.part is Part.TEST_ACCURACY).until
        for item in items:
            if _drop_sets(item, TEST_SETS) and Part.HOLDOUT_ACCURACY not in hidden:
                # its feedback quotes the test figures (memorised, collapsed, the counted one)
                item["feedback"] = _notice(rules, Part.TEST_ACCURACY, until)
                for flag in HOLDOUT_FLAGS:
                    item["details"].pop(flag, None)
    if Part.FEEDBACK in hidden:
        for item in items:
            item["feedback"] = {"ja": "", "en": ""}
            item.pop("details", None)
    if Part.SCORE in hidden:
        if "score" in shown:
            shown["score"] = None
        for item in items:
            item["score"] = None
            if item.get("status") in JUDGED:
                item["status"] = None
    shown["withheld"] = [w.body() for w in withheld]
    return Released(shown, withheld)


def public_body(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` with its scores counted on the public images only (what
    :func:`release` shows while the held-out figure is withheld), whatever the rules say now."""
    shown = copy.deepcopy(body)
    items = [item for item in shown.get("items") or [] if isinstance(item, dict)]
    _public_only(shown, items, None, None)
    return shown


def public_score(body: dict[str, Any]) -> float | None:
    """:func:`public_body`'s total; None without a score."""
    score = public_body(body).get("score") if body.get("score") is not None else None
    return None if score is None else float(score)


def _drop_sets(item: dict[str, Any], names: tuple[str, ...]) -> bool:
    """Remove the image sets ``names`` from an accuracy item's figures; False for another
    item."""
    details = item.get("details")
    if isinstance(details, dict) and isinstance(details.get("accuracies"), dict):
        details["accuracies"] = {name: value for name, value in details["accuracies"].items()
                                 if name not in names}
        return True
    return False


def _public_only(body: dict[str, Any], items: list[dict[str, Any]], rules: Rules | None,
                 until: dt.datetime | None, figures: bool = True) -> None:
    """Replace every held-out-derived figure of ``body`` by the public one (see the module's
    docstring); the total is the items' sum again when an item was re-judged. Without
    ``figures`` (the test sets' accuracy is withheld too) the public figure, which is the test
    sets', is not shown either: only the re-judged score (a part of its own) is."""
    public_figure: float | None = None
    rejudged = False
    for item in items:
        details = item.get("details")
        if not isinstance(details, dict) or "accuracies" not in details:
            continue
        counted = public_accuracy(details)
        _drop_sets(item, HOLDOUT_SETS)
        for flag in HOLDOUT_FLAGS:
            details.pop(flag, None)
        if counted is None:  # no public figure to judge on: the score waits as well
            details.pop("measured_accuracy", None)
            item["feedback"] = _provisional_text(rules, until, None, details)
            if item.get("score") is not None:
                item["score"], item["status"], rejudged = None, None, True
            continue
        figure, fraction = counted
        if figures:
            details["measured_accuracy"] = figure
            if public_figure is None:
                public_figure = figure
        else:
            details.pop("measured_accuracy", None)
        if isinstance(item.get("max_score"), int | float) and item.get("score") is not None:
            item["score"] = round(float(item["max_score"]) * max(0.0, min(1.0, fraction)), 4)
            item["status"] = ("correct" if fraction >= 1 else
                              "partial" if fraction > 0 else "incorrect")
            rejudged = True
        item["feedback"] = _provisional_text(rules, until, figure if figures else None, details)
    if "measured_accuracy" in body:
        body["measured_accuracy"] = public_figure
    if rejudged and body.get("score") is not None:
        body["score"] = round(sum(float(item["score"]) for item in items
                                  if isinstance(item.get("score"), int | float)), 4)


def _provisional_text(rules: Rules | None, until: dt.datetime | None,
                      figure: float | None, details: dict[str, Any]) -> dict[str, str]:
    """The accuracy item's feedback while the held-out figure is withheld, in both languages:
    what it is counted on and when the final result comes, and, for a model that is not the
    network asked for (the grader's own text is mixed with figures), that it earns nothing."""
    if rules is None:
        return {"ja": "", "en": ""}
    texts = {}
    for lang in ("ja", "en"):
        with force_locale(lang):
            when = _when(rules, Part.HOLDOUT_ACCURACY, until)
            if figure is None:
                texts[lang] = _("release.provisional_none", when=when)
            else:
                texts[lang] = _("release.provisional", figure=f"{figure:.4f}", when=when)
            if details.get("structure_ok") is False:
                texts[lang] += "\n" + _("release.wrong_network")
    return texts


class StudentRelease:
    """One student's release rules at one moment, read once per exercise: what every page and
    API answer of that student passes their submissions through."""

    def __init__(self, session: DbSession, student_pk: int, now: dt.datetime | None = None):
        self.session, self.student_pk = session, student_pk
        self.now = now or utcnow()
        self._read: dict[str, tuple[Rules, Dates]] = {}

    def rules(self, exercise_id: str) -> tuple[Rules, Dates]:
        """The exercise's rules and this student's dates (their extension's, if any)."""
        if exercise_id not in self._read:
            rules = load_rules(self.session, exercise_id)
            extension = extension_for(self.session, self.student_pk, exercise_id)
            self._read[exercise_id] = rules, rules.dates_for(extension)
        return self._read[exercise_id]

    def __call__(self, body: dict[str, Any]) -> Released:
        rules, dates = self.rules(str(body["exercise"]))
        return release(body, rules, dates, self.now)


def _when(rules: Rules, part: Part, until: dt.datetime | None) -> str:
    """When ``part`` is released, in words of the current language."""
    if until is not None:
        return _("release.after", date=f"{local(until, rules.timezone):%Y-%m-%d %H:%M %Z}")
    if rules.release.get(part) is Shown.NEVER:
        return _("release.when_never")
    return _("release.when_published")


def _notice(rules: Rules, part: Part, until: dt.datetime | None) -> dict[str, str]:
    """The accuracy item's feedback while the test images' figures are withheld."""
    texts = {}
    for lang in ("ja", "en"):
        with force_locale(lang):
            texts[lang] = _("release.test_hidden", when=_when(rules, part, until))
    return texts
