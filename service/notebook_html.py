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
child is started ahead (one spare per worker process, :class:`SpareRenderer`, used once): its
imports and template are ready when the notebook comes. The executed notebook is a courtesy:
a run without it keeps its report, and the page says why.

The child is bounded as a run is, by the kernel: a notebook within the caps can still cost a
lot (2,000 cells of 300 lines each: minutes and 4 GiB), so when it is handed a notebook it
gets an address-space limit (``HTML_RENDER_MEMORY``; past it, a ``MemoryError`` ends it with
no HTML) and a CPU-time limit just above its deadline (a backstop: it is single-threaded and
killed at the deadline), and from its start it runs at the lowest priority
(:data:`RENDER_NICE`), so that it takes CPU from no run: it is not pinned to a run's CPU slot,
it yields to them.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Callable
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
#: Niceness of a render child: below every run.
RENDER_NICE = 19
#: A render child's address space when none is given (``HTML_RENDER_MEMORY``).
RENDER_MEMORY = 2 * 1024 * 1024 * 1024
#: CPU seconds a render child may use beyond its deadline (its imports and template warm-up).
CPU_SLACK = 30

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
                   seconds: float, memory_bytes: int = RENDER_MEMORY,
                   take_child: Callable[[], subprocess.Popen[bytes]] | None = None) -> Rendered:
    """Render within caps: a notebook over ``max_bytes`` or ``max_cells`` is not rendered, and
    the rendering runs in a child process killed after ``seconds``, with at most
    ``memory_bytes`` of address space (its output, the HTML, may be at most four times
    ``max_bytes``: markup around large outputs). ``take_child``: where the child comes from
    (a :class:`SpareRenderer`'s ``take``: started ahead); a cold one when not given."""
    data = notebook_json.encode("utf-8")
    if len(data) > max_bytes:  # before parsing it; its cells counted roughly, linearly
        return Rendered(None, TOO_LARGE, data.count(b'"cell_type"'), len(data))
    try:
        cells = json.loads(data).get("cells", [])
        count = len(cells) if isinstance(cells, list) else 0
    except (ValueError, AttributeError):
        return Rendered(None, RENDER_ERROR, 0, len(data))
    if len(data) > max_bytes or count > max_cells:
        return Rendered(None, TOO_LARGE, count, len(data))
    child = (take_child or start_child)()
    _limit(child, memory_bytes, seconds)
    try:
        stdout, _ = child.communicate(input=data, timeout=seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return Rendered(None, TOO_SLOW, count, len(data))
    if child.returncode != 0 or len(stdout) > 4 * max_bytes:
        return Rendered(None, RENDER_ERROR if child.returncode else TOO_LARGE, count, len(data))
    return Rendered(stdout.decode("utf-8"), None, count, len(data))


# A render child is started ahead: by the time a notebook comes it has imported nbconvert and
# loaded its template (about 1.5 s of a cold child's 1.7 s here), so only the rendering itself
# is waited for. Each child renders one notebook; taking one starts the next.
def start_child() -> subprocess.Popen[bytes]:
    """A render child, started now, at the lowest priority (:func:`render_bounded`'s default:
    a cold child for every notebook)."""
    child = subprocess.Popen([sys.executable, "-P", str(_THIS_FILE)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        os.setpriority(os.PRIO_PROCESS, child.pid, RENDER_NICE)
    except OSError:  # it has already ended: taking it will say so
        pass
    return child


def _limit(child: subprocess.Popen[bytes], memory_bytes: int, seconds: float) -> None:
    """Bound a child about to render (``prlimit``, not a ``preexec_fn``: the worker has
    threads): its address space, and its CPU time a little above its deadline."""
    cpu = int(seconds) + CPU_SLACK
    try:
        resource.prlimit(child.pid, resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.prlimit(child.pid, resource.RLIMIT_CPU, (cpu, cpu))
    except (OSError, ValueError):  # it has already ended: communicate() will say so
        pass


class SpareRenderer:
    """One render child kept started ahead for a worker process (its grading host owns it:
    ``service.queue.host``). :meth:`take` hands the spare over and starts the next one;
    :meth:`close` ends the spare (it would end by itself at EOF once the process is gone)."""

    def __init__(self) -> None:
        self._spare: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> SpareRenderer:
        """Start the spare now, so the first render is warm too."""
        with self._lock:
            if not self._closed and (self._spare is None or self._spare.poll() is not None):
                self._spare = start_child()
        return self

    def take(self) -> subprocess.Popen[bytes]:
        """The spare child (a fresh one if it is gone), and a new spare started in its place
        (none once closed)."""
        with self._lock:
            child, self._spare = self._spare, None if self._closed else start_child()
        if child is None or child.poll() is not None:
            child = start_child()
        return child

    def close(self) -> None:
        """End the spare; a render under way keeps its own child."""
        with self._lock:
            child, self._spare, self._closed = self._spare, None, True
        if child is not None:
            child.kill()
            child.communicate()

    @property
    def spare(self) -> subprocess.Popen[bytes] | None:
        """The child waiting for the next notebook, if any (for the tests)."""
        return self._spare

    def __enter__(self) -> SpareRenderer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _main() -> int:
    """The child of :func:`render_bounded`: warms its template on a notebook of its own, then
    reads a notebook on stdin and writes its sanitised HTML on stdout (nothing on an empty
    stdin: the service stopped before it needed this child)."""
    render_notebook_html(nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("warm"), nbformat.v4.new_code_cell("1")])))
    data = sys.stdin.buffer.read()
    if not data:
        return 0
    html = render_notebook_html(data.decode("utf-8"))
    sys.stdout.buffer.write(html.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
