"""The report as text for a terminal, in Japanese or English."""

from __future__ import annotations

import os

from grader.messages import bilingual
from grader.report import GradeReport

MARKS = {"correct": "OK ", "partial": "~  ", "incorrect": "NG ", "error": "ERR",
         "missing": "?? ", "not_reached": "-- "}  # fmt: skip


def default_lang() -> str:
    """``ja`` when the locale is Japanese, else ``en``."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


def render_text(report: GradeReport, lang: str = "en") -> str:
    lines = [
        f"{report.exercise}: {report.score:g} / {report.max_score:g}  [{report.outcome}]",
    ]
    if report.reason is not None:
        lines.append("  " + report.reason.get(lang))
    for note in report.notes:
        lines.append("  * " + note.get(lang))
    lines.append("")
    width = max((len(i.id) for i in report.items), default=0)
    for item in report.items:
        mark = MARKS.get(str(item.status), "   ")
        lines.append(f"{mark} {item.id:<{width}}  {item.score:>5g} / {item.max_score:<4g} "
                     f"{item.title.get(lang)}")
        for text in item.feedback:
            for line in text.get(lang).splitlines():
                lines.append(" " * (width + 8) + line)
    if report.measured_accuracy is not None or report.claimed_accuracy is not None:
        lines.append("")
        measured = ("-" if report.measured_accuracy is None
                    else f"{report.measured_accuracy:.4f}")
        claimed = "-" if report.claimed_accuracy is None else f"{report.claimed_accuracy:.4f}"
        lines.append(bilingual("render.accuracy", measured=measured, claimed=claimed).get(lang))
    if report.timings:
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
        lines.append(bilingual("render.time", phases=parts).get(lang))
    return "\n".join(lines)
