"""What an LMS administrator pastes into the platform to add the tool: its URLs, the services
(scopes) it uses, Moodle 4.x's "External tool" fields and Canvas's developer key JSON.

Everything is built from the service's public address (``PUBLIC_URL``, else the address the
request came to), so a page behind a proxy still shows addresses the platform can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: The tool's routes (``service.views.lti``). The launch route answers both resource link
#: launches and deep-linking requests (it tells them apart by ``message_type``).
LOGIN_PATH = "/lti/login"
LAUNCH_PATH = "/lti/launch"
DEEP_LINK_PATH = "/lti/launch"
JWKS_PATH = "/lti/jwks"
CANVAS_PATH = "/lti/canvas.json"

TOOL_ID = "notebook-grader"

AGS_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
AGS_RESULT = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
AGS_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
NRPS_MEMBERSHIP = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
#: The OAuth2 scopes the tool asks the platform for: line items, results and scores
#: (Assignment and Grade Services), the course's members (Names and Role Provisioning).
SCOPES = (AGS_LINEITEM, AGS_RESULT, AGS_SCORE, NRPS_MEMBERSHIP)

#: The launch claims the tool reads (besides those every LTI 1.3 launch carries).
CLAIMS = (
    "sub", "name", "given_name", "family_name", "email",
    "https://purl.imsglobal.org/spec/lti/claim/roles",
    "https://purl.imsglobal.org/spec/lti/claim/context",
    "https://purl.imsglobal.org/spec/lti/claim/resource_link",
    "https://purl.imsglobal.org/spec/lti/claim/custom",
    "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint",
    "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice",
    "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings",
)
#: The custom parameter naming the exercise a resource link opens (``exercise=chap06_cnn``).
EXERCISE_PARAMETER = "exercise"


@dataclass(frozen=True)
class ToolUrls:
    """The tool's addresses as a platform reaches them."""

    base: str
    login: str
    launch: str
    deep_link: str
    jwks: str
    canvas: str

    @property
    def domain(self) -> str:
        return urlsplit(self.base).netloc


def public_base(public_url: str | None, request_host_url: str) -> str:
    """The service's address without a trailing slash: ``PUBLIC_URL`` when set, else the
    address this request came to."""
    return (public_url or request_host_url).rstrip("/")


def tool_urls(base: str) -> ToolUrls:
    """Every address of the tool under ``base`` (``https://grader.example.org``)."""
    base = base.rstrip("/")
    return ToolUrls(base=base, login=base + LOGIN_PATH, launch=base + LAUNCH_PATH,
                    deep_link=base + DEEP_LINK_PATH, jwks=base + JWKS_PATH,
                    canvas=base + CANVAS_PATH)


def canvas_configuration(urls: ToolUrls, title: str, description: str) -> dict[str, Any]:
    """Canvas's LTI 1.3 developer key configuration ("Paste JSON" or "Enter URL"): the tool's
    login, launch and key set URLs, the grade and roster scopes, and two placements that open
    the tool's exercise picker (a deep-linking request) from a module and from an assignment."""
    placement = {"message_type": "LtiDeepLinkingRequest", "target_link_uri": urls.deep_link,
                 "text": title, "selection_width": 800, "selection_height": 600}
    return {
        "title": title,
        "description": description,
        "oidc_initiation_url": urls.login,
        "target_link_uri": urls.launch,
        "public_jwk_url": urls.jwks,
        "scopes": list(SCOPES),
        "extensions": [{
            "domain": urls.domain,
            "tool_id": TOOL_ID,
            "platform": "canvas.instructure.com",
            "privacy_level": "public",
            "settings": {
                "text": title,
                "placements": [
                    {"placement": "link_selection", **placement},
                    {"placement": "assignment_selection", **placement},
                ],
            },
        }],
        "custom_fields": {},
    }
