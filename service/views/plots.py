"""Charts for the instructor dashboard: inline SVG made on the server, as strings.

No JavaScript, no CDN, no plotting library: a chart here is a few rectangles and labels, and SVG
made on the server looks the same in every browser, prints, and passes the pages' CSP. For that
last reason only presentation attributes are used (``fill``, ``font-size``...), never a ``style``
attribute or a ``<style>`` element, which ``default-src 'self'`` would block. Every text that
comes from data or from the caller (item titles, axis labels) is escaped.

Every chart

- is ``role="img"`` with an ``aria-label`` (its title), a ``<title>`` and a ``<desc>`` that lists
  the numbers the picture shows, so a screen reader gets the data and not just a caption;
- has a natural size (``width``/``height`` matching its ``viewBox``): it shrinks in a narrow
  column (``max-width: 100%; height: auto`` in ``static/plots.css``) without blowing its text up
  in a wide one;
- says so inside its frame when there is nothing to draw (the ``empty`` text).

Colours are the student pages' palette; text and bars keep at least 4.5:1 against white.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING

from babel.numbers import format_percent

if TYPE_CHECKING:
    from flask import Flask

INK = "#1d2330"  # 15.6:1 on white
MUTED = "#5d6577"  # 5.9:1
BAR = "#2454c5"  # 6.6:1
GRID = "#dde1ea"
TRACK = "#eceff5"
MARK = "#b3261e"  # 6.5:1: deadlines and thresholds
FONT = "system-ui, -apple-system, 'Segoe UI', 'Hiragino Sans', 'Noto Sans CJK JP', sans-serif"

WIDTH = 500
TITLE_SIZE = 16
TEXT_SIZE = 13
SMALL_SIZE = 12

#: A row of the pass-rate chart: label, share in 0..1 (None: nobody to count), optional detail
#: such as ``"7/12"`` printed after the percentage.
BarRow = tuple[str, float | None] | tuple[str, float | None, str]


# --- the three charts ---------------------------------------------------------------------


def histogram(
    values: Sequence[float],
    edges: Sequence[float],
    *,
    title: str,
    x_label: str,
    y_label: str,
    empty: str,
    subtitle: str = "",
    tick_format: str = "g",
    marker: float | None = None,
    marker_label: str = "",
) -> str:
    """Counts of ``values`` in the bins between ``edges`` (see :func:`bin_counts`).

    Bins are drawn equally wide whatever their edges, so an open first bin (``0–0.90`` before
    ``0.90–0.91``...) does not squash the others; ``marker`` (a threshold) is placed within its
    bin proportionally. ``tick_format`` is a format spec for the edge labels (``"g"``, ``".2f"``).
    """
    if len(edges) < 2:
        raise ValueError("a histogram needs at least two bin edges")
    counts = bin_counts(values, edges)
    height = 320 + (16 if marker is not None else 0)
    left, right, top, bottom = 56, 18, _top(subtitle) + (16 if marker is not None else 0), 62
    x0, x1, y0, y1 = left, WIDTH - right, top, height - bottom
    edge_text = [format(edge, tick_format) for edge in edges]
    bin_names = [f"{edge_text[i]}–{edge_text[i + 1]}" for i in range(len(counts))]
    desc = _join(subtitle, "; ".join(f"{name}: {n}" for name, n in zip(bin_names, counts,
                                                                        strict=True)))
    if marker is not None:
        desc = _join(desc, f"{marker_label} {marker:g}".strip())
    parts = [_heading(title, subtitle)]
    if not values or sum(counts) == 0:
        parts.append(_empty_state(x0, y0, x1, y1, empty))
        return _svg("histogram", height, title, _join(subtitle, empty), parts)

    ticks = nice_ticks(max(counts))
    top_value = ticks[-1]
    parts.append(_y_axis(ticks, x0, x1, y0, y1, y_label))
    slot = (x1 - x0) / len(counts)
    gap = min(4.0, slot * 0.15)
    if marker is not None and edges[0] <= marker <= edges[-1]:  # behind the bars
        mx = x0 + slot * _position_in_bins(marker, edges)
        parts.append(_marker(mx, y0, y1, f"{marker_label} {marker:g}".strip(), x0, x1))
    for i, count in enumerate(counts):
        bar_h = (y1 - y0) * count / top_value
        bx = x0 + i * slot + gap / 2
        tip = f"{bin_names[i]}: {count}"
        parts.append(
            f'<rect class="bar" x="{_n(bx)}" y="{_n(y1 - bar_h)}" width="{_n(slot - gap)}" '
            f'height="{_n(bar_h)}" fill="{BAR}" data-count="{count}">'
            f"<title>{_esc(tip)}</title></rect>")
        if count:
            parts.append(_text(bx + (slot - gap) / 2, y1 - bar_h - 4, str(count),
                               size=SMALL_SIZE, anchor="middle", halo=True))
    parts.append(_line(x0, y1, x1, y1, INK))
    every = _label_every(slot, max(_text_width(s, SMALL_SIZE) for s in edge_text) + 6)
    for i, label in enumerate(edge_text):
        if i % every == 0:
            x = x0 + i * slot
            parts.append(_line(x, y1, x, y1 + 4, INK))
            parts.append(_text(x, y1 + 16, label, size=SMALL_SIZE, anchor="middle",
                               fill=MUTED))
    parts.append(_text((x0 + x1) / 2, height - 14, x_label, anchor="middle"))
    return _svg("histogram", height, title, desc, parts)


def pass_rates(
    rows: Sequence[BarRow],
    *,
    title: str,
    empty: str,
    subtitle: str = "",
) -> str:
    """One horizontal bar per row, its label above it, its percentage after it.

    Labels sit above their bars (not beside them) so that long item titles keep the whole width;
    a label still too long is cut with an ellipsis and kept whole in the bar's tooltip and in the
    description."""
    row_h, bar_h = 40, 14
    top = _top(subtitle)
    height = top + max(len(rows), 2) * row_h + 30
    x0, x1 = 14, WIDTH - 108
    parts = [_heading(title, subtitle)]
    rates = [row[1] for row in rows]
    if not rows or all(rate is None for rate in rates):
        parts.append(_empty_state(x0, top, WIDTH - 14, height - 30, empty))
        return _svg("pass-rates", height, title, _join(subtitle, empty), parts)

    axis_y = top + len(rows) * row_h + 4
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = x0 + (x1 - x0) * share
        parts.append(_line(x, top + 4, x, axis_y, GRID))
        parts.append(_text(x, axis_y + 14, _percent(share), size=SMALL_SIZE, anchor="middle",
                           fill=MUTED))
    described = []
    for i, row in enumerate(rows):
        label, rate = row[0], row[1]
        detail = row[2] if len(row) > 2 else ""
        value = "–" if rate is None else _percent(rate)
        value_text = f"{value} ({detail})" if detail else value
        described.append(f"{label}: {value_text}")
        ly = top + i * row_h + 16
        # the label's line is free up to the right edge: the percentage sits on the bar's
        parts.append(_text(x0, ly, _truncate(label, WIDTH - 2 * x0, TEXT_SIZE), fill=INK))
        by = ly + 6
        parts.append(f'<rect x="{_n(x0)}" y="{_n(by)}" width="{_n(x1 - x0)}" '
                     f'height="{bar_h}" fill="{TRACK}"><title>{_esc(label)}</title></rect>')
        if rate is not None:
            share = min(max(rate, 0.0), 1.0)
            parts.append(
                f'<rect class="bar" x="{_n(x0)}" y="{_n(by)}" width="{_n((x1 - x0) * share)}" '
                f'height="{bar_h}" fill="{BAR}" data-rate="{share:.4f}">'
                f"<title>{_esc(f'{label}: {value_text}')}</title></rect>")
        parts.append(_text(x1 + 8, by + bar_h - 2, value_text, size=TEXT_SIZE, fill=INK))
    return _svg("pass-rates", height, title, _join(subtitle, "; ".join(described)), parts)


def time_series(
    series: Sequence[tuple[dt.datetime, int]],
    *,
    step: dt.timedelta,
    title: str,
    x_label: str,
    y_label: str,
    empty: str,
    subtitle: str = "",
    deadline: dt.datetime | None = None,
    deadline_label: str = "",
) -> str:
    """A column per bucket (``series`` holds each bucket's start and its count, ``step`` its
    length), on a time axis that stretches to show ``deadline`` as a dashed line.

    Hourly buckets are labelled ``HH:MM`` with the date under the first label of each day; daily
    ones ``MM-DD``."""
    height = 300 + (16 if deadline is not None else 0)
    left, right, top, bottom = 56, 18, _top(subtitle) + (16 if deadline is not None else 0), 66
    x0, x1, y0, y1 = left, WIDTH - right, top, height - bottom
    parts = [_heading(title, subtitle)]
    points = sorted(series)
    total = sum(count for _, count in points)
    if not points or total == 0:
        parts.append(_empty_state(x0, y0, x1, y1, empty))
        return _svg("time-series", height, title, _join(subtitle, empty), parts)

    hourly = step < dt.timedelta(days=1)
    start, end = points[0][0], points[-1][0] + step
    if deadline is not None:
        start, end = min(start, _floor(deadline, step)), max(end, _floor(deadline, step) + step)
    span = (end - start) / step

    def x_at(moment: dt.datetime) -> float:
        return x0 + (x1 - x0) * ((moment - start) / step) / span

    ticks = nice_ticks(max(count for _, count in points))
    parts.append(_y_axis(ticks, x0, x1, y0, y1, y_label))
    stamp = "%Y-%m-%d %H:%M" if hourly else "%Y-%m-%d"
    desc = _join(subtitle, "; ".join(f"{moment:{stamp}}: {count}"
                                     for moment, count in points if count))
    if deadline is not None:  # behind the bars
        parts.append(_marker(x_at(deadline), y0, y1, deadline_label, x0, x1))
        desc = _join(desc, f"{deadline_label} {deadline:%Y-%m-%d %H:%M}".strip())
    slot = (x1 - x0) / span
    width = max(1.0, min(slot * 0.8, 40.0))
    for moment, count in points:
        bar_h = (y1 - y0) * count / ticks[-1]
        bx = x_at(moment) + (slot - width) / 2
        parts.append(
            f'<rect class="bar" x="{_n(bx)}" y="{_n(y1 - bar_h)}" width="{_n(width)}" '
            f'height="{_n(bar_h)}" fill="{BAR}" data-count="{count}">'
            f"<title>{_esc(f'{moment:{stamp}}: {count}')}</title></rect>")
        if count and slot >= 18:
            parts.append(_text(bx + width / 2, y1 - bar_h - 4, str(count), size=SMALL_SIZE,
                               anchor="middle", halo=True))
    parts.append(_line(x0, y1, x1, y1, INK))
    parts.extend(_time_ticks(start, step, round(span), slot, x_at, y1, hourly))
    parts.append(_text((x0 + x1) / 2, height - 10, x_label, anchor="middle"))
    return _svg("time-series", height, title, desc, parts)


# --- numbers ------------------------------------------------------------------------------


def bin_counts(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """How many values fall in each bin ``[edges[i], edges[i+1])``; the last bin includes its
    upper edge (a score of 100 counts in 90–100). Values outside the edges are not counted."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        if value is None or not edges[0] <= value <= edges[-1]:
            continue
        for i in range(len(counts)):
            if value < edges[i + 1] or i == len(counts) - 1:
                counts[i] += 1
                break
    return counts


def nice_ticks(largest: float, most: int = 5) -> list[int]:
    """Whole-number ticks from 0 to at least ``largest`` in steps of 1, 2 or 5 times a power of
    ten, at most ``most`` + 1 of them: ``nice_ticks(7) == [0, 2, 4, 6, 8]``."""
    largest = max(1, math.ceil(largest))
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if math.ceil(largest / step) <= most:
                return list(range(0, math.ceil(largest / step) * step + 1, step))
        magnitude *= 10


def _position_in_bins(value: float, edges: Sequence[float]) -> float:
    """Where ``value`` falls when every bin is one unit wide (2.5 is halfway through bin 2)."""
    for i in range(len(edges) - 1):
        if value <= edges[i + 1] or i == len(edges) - 2:
            low, high = edges[i], edges[i + 1]
            return i + ((value - low) / (high - low) if high > low else 0.0)
    return float(len(edges) - 1)


def _floor(moment: dt.datetime, step: dt.timedelta) -> dt.datetime:
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((moment - midnight) // step) * step


# --- drawing ------------------------------------------------------------------------------


def _svg(kind: str, height: int, title: str, desc: str, parts: list[str]) -> str:
    body = "".join(parts)
    ident = "plot-" + hashlib.sha1(f"{title}\n{desc}\n{body}".encode()).hexdigest()[:10]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot plot-{kind}" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{_esc(title)}" aria-describedby="{ident}-desc" font-family="{FONT}" '
        f'font-size="{TEXT_SIZE}" fill="{INK}">'
        f'<title>{_esc(title)}</title><desc id="{ident}-desc">{_esc(desc)}</desc>'
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>{body}</svg>'
    )


def _top(subtitle: str) -> int:
    return 62 if subtitle else 44


def _heading(title: str, subtitle: str) -> str:
    heading = _text(14, 24, _truncate(title, WIDTH - 28, TITLE_SIZE), size=TITLE_SIZE,
                    weight="600")
    if subtitle:
        heading += _text(14, 44, _truncate(subtitle, WIDTH - 28, TEXT_SIZE), fill=MUTED)
    return heading


def _empty_state(x0: float, y0: float, x1: float, y1: float, message: str) -> str:
    return (f'<rect class="empty" x="{_n(x0)}" y="{_n(y0)}" width="{_n(x1 - x0)}" '
            f'height="{_n(y1 - y0)}" fill="#fafbfd" stroke="{GRID}" stroke-dasharray="4 4"/>'
            + _text((x0 + x1) / 2, (y0 + y1) / 2 + 5, _truncate(message, x1 - x0 - 20, 14),
                    size=14, anchor="middle", fill=MUTED))


def _y_axis(ticks: list[int], x0: float, x1: float, y0: float, y1: float, label: str) -> str:
    parts = []
    for tick in ticks:
        y = y1 - (y1 - y0) * tick / ticks[-1]
        if tick:
            parts.append(_line(x0, y, x1, y, GRID))
        parts.append(_text(x0 - 6, y + 4, str(tick), size=SMALL_SIZE, anchor="end", fill=MUTED))
    mid = (y0 + y1) / 2
    parts.append(f'<text x="0" y="0" transform="translate(16 {_n(mid)}) rotate(-90)" '
                 f'text-anchor="middle" fill="{INK}">'
                 f"{_esc(_truncate(label, y1 - y0, TEXT_SIZE))}</text>")
    return "".join(parts)


def _marker(x: float, y0: float, y1: float, label: str, x0: float, x1: float) -> str:
    """A dashed vertical line with its label above the plot area (where no count label of a
    bar can be), centred on the line when there is room, else pushed inside the frame."""
    line = (f'<line class="marker" x1="{_n(x)}" y1="{_n(y0 - 12)}" x2="{_n(x)}" '
            f'y2="{_n(y1)}" stroke="{MARK}" stroke-width="2" stroke-dasharray="5 4"/>')
    if not label:
        return line
    half = _text_width(label, SMALL_SIZE) / 2
    centre = min(max(x, x0 + half), x1 - half)
    return line + _text(centre, y0 - 16, label, size=SMALL_SIZE, fill=MARK, anchor="middle",
                        weight="600")


def _time_ticks(start: dt.datetime, step: dt.timedelta, buckets: int, slot: float,
                x_at: Callable[[dt.datetime], float], y1: float, hourly: bool) -> list[str]:
    label_width = _text_width("00:00" if hourly else "00-00", SMALL_SIZE) + 10
    choices = (1, 2, 3, 4, 6, 12, 24, 48, 96) if hourly else (1, 2, 7, 14, 28, 56, 112)
    every = next((k for k in choices if k * slot >= label_width), choices[-1])
    parts = []
    last_day = None
    for i in range(0, buckets + 1, every):
        moment = start + i * step
        x = x_at(moment)
        parts.append(_line(x, y1, x, y1 + 4, INK))
        parts.append(_text(x, y1 + 16, f"{moment:%H:%M}" if hourly else f"{moment:%m-%d}",
                           size=SMALL_SIZE, anchor="middle", fill=MUTED))
        if hourly and moment.date() != last_day:
            parts.append(_text(x, y1 + 30, f"{moment:%m-%d}", size=SMALL_SIZE,
                               anchor="middle", fill=MUTED))
            last_day = moment.date()
    return parts


def _text(x: float, y: float, text: str, *, size: int = TEXT_SIZE, anchor: str = "start",
          fill: str = INK, weight: str = "", halo: bool = False) -> str:
    """``halo``: a white outline under the glyphs, for labels that may sit on a line."""
    extra = f' font-weight="{weight}"' if weight else ""
    if halo:
        extra += ' stroke="#ffffff" stroke-width="3" paint-order="stroke"'
    return (f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}"{extra}>{_esc(text)}</text>')


def _line(xa: float, ya: float, xb: float, yb: float, colour: str) -> str:
    return (f'<line x1="{_n(xa)}" y1="{_n(ya)}" x2="{_n(xb)}" y2="{_n(yb)}" '
            f'stroke="{colour}" stroke-width="1"/>')


def _label_every(slot: float, label_width: float) -> int:
    return max(1, math.ceil(label_width / slot)) if slot > 0 else 1


def _text_width(text: str, size: float) -> float:
    """An estimate of drawn width on the safe side: wide (CJK) characters take 1 em, others
    0.56 em (proportional Latin text averages about 0.5 em)."""
    return sum(size if unicodedata.east_asian_width(c) in "WF" else size * 0.56 for c in text)


def _truncate(text: str, width: float, size: float) -> str:
    if _text_width(text, size) <= width:
        return text
    while text and _text_width(text + "…", size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _join(*texts: str) -> str:
    return ". ".join(text.rstrip(". ") for text in texts if text)


def _esc(text: object) -> str:
    return escape(str(text), quote=True)


def _percent(share: float) -> str:
    """A share as a whole percentage, formatted by Babel in the page's locale (``25%``)."""
    return format_percent(share, format="0%", locale=_page_locale())


def _page_locale() -> str:
    """The request's locale (Flask-Babel), or English when drawn outside a request (tests)."""
    from flask import has_request_context
    from flask_babel import get_locale

    locale = get_locale() if has_request_context() else None
    return str(locale) if locale is not None else "en"


def _n(value: float) -> str:
    """Coordinates with at most one decimal: short, and stable for tests."""
    return f"{value:.1f}".removesuffix(".0")


# --- templates ----------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Make the charts callable from templates (``dashboard/_plots.html``); ``localize`` picks
    the page language from ``{"ja", "en"}`` titles there, as on the student pages."""
    from service.views.language import localize

    app.jinja_env.globals.update(plot_histogram=histogram, plot_pass_rates=pass_rates,
                                 plot_time_series=time_series)
    app.jinja_env.globals.setdefault("localize", localize)
