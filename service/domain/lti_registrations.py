"""The LTI 1.3 platforms the tool is registered with, and their deployments (``lti_platforms``,
``lti_deployments``).

A registration is what a platform's administrator copies out of the platform after adding the
tool (Moodle's "Tool configuration details", Canvas's developer key and app): the platform's
issuer, the client id it gave the tool, its login, token and key set URLs, and one or more
deployment ids. The command line writes them (``flask --app service lti register``); the
launch reads them through ``service.lti.tool_conf``.

Every check is made before anything is written, and a refusal is a :class:`RegistrationError`
whose ``code`` says which rule was broken and whose message says it to a person.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import select

from service.extensions import DbSession
from service.models import LtiDeployment, LtiPlatform, utcnow

#: Hosts where plain http is accepted (a platform on this machine: tests, a local Moodle).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: The longest URL and identifier the table holds.
MAX_URL = 2000
MAX_ID = 255

ErrorCode = Literal["bad_url", "bad_id", "duplicate_deployment", "unknown_issuer",
                    "unknown_client", "unknown_deployment"]


class RegistrationError(ValueError):
    """A registration refused: ``code`` names the rule, the message says what was given."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PlatformRegistration:
    """One registration as read from the database: what ``lti list`` prints and what the
    launch's tool configuration is built from."""

    issuer: str
    client_id: str
    auth_login_url: str
    auth_token_url: str
    key_set_url: str
    audience: str | None
    deployment_ids: tuple[str, ...]


@dataclass(frozen=True)
class Registered:
    """What :func:`register_platform` did: whether the registration is new, and which of the
    given deployment ids were added (the others were there already)."""

    registration: PlatformRegistration
    created: bool
    added_deployments: tuple[str, ...]


def check_url(name: str, url: str) -> str:
    """``url`` if it is an absolute https URL (http only for this machine: localhost,
    127.0.0.1, ::1), without a fragment; else a ``bad_url`` error naming the option."""
    url = url.strip()
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if len(url) > MAX_URL:
        raise RegistrationError("bad_url", f"{name}: longer than {MAX_URL} characters")
    if parts.scheme not in ("https", "http") or not host:
        raise RegistrationError("bad_url", f"{name}: {url!r} is not an absolute https:// URL")
    if parts.scheme == "http" and not _is_local(host):
        raise RegistrationError("bad_url", f"{name}: {url!r} must use https:// (http:// is "
                                "accepted only for localhost and 127.0.0.1)")
    if parts.fragment:
        raise RegistrationError("bad_url", f"{name}: {url!r} has a #fragment")
    return url


def _is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_id(name: str, value: str) -> str:
    """A client or deployment id: stripped, not empty, at most 255 characters."""
    value = value.strip()
    if not value or len(value) > MAX_ID:
        raise RegistrationError("bad_id", f"{name}: {value!r} must be 1 to {MAX_ID} characters")
    return value


def registration_of(row: LtiPlatform) -> PlatformRegistration:
    return PlatformRegistration(
        issuer=row.issuer, client_id=row.client_id, auth_login_url=row.auth_login_url,
        auth_token_url=row.auth_token_url, key_set_url=row.key_set_url, audience=row.audience,
        deployment_ids=tuple(d.deployment_id for d in row.deployments))


def register_platform(session: DbSession, issuer: str, client_id: str,
                      deployment_ids: Sequence[str], auth_login_url: str, auth_token_url: str,
                      key_set_url: str, audience: str | None = None) -> Registered:
    """Add the registration (``issuer``, ``client_id``), or update its URLs, and add the
    deployment ids it does not hold yet: running it twice changes nothing the second time.

    A deployment id is the platform's name for one placement of the tool, unique within the
    issuer: one already held by another client id of the same issuer is refused."""
    issuer = check_url("--issuer", issuer)
    client_id = check_id("--client-id", client_id)
    wanted = list(dict.fromkeys(check_id("--deployment-id", d) for d in deployment_ids))
    urls = {"auth_login_url": check_url("--auth-login-url", auth_login_url),
            "auth_token_url": check_url("--auth-token-url", auth_token_url),
            "key_set_url": check_url("--key-set-url", key_set_url)}
    audience = check_id("--audience", audience) if audience else None

    others = session.execute(
        select(LtiDeployment.deployment_id, LtiPlatform.client_id)
        .join(LtiDeployment.platform)
        .where(LtiPlatform.issuer == issuer, LtiPlatform.client_id != client_id,
               LtiDeployment.deployment_id.in_(wanted))).all()
    if others:
        taken = ", ".join(f"{d!r} (client id {c!r})" for d, c in others)
        raise RegistrationError("duplicate_deployment", f"--deployment-id: {issuer} already "
                                f"holds {taken}; a deployment id belongs to one client id")

    row = _find_row(session, issuer, client_id)
    created = row is None
    if row is None:
        row = LtiPlatform(issuer=issuer, client_id=client_id, **urls, audience=audience)
        session.add(row)
    else:
        changed: dict[str, str | None] = {k: v for k, v in urls.items()
                                          if getattr(row, k) != v}
        if audience != row.audience:
            changed["audience"] = audience
        for key, value in changed.items():
            setattr(row, key, value)
        if changed:
            row.updated_at = utcnow()
    held = {d.deployment_id for d in row.deployments}
    added = tuple(d for d in wanted if d not in held)
    row.deployments.extend(LtiDeployment(deployment_id=d) for d in added)
    session.commit()
    return Registered(registration_of(row), created, added)


def list_platforms(session: DbSession) -> list[PlatformRegistration]:
    """Every registration, by issuer then client id."""
    rows = session.scalars(select(LtiPlatform).order_by(LtiPlatform.issuer,
                                                        LtiPlatform.client_id))
    return [registration_of(row) for row in rows]


def platforms_of(session: DbSession, issuer: str) -> list[PlatformRegistration]:
    """The registrations of one issuer (one per client id), none when it is unknown."""
    rows = session.scalars(select(LtiPlatform).where(LtiPlatform.issuer == issuer)
                           .order_by(LtiPlatform.client_id))
    return [registration_of(row) for row in rows]


def find_platform(session: DbSession, issuer: str,
                  client_id: str | None = None) -> PlatformRegistration | None:
    """The registration of ``issuer`` and ``client_id``; without a client id, the issuer's
    registration when it has exactly one (a platform's login request may omit the client id).
    None when there is no such registration."""
    if client_id is not None:
        row = _find_row(session, issuer, client_id)
        return None if row is None else registration_of(row)
    found = platforms_of(session, issuer)
    return found[0] if len(found) == 1 else None


def platform_id_of(session: DbSession, issuer: str, client_id: str) -> int:
    """The row id of the registration (``issuer``, ``client_id``); it must exist."""
    row = _find_row(session, issuer, client_id)
    assert row is not None, f"no registration {issuer} {client_id}"
    return row.id


def has_deployment(session: DbSession, issuer: str, deployment_id: str,
                   client_id: str | None = None) -> bool:
    """Whether ``deployment_id`` is registered for ``issuer`` (and ``client_id`` if given)."""
    query = (select(LtiDeployment.id).join(LtiDeployment.platform)
             .where(LtiPlatform.issuer == issuer, LtiDeployment.deployment_id == deployment_id))
    if client_id is not None:
        query = query.where(LtiPlatform.client_id == client_id)
    return session.execute(query.limit(1)).first() is not None


def remove_platform(session: DbSession, issuer: str, client_id: str | None = None,
                    deployment_ids: Iterable[str] = ()) -> list[str]:
    """Remove deployments, registrations or a whole issuer; what was removed, in words.

    With ``deployment_ids``: those deployments only (of ``client_id`` when given). Else with
    ``client_id``: that registration and its deployments. Else every registration of
    ``issuer``. Naming something not registered is refused and removes nothing."""
    rows = list(session.scalars(select(LtiPlatform).where(LtiPlatform.issuer == issuer)
                                .order_by(LtiPlatform.client_id)))
    if not rows:
        known = ", ".join(dict.fromkeys(p.issuer for p in list_platforms(session))) or "none"
        raise RegistrationError("unknown_issuer", f"--issuer: {issuer!r} is not registered "
                                f"(registered: {known})")
    if client_id is not None:
        rows = [row for row in rows if row.client_id == client_id]
        if not rows:
            raise RegistrationError("unknown_client", f"--client-id: {issuer} has no client id "
                                    f"{client_id!r}")
    removed: list[str] = []
    wanted = list(dict.fromkeys(deployment_ids))
    if wanted:
        found = {d.deployment_id: (row, d) for row in rows for d in row.deployments}
        missing = [d for d in wanted if d not in found]
        if missing:
            raise RegistrationError("unknown_deployment", f"--deployment-id: {issuer} has no "
                                    f"deployment {', '.join(map(repr, missing))}")
        for deployment_id in wanted:
            row, deployment = found[deployment_id]
            row.deployments.remove(deployment)
            removed.append(f"deployment {deployment_id} of {issuer} (client id {row.client_id})")
    else:
        for row in rows:
            session.delete(row)
            removed.append(f"{issuer} (client id {row.client_id}, "
                           f"{len(row.deployments)} deployments)")
    session.commit()
    return removed


def _find_row(session: DbSession, issuer: str, client_id: str) -> LtiPlatform | None:
    return session.scalars(select(LtiPlatform).where(LtiPlatform.issuer == issuer,
                                                     LtiPlatform.client_id == client_id)
                           ).one_or_none()
