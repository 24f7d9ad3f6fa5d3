"""Executed notebooks as HTML for the feedback page.

Outputs are the student's (a cell can ``display(HTML(...))``): the HTML is cleaned here with an
allow-list that keeps what markdown and rich outputs need (headings, tables, images as data URIs)
and drops scripts, frames, forms and event handlers (with nh3, the Rust ``ammonia`` sanitiser;
inline CSS keeps only the properties of :data:`CSS_PROPERTIES`); ``service.views.frame`` then
serves it with a Content-Security-Policy that forbids scripts altogether. The ``basic`` template
references nothing on a CDN."""

from __future__ import annotations

import nbformat
import nh3
from nbconvert import HTMLExporter

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1",
    "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "s",
    "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ATTRIBUTES = {
    "*": {"class", "id", "title", "style"},
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align"},
}
PROTOCOLS = {"http", "https", "mailto", "data"}
#: CSS properties kept in ``style`` attributes (the list bleach's CSS sanitiser allowed).
CSS_PROPERTIES = {
    "azimuth", "background-color", "border-bottom-color", "border-collapse", "border-color",
    "border-left-color", "border-right-color", "border-top-color", "clear", "color", "cursor",
    "direction", "display", "elevation", "float", "font", "font-family", "font-size",
    "font-style", "font-variant", "font-weight", "height", "letter-spacing", "line-height",
    "overflow", "pause", "pause-after", "pause-before", "pitch", "pitch-range", "richness",
    "speak", "speak-header", "speak-numeral", "speak-punctuation", "speech-rate", "stress",
    "text-align", "text-decoration", "text-indent", "unicode-bidi", "vertical-align",
    "voice-family", "volume", "white-space", "width",
}  # fmt: skip


def sanitize_html(html: str) -> str:
    """``html`` with only the allowed tags, attributes, URL schemes and CSS properties; the
    text of a dropped tag is kept, except that of ``script`` and ``style``."""
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=PROTOCOLS,
                     filter_style_properties=CSS_PROPERTIES)


def render_notebook_html(notebook_json: str) -> str:
    nb = nbformat.reads(notebook_json, as_version=4)
    exporter = HTMLExporter(template_name="basic")
    body, _ = exporter.from_notebook_node(nb)
    return sanitize_html(body)
