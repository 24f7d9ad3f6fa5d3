"""The course's members read from the platform (Names and Role Provisioning Services) and
applied to the roster: on an instructor's launch, from the dashboard's LMS page and from
``flask --app service lti sync-roster``.

pylti1p3's ``NamesRolesProvisioningService`` reads the members (every page) with an access
token the tool asks for with a JWT signed by its own key (``/lti/jwks``); only then are they
applied (``service.domain.lti_roster.apply_members``) in one transaction, so a platform that
is down, refuses the token or fails on the third page changes nothing. A failure is data
(:attr:`SyncResult.error`), never an exception out of here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests
from pylti1p3.exception import LtiException
from pylti1p3.names_roles import NamesRolesProvisioningService
from pylti1p3.service_connector import ServiceConnector

from service.domain.lti_links import MembershipSource, membership_sources
from service.domain.lti_roster import RosterCounts, apply_members
from service.extensions import DbSession
from service.lti.http import timeout_session
from service.lti.tool_conf import DatabaseToolConf

#: The longest error text kept (a platform's error page can be long).
MAX_ERROR = 300


@dataclass(frozen=True)
class SyncResult:
    """One course's sync: the counts, or why it could not be read (nothing was changed)."""

    source: MembershipSource
    counts: RosterCounts | None
    error: str | None = None


def read_members(session: DbSession, source: MembershipSource) -> list[dict[str, Any]]:
    """Every member of ``source``'s course, all pages read; pylti1p3's and requests' errors
    pass through."""
    registration = DatabaseToolConf(session).registration(source.issuer, source.client_id)
    connector = ServiceConnector(registration, timeout_session())
    service = NamesRolesProvisioningService(
        connector, {"context_memberships_url": source.memberships_url})
    return [dict(member) for member in service.get_members()]


def sync_source(session: DbSession, source: MembershipSource) -> SyncResult:
    """Read ``source``'s members and apply them, or say why not (and change nothing)."""
    try:
        members = read_members(session, source)
    except (LtiException, requests.RequestException, ValueError, KeyError, TypeError) as exc:
        session.rollback()
        return SyncResult(source, None, _said(exc))
    return SyncResult(source, apply_members(session, source.platform_id, source.issuer,
                                            source.context_id, members))


def sync_sources(session: DbSession,
                 sources: Iterable[MembershipSource] | None = None) -> list[SyncResult]:
    """Sync every course launched so far (or ``sources``): one result each."""
    chosen = membership_sources(session) if sources is None else list(sources)
    return [sync_source(session, source) for source in chosen]


def _said(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        text = f"HTTP {response.status_code} from {response.url}"
    elif isinstance(exc, requests.ConnectionError):
        text = "the platform could not be reached"
    elif isinstance(exc, requests.Timeout):
        text = "the platform did not answer in time"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR]
