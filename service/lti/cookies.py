"""The session cookie of a launch made inside the LMS's frame.

A page in an iframe of another site gets and sends only cookies marked ``SameSite=None;
Secure``: the service's session cookie is ``Lax`` (a link from elsewhere cannot act as the
user), which a framed tool never sees again after the launch. :class:`LtiSessionInterface`
marks the session cookie ``SameSite=None; Secure`` for sessions an LTI launch opened
(:data:`FRAMED`) when the service is served over HTTPS (``PUBLIC_URL`` or the request), and
leaves every other session (a token login, an instructor's password) as it was. Forms keep
their CSRF token, so ``None`` does not open them to other sites. Over plain http (a platform
on this machine) nothing changes: ``Secure`` cookies would not be kept.

The frames that may show the service's pages are named by the Content-Security-Policy's
``frame-ancestors`` (``service.views.frame``): ``'self'`` and, for a launched session, the
platform's origins (:data:`FRAME_ORIGINS`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, has_request_context, session
from flask.sessions import SecureCookieSessionInterface

from service.lti.launch import served_over_https

#: Session key: this session was opened by an LTI launch.
FRAMED = "lti_framed"
#: Session key: the origins (``https://moodle.example.org``) that may frame the pages.
FRAME_ORIGINS = "lti_frame_origins"


def _framed() -> bool:
    return has_request_context() and bool(session.get(FRAMED)) and served_over_https()


class LtiSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, ``SameSite=None; Secure`` for framed LTI sessions."""

    def get_cookie_samesite(self, app: Flask) -> str | None:
        return "None" if _framed() else super().get_cookie_samesite(app)

    def get_cookie_secure(self, app: Flask) -> bool:
        return True if _framed() else super().get_cookie_secure(app)


def origin_of(url: object) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, else None."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(
            c in parts.netloc for c in " ;,'\""):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def mark_framed(*urls: object) -> None:
    """Mark this session as an LTI launch's, allowed in frames of the origins of ``urls``."""
    origins = sorted({o for o in map(origin_of, urls) if o})
    session[FRAMED] = True
    session[FRAME_ORIGINS] = origins


def frame_origins() -> list[str]:
    """The origins allowed to frame this session's pages (none for a session not launched)."""
    found = session.get(FRAME_ORIGINS) if has_request_context() else None
    return [o for o in found if isinstance(o, str)] if isinstance(found, list) else []
