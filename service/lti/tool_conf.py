"""pylti1p3's tool configuration read from the database.

pylti1p3 asks its tool configuration for the registration of an issuer and client id (at the
OIDC login and at the launch), for a deployment, and for the tool's keys. ``ToolConfDict`` and
``ToolConfJsonFile`` answer from a dict or a file written by hand; :class:`DatabaseToolConf`
answers from the rows ``flask --app service lti register`` wrote, so that a platform is added
without a restart and every process sees the same registrations.

Every issuer is treated as possibly holding several client ids (pylti1p3's "many clients"
relation: the library then asks by issuer *and* client id). A platform's login request without
``client_id`` still finds the issuer's registration when it has only one.

A registration not found raises :class:`UnknownPlatform` (a pylti1p3 ``LtiException``, which
the launch turns into a 4xx page); a deployment not found is None, as pylti1p3 expects.
"""

from __future__ import annotations

from typing import Any

from pylti1p3.contrib.flask import FlaskRequest
from pylti1p3.deployment import Deployment
from pylti1p3.exception import LtiException
from pylti1p3.registration import Registration
from pylti1p3.tool_config.abstract import ToolConfAbstract

from service.domain.lti_keys import ToolKey, published_keys, signing_key
from service.domain.lti_registrations import PlatformRegistration, find_platform, has_deployment
from service.extensions import DbSession


class UnknownPlatform(LtiException):
    """No registration for this issuer (and client id): the platform was not registered with
    ``lti register``, or under another client id."""

    def __init__(self, issuer: str, client_id: str | None) -> None:
        said = f" and client id {client_id!r}" if client_id is not None else ""
        super().__init__(f"no LTI registration for issuer {issuer!r}{said}")
        self.issuer = issuer
        self.client_id = client_id


class ToolRegistration(Registration):
    """pylti1p3's registration, signing with the tool's key from the database: its ``kid``
    is the one published at ``/lti/jwks`` (pylti1p3 would derive none from a PEM)."""

    def __init__(self, platform: PlatformRegistration, key: ToolKey) -> None:
        self.platform = platform
        self.key = key
        (self.set_issuer(platform.issuer).set_client_id(platform.client_id)
         .set_auth_login_url(platform.auth_login_url)
         .set_auth_token_url(platform.auth_token_url)
         .set_key_set_url(platform.key_set_url)
         .set_tool_private_key(key.private_pem))
        if platform.audience:
            self.set_auth_audience(platform.audience)

    def get_kid(self) -> str | None:
        return self.key.kid

    def get_jwks(self) -> list[Any]:
        return [self.key.public_jwk]

    def __repr__(self) -> str:
        return (f"ToolRegistration(issuer={self.platform.issuer!r}, "
                f"client_id={self.platform.client_id!r}, kid={self.key.kid!r})")


class DatabaseToolConf(ToolConfAbstract[FlaskRequest]):
    """The registrations of ``lti_platforms`` and ``lti_deployments``, read through
    ``session`` at each question (a registration added by the command line counts at once)."""

    def __init__(self, session: DbSession) -> None:
        self.session = session

    def check_iss_has_one_client(self, iss: str) -> bool:
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return True

    def registration(self, iss: str, client_id: str | None) -> ToolRegistration:
        """The registration of ``iss`` (and ``client_id``), signing with the current key."""
        platform = find_platform(self.session, iss, client_id)
        if platform is None:
            raise UnknownPlatform(iss, client_id)
        return ToolRegistration(platform, signing_key(self.session))

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any) -> Registration:
        return self.registration(iss, None)

    def find_registration_by_params(self, iss: str, client_id: str, *args: Any,
                                    **kwargs: Any) -> Registration:
        return self.registration(iss, client_id or None)

    def find_deployment(self, iss: str, deployment_id: str) -> Deployment | None:
        return self._deployment(iss, deployment_id, None)

    def find_deployment_by_params(self, iss: str, deployment_id: str, client_id: str,
                                  *args: Any, **kwargs: Any) -> Deployment | None:
        return self._deployment(iss, deployment_id, client_id or None)

    def _deployment(self, iss: str, deployment_id: str,
                    client_id: str | None) -> Deployment | None:
        if not deployment_id or not has_deployment(self.session, iss, deployment_id,
                                                   client_id):
            return None
        return Deployment().set_deployment_id(deployment_id)

    def get_jwks(self, iss: str | None = None, client_id: str | None = None,
                 **kwargs: Any) -> dict[str, list[Any]]:
        """The tool's published keys, whoever asks (one key set for every platform)."""
        return dict(published_keys(self.session))
