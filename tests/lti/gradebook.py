"""The platform's course records behind LTI Advantage's services: line items and the scores
posted to them (Assignment and Grade Services 2.0), and the course's members (Names and Role
Provisioning Services 2.0). No HTTP here: :mod:`tests.lti.lms` serves these records, and
a test reads them to see what the tool sent.

A score is checked as the AGS specification describes it; one the platform would refuse raises
:class:`~tests.lti.keys.Refused` with the status a real LMS answers (400 for a malformed score,
404 for an unknown line item, 422 for a user who is not in the course, 409 for a stale score
when :attr:`Gradebook.stale_scores` is ``"conflict"``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeGuard

from tests.lti.claims import Context, User
from tests.lti.keys import Refused

ACTIVITY_PROGRESS = frozenset({"Initialized", "Started", "InProgress", "Submitted", "Completed"})
GRADING_PROGRESS = frozenset({"FullyGraded", "Pending", "PendingManual", "Failed", "NotReady"})


@dataclass
class LineItem:
    """A column of the LMS's gradebook; ``url`` is its id, scores go to ``url + "/scores"``."""

    url: str
    label: str
    score_maximum: float
    resource_id: str = ""
    tag: str = ""
    resource_link_id: str = ""

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"id": self.url, "label": self.label,
                                 "scoreMaximum": self.score_maximum}
        for key, value in (("resourceId", self.resource_id), ("tag", self.tag),
                           ("resourceLinkId", self.resource_link_id)):
            if value:
                found[key] = value
        return found


@dataclass(frozen=True)
class ReceivedScore:
    """One score POSTed to a line item, as received, and whether it became the result."""

    line_item: str
    user_id: str
    body: dict[str, Any]
    received_at: float
    applied: bool

    @property
    def score_given(self) -> float | None:
        return self.body.get("scoreGiven")

    @property
    def timestamp(self) -> datetime:
        return datetime.fromisoformat(self.body["timestamp"])


@dataclass(frozen=True)
class Member:
    """A person enrolled in the course, as Names and Roles lists them."""

    user: User
    roles: tuple[str, ...]
    status: str = "Active"

    def to_json(self) -> dict[str, Any]:
        identity = self.user.identity_claims()
        found: dict[str, Any] = {"status": self.status, "user_id": identity.pop("sub"),
                                 "roles": list(self.roles)}
        return {**found, **identity}


@dataclass
class Gradebook:
    """Line items, scores and members of one course (``context``). Thread-safe: the platform's
    server answers requests in threads while the test reads."""

    context: Context
    #: what a score older than (or as old as) the result on record gets: ignored with a 200
    #: (Moodle) or a 409 Conflict (both allowed by AGS 2.0)
    stale_scores: Literal["ignore", "conflict"] = "ignore"
    line_items: dict[str, LineItem] = field(default_factory=dict)
    received: list[ReceivedScore] = field(default_factory=list)
    members: dict[str, Member] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- line items ---------------------------------------------------------------------

    def add_line_item(self, container_url: str, label: str, score_maximum: float, *,
                      resource_id: str = "", tag: str = "",
                      resource_link_id: str = "") -> LineItem:
        with self._lock:
            item = LineItem(f"{container_url}/{len(self.line_items) + 1}", label,
                            score_maximum, resource_id, tag, resource_link_id)
            self.line_items[item.url] = item
            return item

    def line_item(self, url: str) -> LineItem:
        found = self.line_items.get(url)
        if found is None:
            raise Refused("not_found", f"no line item {url}", 404)
        return found

    def line_item_of_link(self, resource_link_id: str) -> LineItem | None:
        """The line item made for a resource link (the one a launch from it names)."""
        return next((item for item in self.line_items.values()
                     if item.resource_link_id == resource_link_id), None)

    @staticmethod
    def checked_line_item(body: Any) -> dict[str, Any]:
        """The fields of a line item a tool sent (POST or PUT), or :class:`Refused`."""
        if not isinstance(body, dict):
            raise Refused("invalid_request", "a line item is a JSON object")
        label, maximum = body.get("label"), body.get("scoreMaximum")
        if not isinstance(label, str) or not label.strip():
            raise Refused("invalid_request", "label must be a non-empty string")
        if not _is_number(maximum) or maximum <= 0:
            raise Refused("invalid_request", "scoreMaximum must be a number above 0")
        for key in ("resourceId", "tag", "resourceLinkId"):
            if key in body and not isinstance(body[key], str):
                raise Refused("invalid_request", f"{key} must be a string")
        return {"label": label, "score_maximum": float(maximum),
                "resource_id": body.get("resourceId", ""), "tag": body.get("tag", ""),
                "resource_link_id": body.get("resourceLinkId", "")}

    # --- scores -------------------------------------------------------------------------

    def post_score(self, line_item_url: str, body: Any) -> ReceivedScore:
        """Record a score the tool POSTed; it becomes the user's result unless it is stale."""
        self.line_item(line_item_url)
        score = _checked_score(body)
        if score["userId"] not in self.members:
            raise Refused("invalid_request",
                          f"user {score['userId']!r} is not a member of {self.context.id}", 422)
        with self._lock:
            last = self._result(line_item_url, score["userId"])
            fresh = last is None or last.timestamp < datetime.fromisoformat(score["timestamp"])
            received = ReceivedScore(line_item_url, score["userId"], score, time.time(), fresh)
            self.received.append(received)
        if not fresh and self.stale_scores == "conflict":
            raise Refused("conflict", "a score at least as new is on record", 409)
        return received

    def _result(self, line_item_url: str, user_id: str) -> ReceivedScore | None:
        return next((score for score in reversed(self.received) if score.applied
                     and score.line_item == line_item_url and score.user_id == user_id), None)

    def result(self, line_item_url: str, user_id: str) -> ReceivedScore | None:
        """The score that is ``user_id``'s result in the line item (None: no score yet)."""
        with self._lock:
            return self._result(line_item_url, user_id)

    def results_json(self, line_item_url: str, user_id: str | None = None) -> list[dict[str, Any]]:
        """The line item's results as AGS's result container lists them."""
        item = self.line_item(line_item_url)
        with self._lock:
            users = sorted({score.user_id for score in self.received
                            if score.line_item == item.url})
            results = [(user, self._result(item.url, user)) for user in users
                       if user_id in (None, user)]
        found = []
        for user, score in results:
            if score is None:
                continue
            entry: dict[str, Any] = {"id": f"{item.url}/results/{user}", "scoreOf": item.url,
                                     "userId": user}
            if score.score_given is not None:
                entry["resultScore"] = score.score_given
                entry["resultMaximum"] = score.body["scoreMaximum"]
            if "comment" in score.body:
                entry["comment"] = score.body["comment"]
            found.append(entry)
        return found

    # --- members ------------------------------------------------------------------------

    def enrol(self, user: User, roles: tuple[str, ...]) -> Member:
        """Add ``user`` to the course (or change their roles)."""
        with self._lock:
            member = Member(user, roles)
            self.members[user.sub] = member
            return member


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _checked_score(body: Any) -> dict[str, Any]:
    """A score as AGS 2.0 defines it, or :class:`Refused` naming what is wrong."""
    if not isinstance(body, dict):
        raise Refused("invalid_request", "a score is a JSON object")
    if not isinstance(body.get("userId"), str) or not body["userId"]:
        raise Refused("invalid_request", "userId must be a non-empty string")
    stamp = body.get("timestamp")
    try:
        parsed = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Refused("invalid_request", "timestamp must be an ISO 8601 time with its offset")
    if body.get("activityProgress") not in ACTIVITY_PROGRESS:
        raise Refused("invalid_request", f"activityProgress must be one of {sorted(ACTIVITY_PROGRESS)}")
    if body.get("gradingProgress") not in GRADING_PROGRESS:
        raise Refused("invalid_request", f"gradingProgress must be one of {sorted(GRADING_PROGRESS)}")
    if "scoreGiven" in body:
        given, maximum = body["scoreGiven"], body.get("scoreMaximum")
        if not _is_number(given) or given < 0:
            raise Refused("invalid_request", "scoreGiven must be a number of at least 0")
        if not _is_number(maximum) or maximum <= 0:
            raise Refused("invalid_request", "scoreMaximum must be a number above 0 with scoreGiven")
    if "comment" in body and not isinstance(body["comment"], str):
        raise Refused("invalid_request", "comment must be a string")
    return body
