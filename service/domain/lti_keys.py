"""The tool's RSA keys (``lti_keys``): the one that signs, and the ones platforms may still
check.

What this module promises:

- There is always a signing key once anyone asks: the first call of :func:`signing_key` or
  :func:`published_keys` (the first ``/lti/jwks`` request, the first command) makes one.
- The signing key is the newest key not retired. :func:`rotate_key` makes a new one; the
  previous keys stay in the published set, because platforms cache the tool's key set and a
  token signed a minute before the rotation must still check, until :func:`retire_keys` retires
  those replaced more than a given time ago. A retired key leaves the set and its private half
  is erased.
- Keys live in the database, so every web process and worker signs with the same key, and
  nothing secret is written to the repository or to a log. The private PEM leaves this module
  only in :class:`ToolKey`, for the code that signs (pylti1p3's registration).

Two processes making the first key at the same moment make two keys; both are published and
both then sign with the newest, so nothing breaks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from service.extensions import DbSession
from service.models import LtiKey, utcnow

#: RSA modulus size of a new key (RS256 needs 2048 bits or more).
KEY_BITS = 2048
ALGORITHM = "RS256"


@dataclass(frozen=True)
class ToolKey:
    """The signing key: its id (the JWT header's ``kid``), its private PEM and public JWK."""

    kid: str
    private_pem: str
    public_jwk: dict[str, Any]

    def __repr__(self) -> str:  # never the private key in a log or a traceback
        return f"ToolKey(kid={self.kid!r})"


@dataclass(frozen=True)
class KeyState:
    """One key as ``lti keys`` shows it: when it was made, replaced and retired."""

    kid: str
    created_at: dt.datetime
    replaced_at: dt.datetime | None
    retired_at: dt.datetime | None
    signing: bool


def new_key_row() -> LtiKey:
    """A fresh RSA key as a row (not added to any session)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    numbers = private.public_key().public_numbers()
    jwk = {"kty": "RSA", "n": _b64(numbers.n), "e": _b64(numbers.e)}
    kid = thumbprint(jwk)
    return LtiKey(kid=kid, private_pem=pem,
                  public_jwk={**jwk, "kid": kid, "alg": ALGORITHM, "use": "sig"})


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of an RSA JWK (SHA-256, base64url): the key's ``kid``."""
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]},
                           separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()
                                    ).rstrip(b"=").decode("ascii")


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _live(session: DbSession) -> list[LtiKey]:
    """Keys not retired, newest first."""
    return list(session.scalars(select(LtiKey).where(LtiKey.retired_at.is_(None))
                                .order_by(LtiKey.created_at.desc(), LtiKey.id.desc())))


def _tool_key(row: LtiKey) -> ToolKey:
    assert row.private_pem is not None, "a live key keeps its private half"
    return ToolKey(kid=row.kid, private_pem=row.private_pem, public_jwk=dict(row.public_jwk))


def signing_key(session: DbSession) -> ToolKey:
    """The key that signs now: the newest not retired, made when there is none."""
    live = _live(session)
    if live:
        return _tool_key(live[0])
    session.add(new_key_row())
    session.commit()
    return _tool_key(_live(session)[0])


def rotate_key(session: DbSession) -> ToolKey:
    """A new signing key; the previous ones stay published until :func:`retire_keys`."""
    row = new_key_row()
    session.add(row)
    session.commit()
    return _tool_key(row)


def published_keys(session: DbSession) -> dict[str, list[dict[str, Any]]]:
    """The JSON Web Key Set served at ``/lti/jwks``: the public half of every key not retired
    (the signing key first), each with ``kid``, ``alg`` RS256 and ``use`` sig."""
    live = _live(session)
    if not live:
        signing_key(session)
        live = _live(session)
    return {"keys": [dict(row.public_jwk) for row in live]}


def key_states(session: DbSession) -> list[KeyState]:
    """Every key, newest first; a key is replaced when the next newer one was made."""
    rows = list(session.scalars(select(LtiKey).order_by(LtiKey.created_at.desc(),
                                                        LtiKey.id.desc())))
    live = [row for row in rows if row.retired_at is None]
    signing = live[0].kid if live else None
    states = []
    newer: LtiKey | None = None
    for row in rows:
        states.append(KeyState(kid=row.kid, created_at=row.created_at,
                               replaced_at=newer.created_at if newer else None,
                               retired_at=row.retired_at, signing=row.kid == signing))
        newer = row
    return states


def retire_keys(session: DbSession, older_than: dt.timedelta,
                now: dt.datetime | None = None) -> list[str]:
    """Retire the keys replaced more than ``older_than`` ago (never the signing key): they
    leave the published set and their private halves are erased. The retired kids."""
    now = now or utcnow()
    live = _live(session)
    retired = []
    for newer, row in itertools.pairwise(live):
        if newer.created_at <= now - older_than:
            row.retired_at = now
            row.private_pem = None
            retired.append(row.kid)
    session.commit()
    return retired
