"""Launch nonces already accepted (``lti_nonces``): the same launch posted twice is refused.

pylti1p3 checks that a launch's ``nonce`` is one its login step handed to this browser, but
keeps no record of the launches it accepted, so a captured launch (its ``id_token``) could be
posted again while the token lives. :func:`use_nonce` records each accepted nonce until the
token expires; a second use of the same nonce from the same issuer is refused, whatever the
process or the browser. Expired rows are removed as new nonces come in.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from service.extensions import DbSession, rowcount
from service.models import LtiNonce, utcnow

#: A nonce is kept at least this long, whatever the token's ``exp`` says (clock skew, and a
#: token without a sane expiry).
MIN_KEEP = dt.timedelta(minutes=10)
#: ... and at most this long (a token claiming to live for a year does not fill the table).
MAX_KEEP = dt.timedelta(days=2)


def use_nonce(session: DbSession, issuer: str, nonce: str, expires_at: dt.datetime,
              now: dt.datetime | None = None) -> bool:
    """Record ``nonce`` of ``issuer`` as used until ``expires_at`` (naive UTC, the token's
    ``exp``, kept within ``MIN_KEEP`` and ``MAX_KEEP`` from now). True the first time, False
    when it was used already (the launch must be refused). Commits."""
    now = now or utcnow()
    keep_until = min(max(expires_at, now + MIN_KEEP), now + MAX_KEEP)
    purge_nonces(session, now)
    try:
        with session.begin_nested():
            session.add(LtiNonce(issuer=issuer, nonce=nonce, expires_at=keep_until))
    except IntegrityError:
        session.commit()
        return False
    session.commit()
    return True


def purge_nonces(session: DbSession, now: dt.datetime | None = None) -> int:
    """Remove the nonces whose token has expired (a replay of it fails on ``exp``); how many.
    Does not commit."""
    return rowcount(session.execute(delete(LtiNonce).where(
        LtiNonce.expires_at < (now or utcnow()))))
