"""Executed notebooks as HTML for the feedback page.

Outputs are the student's (a cell can ``display(HTML(...))``): the HTML is cleaned here with an
allow-list that keeps what markdown and rich outputs need (headings, tables, images as data URIs)
and drops scripts, frames, forms and event handlers; ``service.views.frame`` then serves it with a
Content-Security-Policy that forbids scripts altogether. The ``basic`` template references nothing
on a CDN."""

from __future__ import annotations

import bleach
import nbformat
from bleach.css_sanitizer import CSSSanitizer
from nbconvert import HTMLExporter

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1",
    "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "s",
    "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "*": ["class", "id", "title", "style"],
    "a": ["href", "title"],
    "img": ["src", "alt", "width", "height"],
    "td": ["colspan", "rowspan", "align"],
    "th": ["colspan", "rowspan", "align"],
}
PROTOCOLS = {"http", "https", "mailto", "data"}


def render_notebook_html(notebook_json: str) -> str:
    nb = nbformat.reads(notebook_json, as_version=4)
    exporter = HTMLExporter(template_name="basic")
    body, _ = exporter.from_notebook_node(nb)
    return bleach.clean(body, tags=TAGS, attributes=ATTRIBUTES, protocols=PROTOCOLS,
                        css_sanitizer=CSSSanitizer(), strip=True)
