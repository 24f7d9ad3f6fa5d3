"""Numbers and durations on the pages, formatted by Babel in the page's locale.

The patterns are fixed (``0.##``, not the locale's grouped default) because the pages line
numbers up in tables and the tests read them back; Babel still supplies the locale's digits and
signs, and the duration words come from the catalogs (``dash.dur.*``). Japanese and English
both write ``36``, ``4.5``, ``0.9812``, ``4 min 05 s`` / ``4 分 05 秒``.
"""

from __future__ import annotations

from flask_babel import format_decimal
from flask_babel import gettext as _

#: What a page shows for a number that does not exist (no score yet, no accuracy measured).
MISSING = "–"


def format_number(value: float | None) -> str:
    """Scores as people write them: ``36``, ``4.5``, ``2.67``."""
    if value is None:
        return MISSING
    return format_decimal(value, format="0.##")


def format_shape(shape: list[int] | tuple[int, ...]) -> str:
    """An array shape as Python prints it: ``(28, 28)``, ``(10,)``."""
    return "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def format_accuracy(value: float | None) -> str:
    """An accuracy with the four decimals the grader measures to: ``0.9812``."""
    return MISSING if value is None else format_decimal(value, format="0.0000")


def format_size(n: int) -> str:
    """``20 MiB``, ``4 KiB``, ``500 bytes`` (``500 バイト``): a size as people write it, at most
    three significant digits, never ``0 MiB``."""

    def short(value: float) -> str:
        return format_decimal(value, format="0.##" if value < 10 else "0.#" if value < 100
                              else "0")

    if n >= 1024 * 1024:
        return _("size.mib", n=short(n / (1024 * 1024)))
    if n >= 1024:
        return _("size.kib", n=short(n / 1024))
    return _("size.bytes", n=format_decimal(n, format="0"))


def format_duration(seconds: float | None) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min`` (in the page's language)."""
    if seconds is None:
        return MISSING
    seconds = max(0.0, seconds)
    if seconds < 1:
        return _("dash.dur.seconds", n=format_decimal(seconds, format="0.00"))
    if seconds < 60:
        return _("dash.dur.seconds", n=format_decimal(seconds, format="0.#"))
    whole = round(seconds)
    if whole < 3600:
        return _("dash.dur.minutes", m=format_decimal(whole // 60, format="0"),
                 s=format_decimal(whole % 60, format="00"))
    return _("dash.dur.hours", h=format_decimal(whole // 3600, format="0"),
             m=format_decimal(whole % 3600 // 60, format="00"))
