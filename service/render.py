"""Executed notebooks as HTML for the feedback page.

Outputs are the student's (a cell can ``display(HTML(...))``), so the HTML is sanitised here and
served with a Content-Security-Policy that forbids scripts (``service.web``). The ``basic``
template references nothing on a CDN; the page styles it."""

from __future__ import annotations

import nbformat
from nbconvert import HTMLExporter


def render_notebook_html(notebook_json: str) -> str:
    nb = nbformat.reads(notebook_json, as_version=4)
    exporter = HTMLExporter(template_name="basic", sanitize_html=True)
    body, _ = exporter.from_notebook_node(nb)
    return body
