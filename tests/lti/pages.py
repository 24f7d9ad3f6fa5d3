"""The HTML a platform answers a browser with in LTI 1.3 (a form that posts itself to the tool,
as Moodle's and Canvas's launch pages do), and :func:`follow_forms`, which does what the
browser's script would for a test that drives the flow with ``requests`` instead of Chromium.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests

#: The id of every self-submitting form (the platform's, and the tool's if it uses the same).
AUTOSUBMIT_ID = "lti-autosubmit"


def autosubmit_form(action: str, fields: Mapping[str, str], *, method: str = "post",
                    title: str = "Continuing to the tool") -> str:
    """A page whose script submits ``fields`` to ``action`` at once (a button without JS)."""
    inputs = "\n".join(f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
                       for name, value in fields.items())
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"</head><body>\n<form id='{AUTOSUBMIT_ID}' method='{method}' "
            f"action='{escape(action)}'>\n{inputs}\n"
            "<noscript><button type='submit'>Continue</button></noscript>\n</form>\n"
            f"<script>document.getElementById('{AUTOSUBMIT_ID}').submit();</script>\n"
            "</body></html>\n")


def message_page(title: str, text: str) -> str:
    """A plain page saying ``text`` (what the LMS shows after deep linking, or why it refused)."""
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"</head><body><h1>{escape(title)}</h1><p id='message'>{escape(text)}</p>"
            "</body></html>\n")


@dataclass
class _Form:
    id: str
    method: str
    action: str
    fields: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    """The forms of a page with their fields, and the text of its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.scripts = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(_Form(found.get("id", ""), found.get("method", "get").lower(),
                                    found.get("action", "")))
        elif tag == "input" and self.forms and found.get("name"):
            self.forms[-1].fields[found["name"]] = found.get("value", "")
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts += data


def _autosubmitted(page: str) -> _Form | None:
    """The form of ``page`` that its script submits (named by id in the script), if any."""
    parser = _Forms()
    parser.feed(page)
    return next((form for form in parser.forms if form.id and (
        f"'{form.id}'" in parser.scripts or f'"{form.id}"' in parser.scripts)), None)


def follow_forms(session: requests.Session, response: requests.Response,
                 limit: int = 10) -> requests.Response:
    """Follow self-submitting forms from ``response`` on (redirects are followed by
    ``requests``) until a page without one; the last response. ``session`` keeps the cookies
    as a browser would."""
    for _ in range(limit):
        found = _autosubmitted(response.text) if "html" in response.headers.get(
            "Content-Type", "") else None
        if found is None:
            return response
        target = urljoin(response.url, found.action)
        response = (session.post(target, data=found.fields, timeout=30)
                    if found.method == "post"
                    else session.get(target, params=found.fields, timeout=30))
    raise RuntimeError(f"more than {limit} self-submitting forms in a row")
