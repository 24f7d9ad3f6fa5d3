"""What an LTI 1.3 message says: the claim names, role and scope URIs and media types of the
specifications (LTI Core 1.3, Deep Linking 2.0, AGS 2.0, NRPS 2.0), the people, course and links
a launch is about, and the one function that turns a launch into an id_token's claims.

The names are spelled out here once so that a test reads ``claims.ROLES`` rather than a URI.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tests.lti.keys import KeyPair

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
MESSAGE_TYPE = LTI + "message_type"
VERSION = LTI + "version"
DEPLOYMENT_ID = LTI + "deployment_id"
TARGET_LINK_URI = LTI + "target_link_uri"
RESOURCE_LINK = LTI + "resource_link"
ROLES = LTI + "roles"
CONTEXT = LTI + "context"
CUSTOM = LTI + "custom"
LAUNCH_PRESENTATION = LTI + "launch_presentation"
TOOL_PLATFORM = LTI + "tool_platform"
AGS_ENDPOINT = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
DEEP_LINKING_SETTINGS = DL + "deep_linking_settings"
CONTENT_ITEMS = DL + "content_items"
DL_DATA = DL + "data"
DL_MSG = DL + "msg"
DL_ERRORMSG = DL + "errormsg"

LTI_VERSION = "1.3.0"


class MessageType(StrEnum):
    """The messages a platform sends (requests) and the one it receives (the response)."""

    RESOURCE_LINK = "LtiResourceLinkRequest"
    DEEP_LINKING = "LtiDeepLinkingRequest"
    DEEP_LINKING_RESPONSE = "LtiDeepLinkingResponse"


class Role(StrEnum):
    """Role URIs as Moodle and Canvas send them (LIS v2 vocabulary)."""

    LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
    INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
    TEACHING_ASSISTANT = "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"
    CONTENT_DEVELOPER = "http://purl.imsglobal.org/vocab/lis/v2/membership#ContentDeveloper"
    ADMINISTRATOR = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"
    INSTITUTION_STUDENT = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Student"


class Scope(StrEnum):
    """The OAuth2 scopes of LTI Advantage's services."""

    LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
    LINEITEM_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
    RESULT_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
    SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
    MEMBERSHIPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"


class MediaType(StrEnum):
    """Content types of the services' bodies."""

    SCORE = "application/vnd.ims.lis.v1.score+json"
    LINEITEM = "application/vnd.ims.lis.v2.lineitem+json"
    LINEITEMS = "application/vnd.ims.lis.v2.lineitemcontainer+json"
    RESULTS = "application/vnd.ims.lis.v2.resultcontainer+json"
    MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"


@dataclass(frozen=True)
class User:
    """A person of the platform; ``sub`` is the stable opaque id the tool sees."""

    sub: str
    given_name: str = ""
    family_name: str = ""
    email: str = ""

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()

    def identity_claims(self) -> dict[str, str]:
        """``sub`` and whichever of the name and email claims the platform shares."""
        found = {"sub": self.sub, "name": self.name, "given_name": self.given_name,
                 "family_name": self.family_name, "email": self.email}
        return {key: value for key, value in found.items() if value}


@dataclass(frozen=True)
class Context:
    """The course the launches happen in."""

    id: str = "course-dl101"
    label: str = "DL101"
    title: str = "Deep Learning 101"
    type: tuple[str, ...] = ("http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering",)

    def claim(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "title": self.title, "type": list(self.type)}


@dataclass(frozen=True)
class ResourceLink:
    """A placement of the tool in the course: what a learner clicks. ``custom`` holds the
    parameters the link was given (by hand, or by the tool's deep-linking answer)."""

    id: str
    title: str = ""
    custom: Mapping[str, str] = field(default_factory=dict)

    def claim(self) -> dict[str, str]:
        return {"id": self.id, **({"title": self.title} if self.title else {})}


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a launch is about, decided when it is started; the id_token is made from it
    when the tool comes back to the authorization endpoint with its nonce.

    ``claim_overrides`` replace claims of the signed token (:data:`DROP` removes one), and
    ``signing_key`` signs it instead of the platform's current key (its ``kid`` goes in the
    header): both only for the negative tests, to have the platform sign what a forger or a
    broken LMS would.
    """

    hint: str
    message_type: MessageType
    user: User
    roles: tuple[str, ...]
    deployment_id: str
    target_link_uri: str
    context: Context
    resource_link: ResourceLink | None
    custom: Mapping[str, str]
    claim_overrides: Mapping[str, Any] = field(default_factory=dict)
    signing_key: KeyPair | None = None


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


#: A claim override that removes the claim from the token.
DROP: Any = _Drop()


def expired(now: float | None = None) -> dict[str, int]:
    """Claim overrides of a token issued ten minutes ago that expired five minutes ago."""
    issued = int(time.time() if now is None else now) - 600
    return {"iat": issued, "nbf": issued, "exp": issued + 300}


def apply_overrides(claims: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``claims`` with each override set, or removed where it is :data:`DROP`."""
    changed = dict(claims)
    for name, value in overrides.items():
        if value is DROP:
            changed.pop(name, None)
        else:
            changed[name] = value
    return changed


def id_token_claims(plan: LaunchPlan, *, issuer: str, client_id: str, nonce: str,
                    services: Mapping[str, Any], lifetime: int = 300,
                    now: float | None = None) -> dict[str, Any]:
    """The claims of the id_token for ``plan``: identity, every LTI claim the message type
    calls for, and ``services`` (the AGS, NRPS or deep-linking settings claims the platform
    grants), then the plan's overrides."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client_id,
        "azp": client_id,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "nonce": nonce,
        **plan.user.identity_claims(),
        MESSAGE_TYPE: str(plan.message_type),
        VERSION: LTI_VERSION,
        DEPLOYMENT_ID: plan.deployment_id,
        TARGET_LINK_URI: plan.target_link_uri,
        ROLES: list(plan.roles),
        CONTEXT: plan.context.claim(),
        LAUNCH_PRESENTATION: {"document_target": "iframe", "locale": "en"},
        TOOL_PLATFORM: {"guid": issuer, "name": "LTI platform of the tests",
                        "product_family_code": "grader-tests", "version": "1"},
    }
    custom = {**(plan.resource_link.custom if plan.resource_link else {}), **plan.custom}
    if custom:
        claims[CUSTOM] = custom
    if plan.resource_link is not None and plan.message_type is MessageType.RESOURCE_LINK:
        claims[RESOURCE_LINK] = plan.resource_link.claim()
    claims.update(services)
    return apply_overrides(claims, plan.claim_overrides)
