"""The tool as the platform knows it (its registration), and the platform's OAuth2 authorization
server: access tokens for the client-credentials grant with a JWT client assertion (IMS
Security Framework 1.0, RFC 7523), and the bearer check of every service call.

What is refused, as a real LMS refuses it (RFC 6749 section 5.2 error codes):

- a grant other than ``client_credentials`` (400 ``unsupported_grant_type``), an assertion type
  other than JWT bearer or a missing parameter (400 ``invalid_request``);
- an assertion not signed by a key that the tool's JWKS URL publishes now under the header's
  ``kid``, not RS256, whose ``iss`` or ``sub`` is not the client id, whose ``aud`` is not the
  token endpoint, expired, without ``jti``, or whose ``jti`` was already used (401
  ``invalid_client``);
- no scope the tool may have among those asked for (400 ``invalid_scope``);
- a service call without a live token (401 ``invalid_token``) or whose token lacks the scope
  (403 ``insufficient_scope``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import jwt

from tests.lti.claims import Scope
from tests.lti.keys import Refused, verify_jwt

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class ToolRegistration:
    """What an LMS administrator typed in when adding the tool (Moodle's "External tool",
    Canvas's developer key)."""

    client_id: str
    deployment_ids: tuple[str, ...]
    #: the tool's OIDC login initiation URL
    login_url: str
    #: where the id_token may be posted (the tool's launch URL and any other it declared)
    redirect_uris: tuple[str, ...]
    #: the tool's public keys
    jwks_url: str
    #: the launch URL of a resource link that names none of its own
    target_link_uri: str
    #: where deep-linking requests go (default: ``target_link_uri``)
    deep_link_url: str = ""
    #: the services the tool may ask tokens for
    scopes: frozenset[str] = frozenset(Scope)

    @classmethod
    def at(cls, base_url: str, client_id: str = "grader",
           deployment_ids: tuple[str, ...] = ("1",)) -> ToolRegistration:
        """The registration of the service's tool at ``base_url``, with the endpoints issue 19
        names: ``/lti/login``, ``/lti/launch`` (launches and deep linking), ``/lti/jwks``."""
        launch = f"{base_url}/lti/launch"
        return cls(client_id, deployment_ids, f"{base_url}/lti/login", (launch,),
                   f"{base_url}/lti/jwks", launch, launch)


@dataclass(frozen=True)
class AccessToken:
    """An opaque bearer token handed out, the client it was for and what it allows."""

    value: str
    client_id: str
    scopes: frozenset[str]
    expires_at: float

    def to_json(self) -> dict[str, object]:
        return {"access_token": self.value, "token_type": "Bearer",
                "expires_in": max(0, round(self.expires_at - time.time())),
                "scope": " ".join(sorted(self.scopes))}


@dataclass
class TokenIssuer:
    """The token endpoint's logic: ``token_url`` is the audience an assertion must name."""

    token_url: str
    lifetime: float = 3600.0
    tokens: dict[str, AccessToken] = field(default_factory=dict)
    used_jtis: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, form: Mapping[str, str], tool: ToolRegistration | None) -> AccessToken:
        """An access token for the token request ``form``, or :class:`Refused`."""
        if form.get("grant_type") != "client_credentials":
            raise Refused("unsupported_grant_type", "only client_credentials is granted")
        if form.get("client_assertion_type") != JWT_BEARER:
            raise Refused("invalid_request", f"client_assertion_type must be {JWT_BEARER}")
        assertion, asked = form.get("client_assertion", ""), form.get("scope", "").split()
        if not assertion or not asked:
            raise Refused("invalid_request", "client_assertion and scope are required")
        if tool is None:
            raise Refused("invalid_client", "no tool is registered", 401)
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise Refused("invalid_client", f"not a JWT: {error}", 401) from error
        if unverified.get("iss") != tool.client_id or unverified.get("sub") != tool.client_id:
            raise Refused("invalid_client", "iss and sub must be the client id", 401)
        claims = verify_jwt(assertion, tool.jwks_url, audience=self.token_url,
                            issuer=tool.client_id,
                            required=("iss", "sub", "aud", "iat", "exp", "jti"))
        granted = frozenset(asked) & tool.scopes
        if not granted:
            raise Refused("invalid_scope", f"none of {asked} may be granted")
        with self._lock:
            now = time.time()
            self.used_jtis = {jti: exp for jti, exp in self.used_jtis.items() if exp > now}
            if claims["jti"] in self.used_jtis:
                raise Refused("invalid_client", f"jti {claims['jti']!r} was already used", 401)
            self.used_jtis[claims["jti"]] = float(claims["exp"]) + 60
            token = AccessToken(secrets.token_urlsafe(24), tool.client_id, granted,
                                now + self.lifetime)
            self.tokens[token.value] = token
            return token

    def check(self, authorization: str | None, needs: Iterable[str]) -> AccessToken:
        """The live token of an ``Authorization: Bearer`` header that holds one of ``needs``,
        or :class:`Refused` (401 without a live token, 403 without the scope)."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Refused("invalid_token", "an Authorization: Bearer token is required", 401)
        token = self.tokens.get(value.strip())
        if token is None or token.expires_at <= time.time():
            raise Refused("invalid_token", "the access token is unknown or expired", 401)
        needed = frozenset(needs)
        if not token.scopes & needed:
            raise Refused("insufficient_scope", f"the token lacks one of {sorted(needed)}", 403)
        return token

    def expire_all(self) -> None:
        """End every token handed out (the tool must ask again)."""
        with self._lock:
            self.tokens = {key: AccessToken(token.value, token.client_id, token.scopes, 0.0)
                           for key, token in self.tokens.items()}
