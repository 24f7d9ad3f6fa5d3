"""The resource links the platforms launch the tool from (``lti_line_items``): which exercise a
link opens, and where its scores and its course's members are (the launch's Assignment and
Grade Services and Names and Roles claims).

:func:`record_link` is called at every resource link launch, so the row holds what the
platform said last (a line item made after the link was placed, a new scope). Grade passback
reads these rows: :func:`score_targets` gives, for a student and an exercise, each line item
of the courses the student is in with the student's account there (``userId`` = its
``sub``); :func:`links_of_exercise` gives every link of an exercise. A row holds the line item
URL to post scores to (``lineitem_url``; when the platform gave only the context's container
``lineitems_url``, the line item must be found or made there by ``resourceLinkId``) and the
scopes granted. A roster sync reads :func:`membership_sources`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from service.extensions import DbSession
from service.models import LtiAccount, LtiLineItem, LtiMembership, LtiPlatform, utcnow

AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
CONTEXT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/context"
RESOURCE_LINK_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/resource_link"
DEPLOYMENT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
MAX_URL = 2000


@dataclass(frozen=True)
class MembershipSource:
    """A course of a platform whose members can be read (a Names and Roles endpoint)."""

    platform_id: int
    issuer: str
    client_id: str
    context_id: str | None
    memberships_url: str


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def record_link(session: DbSession, platform_id: int, claims: Mapping[str, Any],
                exercise: str) -> LtiLineItem:
    """Make or refresh the row of the launch's resource link (platform, deployment, resource
    link id): its exercise, context, the AGS claim's ``lineitem``, ``lineitems`` and ``scope``
    and the NRPS claim's ``context_memberships_url`` (a claim the launch lacks leaves the
    value it had: a platform may leave a service out of one launch). Does not commit."""
    deployment_id = str(claims[DEPLOYMENT_CLAIM])
    link_id = str(claims[RESOURCE_LINK_CLAIM]["id"])
    row = session.execute(select(LtiLineItem).where(
        LtiLineItem.platform_id == platform_id, LtiLineItem.deployment_id == deployment_id,
        LtiLineItem.resource_link_id == link_id)).scalar_one_or_none()
    if row is None:
        row = LtiLineItem(platform_id=platform_id, deployment_id=deployment_id,
                          resource_link_id=link_id, exercise=exercise, scopes=[])
        session.add(row)
    row.exercise = exercise
    context = claims.get(CONTEXT_CLAIM)
    if isinstance(context, dict) and context.get("id"):
        row.context_id = _text(str(context["id"]), 255)
    ags = claims.get(AGS_CLAIM)
    if isinstance(ags, dict):
        row.lineitem_url = _text(ags.get("lineitem"), MAX_URL)
        row.lineitems_url = _text(ags.get("lineitems"), MAX_URL)
        scopes = ags.get("scope")
        row.scopes = [s for s in scopes if isinstance(s, str)] if isinstance(scopes, list) else []
    nrps = claims.get(NRPS_CLAIM)
    if isinstance(nrps, dict) and nrps.get("context_memberships_url"):
        row.memberships_url = _text(nrps["context_memberships_url"], MAX_URL)
    row.updated_at = utcnow()
    session.flush()
    return row


def links_of_exercise(session: DbSession, exercise: str) -> list[LtiLineItem]:
    """Every resource link that opens ``exercise``, in every platform (oldest first)."""
    return list(session.scalars(select(LtiLineItem).where(LtiLineItem.exercise == exercise)
                                .order_by(LtiLineItem.id)))


@dataclass(frozen=True)
class ScoreTarget:
    """Where one student's score for an exercise goes: a resource link's line item (with its
    URLs and scopes) and the student's account in that platform (``userId`` = ``sub``)."""

    line_item: LtiLineItem
    account: LtiAccount


def score_targets(session: DbSession, student_pk: int, exercise: str) -> list[ScoreTarget]:
    """Every line item ``student_pk``'s score for ``exercise`` goes to: the links of the
    exercise in the courses (platform and context) the student was seen in, by a launch or a
    roster sync (``lti_memberships``). None for a student who never came from an LMS."""
    rows = session.execute(
        select(LtiLineItem, LtiAccount)
        .join(LtiAccount, LtiAccount.platform_id == LtiLineItem.platform_id)
        .join(LtiMembership, (LtiMembership.account_id == LtiAccount.id)
              & (LtiMembership.context_id == LtiLineItem.context_id))
        .where(LtiAccount.student_pk == student_pk, LtiLineItem.exercise == exercise)
        .order_by(LtiLineItem.id, LtiAccount.id)).all()
    return [ScoreTarget(item, account) for item, account in rows]


def membership_sources(session: DbSession) -> list[MembershipSource]:
    """Every course whose members the tool may read: one per platform, context and
    memberships URL, from the links launched so far (newest URL of a context first)."""
    rows = session.execute(
        select(LtiLineItem.platform_id, LtiPlatform.issuer, LtiPlatform.client_id,
               LtiLineItem.context_id, LtiLineItem.memberships_url)
        .join(LtiPlatform, LtiPlatform.id == LtiLineItem.platform_id)
        .where(LtiLineItem.memberships_url.is_not(None))
        .order_by(LtiLineItem.updated_at.desc())).all()
    seen: set[tuple[int, str | None]] = set()
    found = []
    for platform_id, issuer, client_id, context_id, url in rows:
        if url is None or (platform_id, context_id) in seen:
            continue
        seen.add((platform_id, context_id))
        found.append(MembershipSource(platform_id, issuer, client_id, context_id, url))
    return found
