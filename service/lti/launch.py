"""The OIDC login and the launch, with pylti1p3 doing the protocol and this module closing its
gaps; every refusal becomes a :class:`LaunchRefused` whose ``code`` the view turns into a page.

What pylti1p3 checks (``MessageLaunch.validate``, in this order): the ``state`` is the one this
browser's login set (its cookie, or the launch data bound to its ``lti1p3-session-id``); the
token has three parts; its ``nonce`` was handed to this browser; the issuer and client id
(``aud``) are registered; the signature checks against the platform's key set under the
header's ``kid`` (PyJWT: also ``exp``, ``nbf``); the deployment is registered; the message is a
known type, of version 1.3.0, with ``sub``, roles and (a resource link) its id.

What it does not, and :func:`validated_launch` adds: ``aud`` holding the client id and ``azp``
being it when present (required with several audiences); ``exp`` and ``iat`` present and ``iat``
not in the future; the nonce never used before, whatever the browser
(``service.domain.lti_nonces.use_nonce``). The platform's key set is cached in the database for
an hour and fetched again, once, when a token names a ``kid`` it does not hold (a rotation).

The code of a refusal, what it means, and its HTTP status:

==================  =====  ==============================================================
``no_cookie``        400   no ``lti1p3-session-id`` cookie came with the launch: the browser
                           blocked the tool's cookies (a frame), or the login was elsewhere
``state``            400   the ``state`` or the ``nonce`` is not this browser's login's
``unknown_platform`` 403   issuer (and client id) not registered (``lti register``)
``audience``         403   ``aud``/``azp`` do not name the client id the issuer registered
``deployment``       403   the deployment id is not registered for the platform
``signature``        401   not signed by a key of the platform's key set, or malformed
``expired``          401   the token's ``exp`` has passed (or ``iat`` is in the future)
``replayed``         409   this launch (its nonce) was already used
``message``          400   not a 1.3.0 resource link or deep-linking request, or a claim
                           it must carry is missing
``keys_unreachable`` 400   the platform's key set could not be read
``login``            400   the login initiation lacks ``iss`` or ``login_hint``
==================  =====  ==============================================================
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

import jwt
import requests
from flask import current_app, request
from pylti1p3.contrib.flask import FlaskMessageLaunch, FlaskOIDCLogin, FlaskRequest
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.launch_data_storage.base import DisableSessionId

from service.domain.lti_nonces import MAX_KEEP, use_nonce
from service.domain.lti_registrations import platforms_of
from service.extensions import db
from service.lti.http import timeout_session
from service.lti.launch_storage import DatabaseLaunchStorage
from service.lti.tool_conf import DatabaseToolConf, UnknownPlatform

#: How long a platform's key set is kept (fetched again sooner for a ``kid`` it lacks).
KEY_SET_SECONDS = 3600
#: Clock skew allowed on ``iat``.
LEEWAY_SECONDS = 60

STATUS = {"no_cookie": 400, "state": 400, "unknown_platform": 403, "audience": 403,
          "deployment": 403, "signature": 401, "expired": 401, "replayed": 409,
          "message": 400, "keys_unreachable": 400, "login": 400}


class LaunchRefused(Exception):
    """A login or launch refused: ``code`` (see the module's table) and, for the log, what
    the library or the check said."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)


def served_over_https() -> bool:
    """Whether browsers reach the service over HTTPS: ``PUBLIC_URL`` says so, or this request
    came over it. Then the cookies a launch needs inside the LMS's frame are
    ``SameSite=None; Secure``; over plain http (a local platform) they stay ``Lax``."""
    public = current_app.config.get("PUBLIC_URL") or ""
    return public.startswith("https://") or request.is_secure


def _flask_request() -> FlaskRequest:
    return FlaskRequest(request_is_secure=served_over_https())


class ToolLaunch(FlaskMessageLaunch):
    """pylti1p3's launch with the platform's key set cached in the database and fetched again
    when a token's ``kid`` is not in it, and with time limits on every request it makes."""

    _refetched = False

    def fetch_public_key(self, key_set_url: str) -> Any:
        cache_key = "key-set-" + hashlib.sha256(key_set_url.encode()).hexdigest()
        storage = self._public_key_cache_data_storage
        with DisableSessionId(storage):
            if storage is not None and not self._refetched:
                cached = storage.get_value(cache_key)
                if cached:
                    return cached
            try:
                response = self._requests_session.get(key_set_url)
                response.raise_for_status()
                keys = response.json()
            except (requests.RequestException, ValueError) as exc:
                raise LtiException(f"Error during fetch URL {key_set_url}: {exc}") from exc
            if storage is not None:
                storage.set_value(cache_key, keys, KEY_SET_SECONDS)
            return keys

    def get_public_key(self) -> tuple[str, str]:
        try:
            return super().get_public_key()
        except LtiException as exc:
            if self._refetched or "Unable to find public key" not in str(exc):
                raise
            self._refetched = True  # a kid not in the cached set: the platform rotated?
            assert self._registration is not None
            self._registration.set_key_set(None)
            return super().get_public_key()


def login_redirect(launch_url: str) -> Any:
    """The answer to a platform's login initiation: a redirect to its authorization endpoint
    with a new state (cookie) and nonce (in the launch storage), or :class:`LaunchRefused`."""
    login = FlaskOIDCLogin(_flask_request(), DatabaseToolConf(db.session),
                           launch_data_storage=DatabaseLaunchStorage(db.session))
    try:
        return login.redirect(launch_url)
    except UnknownPlatform as exc:
        raise LaunchRefused("unknown_platform", str(exc)) from None
    except (OIDCException, LtiException) as exc:
        raise LaunchRefused("login", str(exc)) from None


def validated_launch() -> tuple[ToolLaunch, dict[str, Any]]:
    """This request's launch, validated by pylti1p3 and by the checks it lacks, its nonce
    recorded as used; with its claims. :class:`LaunchRefused` otherwise."""
    storage = DatabaseLaunchStorage(db.session)
    try:
        launch = ToolLaunch(_flask_request(), DatabaseToolConf(db.session),
                            launch_data_storage=storage, requests_session=timeout_session())
    except LtiException as exc:  # the lti1p3-session-id cookie is missing
        raise LaunchRefused("no_cookie", str(exc)) from None
    launch.set_public_key_caching(DatabaseLaunchStorage(db.session), KEY_SET_SECONDS)
    try:
        launch.validate()
        claims: dict[str, Any] = dict(launch.get_launch_data())
    except UnknownPlatform as exc:
        known = platforms_of(db.session, exc.issuer)
        raise LaunchRefused("audience" if known else "unknown_platform", str(exc)) from None
    except LtiException as exc:
        raise LaunchRefused(_code_of(str(exc)), str(exc)) from None
    except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
        raise LaunchRefused("signature", f"{type(exc).__name__}: {exc}") from None
    _check_claims(claims, launch.get_client_id())
    expires = dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC).replace(tzinfo=None)
    if not use_nonce(db.session, str(claims["iss"]), str(claims["nonce"]), expires):
        raise LaunchRefused("replayed", f"nonce {claims['nonce']!r} was used already")
    return launch, claims


def restored_launch(launch_id: str) -> ToolLaunch:
    """A launch validated earlier in this browser (a deep-linking request being answered),
    from the launch storage; :class:`LaunchRefused` (``state``) when it is gone."""
    try:
        launch = ToolLaunch.from_cache(launch_id, _flask_request(), DatabaseToolConf(db.session),
                                       launch_data_storage=DatabaseLaunchStorage(db.session),
                                       requests_session=timeout_session())
    except LtiException as exc:
        raise LaunchRefused("state", str(exc)) from None
    assert isinstance(launch, ToolLaunch)
    return launch


def _check_claims(claims: dict[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    azp = claims.get("azp")
    if client_id not in audiences or (azp is not None and azp != client_id):
        raise LaunchRefused("audience", f"aud {aud!r} / azp {azp!r} for client {client_id!r}")
    if len(audiences) > 1 and azp is None:
        raise LaunchRefused("audience", "several audiences and no azp")
    if not isinstance(claims.get("exp"), int | float) or not isinstance(claims.get("iat"),
                                                                        int | float):
        raise LaunchRefused("message", "exp and iat are required")
    if claims["iat"] > time.time() + LEEWAY_SECONDS:
        raise LaunchRefused("expired", "iat is in the future")
    if claims["exp"] > time.time() + MAX_KEEP.total_seconds():
        # its nonce is kept only MAX_KEEP: a longer-lived token could be replayed after that
        raise LaunchRefused("message", "exp is more than two days ahead")
    if not claims.get("nonce"):
        raise LaunchRefused("message", "nonce is required")


def _code_of(message: str) -> str:
    """The refusal code of a pylti1p3 ``LtiException`` (it has no codes: its messages)."""
    lowered = message.lower()
    if "expired" in lowered or "not yet valid" in lowered:
        return "expired"
    for needle, code in (("state", "state"), ("nonce", "state"), ("deployment", "deployment"),
                         ("client id", "audience"), ("registration", "unknown_platform"),
                         ("error during fetch", "keys_unreachable"),
                         ("invalid response from", "keys_unreachable"),
                         ("public key", "signature"), ("decode", "signature"),
                         ("jwt", "signature"), ("kid", "signature"), ("alg", "signature")):
        if needle in lowered:
            return code
    return "message"
