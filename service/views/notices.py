"""Texts that say why a page or an API answer leaves something out, shared by the student's
pages, the dashboard's and the API.

Today one: a run's executed notebook that was not rendered (too large, too slow, or the renderer
failed; ``service.notebook_html.render_bounded``). The run keeps its report and score; the
worker stores why in the report as ``executed_html_omitted`` (``service.queue.grading``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_babel import force_locale, format_decimal
from flask_babel import gettext as _

from service.notebook_html import TOO_LARGE, TOO_SLOW


def executed_omitted(omitted: Mapping[str, Any]) -> str:
    """Why the executed notebook is not shown, in the request's language (the text also says
    that the score is not affected)."""
    reason = omitted.get("reason")
    if reason == TOO_SLOW:
        return _("submission.executed_too_slow",
                 seconds=format_decimal(omitted.get("seconds", 0), format="0"))
    if reason == TOO_LARGE:
        return _("submission.executed_too_large",
                 cells=format_decimal(omitted.get("cells", 0)),
                 size=format_decimal(omitted.get("bytes", 0)),
                 max_cells=format_decimal(omitted.get("max_cells", 0)),
                 max_bytes=format_decimal(omitted.get("max_bytes", 0)))
    return _("submission.executed_failed")


def executed_omitted_both(omitted: Mapping[str, Any]) -> dict[str, str]:
    """:func:`executed_omitted` in both languages of the course, for the API."""
    texts = {}
    for lang in ("ja", "en"):
        with force_locale(lang):
            texts[lang] = executed_omitted(omitted)
    return texts
