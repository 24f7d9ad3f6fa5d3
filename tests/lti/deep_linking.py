"""The platform's side of Deep Linking 2.0: the settings it sends with a deep-linking request,
and the check of the tool's answer (section 4.2) before any link is made of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.lti import claims as c
from tests.lti.claims import LaunchPlan, MessageType, ResourceLink
from tests.lti.gradebook import Gradebook, LineItem
from tests.lti.keys import Refused, verify_jwt
from tests.lti.oauth import ToolRegistration

#: What the platform lets a tool place: resource links only (what a grader offers).
ACCEPT_TYPES = ("ltiResourceLink",)


@dataclass(frozen=True)
class DeepLinkResult:
    """A deep-linking response the platform accepted, and the links it made of it."""

    plan: LaunchPlan
    claims: dict[str, Any]
    content_items: list[dict[str, Any]]
    links: list[ResourceLink]
    line_items: list[LineItem]


def settings_claim(plan: LaunchPlan, return_url: str) -> dict[str, Any]:
    """The deep-linking settings claim of ``plan``'s request; ``data`` must come back."""
    return {c.DEEP_LINKING_SETTINGS: {
        "deep_link_return_url": return_url, "accept_types": list(ACCEPT_TYPES),
        "accept_presentation_document_targets": ["iframe", "window"],
        "accept_multiple": True, "auto_create": True, "title": "Add an exercise",
        "data": f"dl-{plan.hint}"}}


def checked_response(token: str, plan: LaunchPlan, tool: ToolRegistration,
                     issuer: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The claims and content items of the tool's answer ``token`` to ``plan``, or
    :class:`Refused`: it must be signed by a key the tool publishes, from the tool
    (``iss`` = client id), for this platform (``aud`` = issuer), fresh, with a nonce (whose
    reuse the caller refuses), of the request's deployment, echoing its ``data``, and place
    only accepted types. A content item's ``lineItem`` is replaced by its checked fields
    (:meth:`~tests.lti.gradebook.Gradebook.checked_line_item`); the response as received stays
    in the claims."""
    found = verify_jwt(token, tool.jwks_url, audience=issuer, issuer=tool.client_id,
                       required=("iss", "aud", "iat", "exp", "nonce"))
    wanted = {c.MESSAGE_TYPE: str(MessageType.DEEP_LINKING_RESPONSE), c.VERSION: c.LTI_VERSION,
              c.DEPLOYMENT_ID: plan.deployment_id, c.DL_DATA: f"dl-{plan.hint}"}
    for name, value in wanted.items():
        if found.get(name) != value:
            raise Refused("invalid_request", f"{name} must be {value!r}")
    items = found.get(c.CONTENT_ITEMS, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise Refused("invalid_request", "content_items must be a list of objects")
    items = [dict(item) for item in items]  # the claims keep the items as received
    if any(item.get("type") not in ACCEPT_TYPES for item in items):
        raise Refused("invalid_request", f"only {list(ACCEPT_TYPES)} are accepted")
    for item in items:
        custom = item.get("custom", {})
        if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
            raise Refused("invalid_request", "custom must be an object of strings")
        if "lineItem" in item:
            item["lineItem"] = line_item_fields(item)
    return found, items


def line_item_fields(item: dict[str, Any]) -> dict[str, Any]:
    """The line item a content item asks for, checked (its label defaults to the title)."""
    wanted = item["lineItem"]
    if not isinstance(wanted, dict):
        raise Refused("invalid_request", "lineItem must be an object")
    return Gradebook.checked_line_item({"label": item.get("title", ""), **wanted})
