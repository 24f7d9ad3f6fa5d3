"""Executed notebooks as HTML for the feedback page.

Outputs are the student's (a cell can ``display(HTML(...))``): the HTML is cleaned here with an
allow-list that keeps what markdown and rich outputs need (headings, tables, images as data URIs)
and drops scripts, frames, forms and event handlers (with nh3, the Rust ``ammonia`` sanitiser;
inline CSS keeps only the properties of :data:`CSS_PROPERTIES`); ``service.views.frame`` then
serves it with a Content-Security-Policy that forbids scripts altogether. The ``basic`` template
references nothing on a CDN.

Rendering costs about 3 ms a cell whatever the cell holds, so a notebook of 60,000 empty cells
took minutes: the worker renders with :func:`render_bounded`, which refuses a notebook over the
size or cell caps before starting and renders the rest in a child process killed at a deadline
(``HTML_MAX_BYTES``, ``HTML_MAX_CELLS``, ``HTML_RENDER_SECONDS`` in ``service.settings``). The
executed notebook is a courtesy: a run without it keeps its report, and the page says why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import nh3
from nbconvert import HTMLExporter

#: ``Rendered.omitted``: the notebook was over the size or cell cap, so it was not rendered.
TOO_LARGE = "too_large"
#: ... rendering ran past its deadline and was stopped.
TOO_SLOW = "too_slow"
#: ... the renderer failed (a notebook nbconvert cannot read).
RENDER_ERROR = "render_error"
#: The child process runs this file by path (``python -P``, so its folder is not put on the
#: import path): it imports nbconvert and nh3 only, never the ``service`` package and its web
#: stack, which took the child 0.7 s more per run.
_THIS_FILE = Path(__file__).resolve()

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
    """The sanitised HTML of a notebook, rendered in this process with no bound (the worker
    uses :func:`render_bounded`)."""
    nb = nbformat.reads(notebook_json, as_version=4)
    exporter = HTMLExporter(template_name="basic")
    body, _ = exporter.from_notebook_node(nb)
    return sanitize_html(body)


@dataclass(frozen=True)
class Rendered:
    """The HTML of an executed notebook, or why there is none (:data:`TOO_LARGE`,
    :data:`TOO_SLOW`, :data:`RENDER_ERROR`) and the figures that say it."""

    html: str | None
    omitted: str | None = None
    cells: int = 0
    size: int = 0


def render_bounded(notebook_json: str, *, max_bytes: int, max_cells: int,
                   seconds: float) -> Rendered:
    """Render within caps: a notebook over ``max_bytes`` or ``max_cells`` is not rendered, and
    the rendering runs in a child process killed after ``seconds`` (its output, the HTML, may
    be at most four times ``max_bytes``: markup around large outputs)."""
    data = notebook_json.encode("utf-8")
    try:
        cells = json.loads(data).get("cells", [])
        count = len(cells) if isinstance(cells, list) else 0
    except (ValueError, AttributeError):
        return Rendered(None, RENDER_ERROR, 0, len(data))
    if len(data) > max_bytes or count > max_cells:
        return Rendered(None, TOO_LARGE, count, len(data))
    try:
        done = subprocess.run([sys.executable, "-P", str(_THIS_FILE)], input=data,
                              capture_output=True, timeout=seconds, check=False)
    except subprocess.TimeoutExpired:  # subprocess.run has killed the child
        return Rendered(None, TOO_SLOW, count, len(data))
    if done.returncode != 0 or len(done.stdout) > 4 * max_bytes:
        return Rendered(None, RENDER_ERROR if done.returncode else TOO_LARGE, count, len(data))
    return Rendered(done.stdout.decode("utf-8"), None, count, len(data))


def _main() -> int:
    """The child of :func:`render_bounded`: a notebook on stdin, its sanitised HTML on
    stdout."""
    html = render_notebook_html(sys.stdin.buffer.read().decode("utf-8"))
    sys.stdout.buffer.write(html.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
