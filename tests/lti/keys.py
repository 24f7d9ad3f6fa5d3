"""RSA keys, key sets and the checking of a JWT against a key set fetched over HTTP: what both
sides of LTI 1.3 sign with. The platform of the tests holds :class:`KeyPair` objects of its own;
a test that plays the tool makes one too and serves it with :class:`JwksServer`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from tests.lti.serving import serve_in_thread

#: The one signature algorithm LTI 1.3 requires of everyone; nothing else is accepted.
ALGORITHM = "RS256"

#: Seconds a JWT's ``iat``/``exp``/``nbf`` may be off by (clocks of two machines).
LEEWAY = 5


class Refused(Exception):
    """A message the platform will not accept: an OAuth2/OIDC ``error`` code and a sentence
    for a person (``error_description``), as the HTTP answer carries them."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class KeyPair:
    """An RSA key and the ``kid`` its signatures name."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, kid: str | None = None) -> KeyPair:
        """A new 2048-bit key (about 50 ms)."""
        return cls(kid or uuid.uuid4().hex,
                   rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK (``kty``, ``n``, ``e``, ``kid``, ``alg``, ``use``)."""
        found: dict[str, Any] = json.loads(
            jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {**found, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def sign(self, claims: Mapping[str, Any], *, kid: str | None = None,
             headers: Mapping[str, Any] | None = None) -> str:
        """``claims`` as a compact JWS signed with this key; ``kid`` names another key in the
        header (a forgery that claims to be signed by a published key)."""
        return jwt.encode(dict(claims), self.private_key, algorithm=ALGORITHM,
                          headers={"kid": kid or self.kid, "typ": "JWT", **(headers or {})})


def key_set(keys: Iterable[KeyPair]) -> dict[str, list[dict[str, Any]]]:
    """The JWKS document publishing ``keys``."""
    return {"keys": [key.public_jwk() for key in keys]}


def fetch_key_set(url: str) -> dict[str, Any]:
    """The JWKS at ``url``; :class:`Refused` (``invalid_client``) when it cannot be had."""
    try:
        answer = requests.get(url, timeout=5)
        answer.raise_for_status()
        found = answer.json()
    except (requests.RequestException, ValueError) as error:
        raise Refused("invalid_client", f"the key set at {url} could not be read: {error}",
                      401) from error
    if not isinstance(found, dict) or not isinstance(found.get("keys"), list):
        raise Refused("invalid_client", f"{url} is not a JSON Web Key Set", 401)
    return found


def verify_jwt(token: str, jwks_url: str, *, audience: str | list[str], issuer: str,
               required: Iterable[str] = ("iss", "aud", "iat", "exp")) -> dict[str, Any]:
    """The claims of ``token`` once its signature is checked against the key named by its
    ``kid`` in the key set fetched now from ``jwks_url`` (so a rotated key is seen at once),
    RS256 only, with ``aud``, ``iss`` and the times checked and every claim of ``required``
    present. :class:`Refused` (``invalid_client``, 401) says what failed."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise Refused("invalid_client", f"not a JWT: {error}", 401) from error
    if header.get("alg") != ALGORITHM:
        raise Refused("invalid_client", f"alg {header.get('alg')!r} is not {ALGORITHM}", 401)
    kid = header.get("kid")
    if not kid:
        raise Refused("invalid_client", "the JWT's header names no kid", 401)
    published = [jwk for jwk in fetch_key_set(jwks_url)["keys"] if jwk.get("kid") == kid]
    if not published:
        raise Refused("invalid_client", f"no key {kid!r} in {jwks_url}", 401)
    try:
        key = jwt.PyJWK(published[0], algorithm=ALGORITHM)
        return jwt.decode(token, key.key, algorithms=[ALGORITHM], audience=audience,
                          issuer=issuer, leeway=LEEWAY,
                          options={"require": list(required), "verify_signature": True})
    except jwt.PyJWTError as error:
        raise Refused("invalid_client", f"the JWT was refused: {error}", 401) from error


class JwksServer:
    """A key set served at ``url`` on a free port of 127.0.0.1 (what a tool publishes at its
    JWKS endpoint), for tests that play the tool. ``keys`` may be replaced while it runs."""

    def __init__(self, keys: Iterable[KeyPair]) -> None:
        self.keys: list[KeyPair] = list(keys)
        self._server: BaseWSGIServer | None = None

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path != "/jwks":
            return Response("not found", 404)(environ, start_response)
        return Response(json.dumps(key_set(self.keys)), 200,
                        content_type="application/json")(environ, start_response)

    @property
    def url(self) -> str:
        assert self._server is not None, "the JWKS server is not started"
        return f"http://127.0.0.1:{self._server.server_port}/jwks"

    def __enter__(self) -> Self:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        serve_in_thread(self._server, name="lti-jwks")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
