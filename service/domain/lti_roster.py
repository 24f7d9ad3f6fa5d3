"""A course's members from a platform (Names and Role Provisioning) applied to the roster.

:func:`apply_members` takes the whole member list of one course, already read (so a platform
that fails half-way changes nothing), and links every active learner to a student by ``sub``
as a launch would (``service.domain.lti_accounts.link_student``: found, linked to the roster
by student number or email, or made), with the names and emails the platform shares. Course
staff are left out (an instructor's account is made by their own launch), and so are members
the platform marks ``Inactive`` or ``Deleted`` (their students, if any, stay).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from service.domain.lti_accounts import Person, is_instructor_roles, join_context, link_student
from service.extensions import DbSession


@dataclass(frozen=True)
class RosterCounts:
    """What a sync did: students made, students linked or refreshed, members left out."""

    created: int = 0
    linked: int = 0
    skipped: int = 0

    def __add__(self, other: RosterCounts) -> RosterCounts:
        return RosterCounts(self.created + other.created, self.linked + other.linked,
                            self.skipped + other.skipped)


def apply_members(session: DbSession, platform_id: int, issuer: str, context_id: str | None,
                  members: Iterable[Mapping[str, Any]]) -> RosterCounts:
    """Link the active learners of ``members`` (NRPS member objects of the course
    ``context_id``) to students, in that course; commits once, at the end."""
    created = linked = skipped = 0
    for member in members:
        roles = member.get("roles") or []
        person = Person.from_member(dict(member))
        if (not person.sub or member.get("status", "Active") != "Active"
                or is_instructor_roles(roles)):
            skipped += 1
            continue
        account, made = link_student(session, platform_id, issuer, person, launched=False)
        join_context(session, account, context_id)
        created, linked = created + made, linked + (not made)
    session.commit()
    return RosterCounts(created, linked, skipped)
