"""pylti1p3's launch data kept in the database (``lti_launch_data``).

Between the OIDC login and the launch, pylti1p3 keeps the nonce it sent and the state's
parameters; after the launch, the launch's claims under a launch id (a deep-linking answer or a
grade sent later reads them again). Its default keeps them in the Flask session, which fails
here twice: the service's session cookie is ``SameSite=Lax``, so the platform's cross-site POST
of the launch does not bring it, and a launch's claims (roles, context, the services' URLs)
outgrow a cookie. ``FlaskCacheDataStorage`` needs a cache server this service does not run.

:class:`DatabaseLaunchStorage` is pylti1p3's ``LaunchDataStorage`` over a table, shared by every
process. Values are bound to the browser as pylti1p3's cache storage binds them: the login sets
a ``lti1p3-session-id`` cookie (``SameSite=None; Secure`` over HTTPS) and every key is prefixed
with it, so a launch posted from another browser finds neither the nonce nor the state. Keys are
stored as their SHA-256; rows past their expiry are read as absent and removed as new values
come in. Values are JSON (pylti1p3 keeps booleans, strings and the launch's decoded claims).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from pylti1p3.launch_data_storage.base import LaunchDataStorage
from sqlalchemy import delete

from service.extensions import DbSession
from service.models import LtiLaunchData, utcnow

#: How long a value lives when pylti1p3 gives no expiry.
DEFAULT_SECONDS = 86400


class DatabaseLaunchStorage(LaunchDataStorage[Any]):
    """pylti1p3's launch data in ``lti_launch_data``, through ``session`` (committed at each
    write, so the next step of the launch may come to another process)."""

    def __init__(self, session: DbSession) -> None:
        super().__init__()
        self.session = session

    def can_set_keys_expiration(self) -> bool:
        return True

    def _row(self, key: str) -> LtiLaunchData | None:
        row = self.session.get(LtiLaunchData, _hash(self._prepare_key(key)))
        if row is None or row.expires_at <= utcnow():
            return None
        return row

    def get_value(self, key: str) -> Any:
        row = self._row(key)
        return None if row is None else row.value

    def check_value(self, key: str) -> bool:
        return self._row(key) is not None

    def set_value(self, key: str, value: Any, exp: int | None = None) -> None:
        now = utcnow()
        expires_at = now + dt.timedelta(seconds=exp if exp else DEFAULT_SECONDS)
        self.session.execute(delete(LtiLaunchData).where(LtiLaunchData.expires_at <= now))
        self.session.merge(LtiLaunchData(key_hash=_hash(self._prepare_key(key)), value=value,
                                         expires_at=expires_at))
        self.session.commit()


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
