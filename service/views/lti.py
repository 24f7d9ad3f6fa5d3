"""The tool's LTI 1.3 routes under ``/lti``: the public keys platforms check the tool's
signatures with, and Canvas's developer key configuration. The OIDC login (``/lti/login``)
and the launch (``/lti/launch``) join this blueprint; ``service.lti`` holds the rest.

Nothing here needs a login: a platform fetches these without a session.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request
from flask_babel import gettext as _

from service.domain.lti_keys import published_keys
from service.extensions import db
from service.lti.lms_settings import canvas_configuration, public_base, tool_urls

bp = Blueprint("lti", __name__, url_prefix="/lti")


@bp.get("/jwks")
def jwks() -> tuple[dict[str, list[dict[str, Any]]], int, dict[str, str]]:
    """The tool's JSON Web Key Set: the signing key and the replaced keys not yet retired
    (public halves only). Platforms cache it; so may proxies, for a few minutes."""
    return published_keys(db.session), 200, {"Cache-Control": "public, max-age=300"}


@bp.get("/canvas.json")
def canvas() -> dict[str, object]:
    """The JSON to paste into (or the URL to give) Canvas's "LTI key" form."""
    urls = tool_urls(public_base(current_app.config.get("PUBLIC_URL"), request.host_url))
    return canvas_configuration(urls, _("lti.tool.title"), _("lti.tool.description"))
