"""The two students' code beside a similarity pair, with the matching parts marked.

The code is exactly the text the similarity run's spans index into: ``grader.similarity``'s
``notebook_code`` of each submission's uploaded notebook (its code cells' sources, joined), read
in :func:`pair_code` alone. Student code is hostile: it is shown as text (the template escapes
every segment; nothing here is markup), at most :data:`MAX_CODE_CHARS` of it, with at most
:data:`MAX_SPANS` marked parts, each span checked, clipped to the text and merged with its
neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app

from service.blobs import blob_store
from service.models import SimilarityPair, Submission

log = logging.getLogger(__name__)

#: The most characters of one side's code a pair page shows (the rest is cut, and said so).
MAX_CODE_CHARS = 100_000
#: The most marked parts shown on one side (the spans come sorted; later ones are dropped).
MAX_SPANS = 2_000


@dataclass(frozen=True)
class Segment:
    """A piece of code, marked when it matches the other side."""

    text: str
    marked: bool


@dataclass(frozen=True)
class ShownCode:
    """One side's code as the page shows it."""

    segments: tuple[Segment, ...]
    #: The code's whole length, and whether the page shows less of it.
    length: int
    truncated: bool
    #: How many marked parts are shown.
    marks: int


def pair_code(pair: SimilarityPair) -> tuple[str | None, str | None]:
    """Each side's code text (``notebook_code(...).text`` of its uploaded notebook), or None
    for a side whose notebook cannot be read (its blob gone, not a notebook), or for both while
    ``grader.similarity`` is not installed."""
    try:
        from grader.similarity import notebook_code
    except ImportError:  # pragma: no cover - until the similarity library is installed
        log.warning("grader.similarity is missing: no code is shown beside similarity pairs")
        return None, None
    store = blob_store(current_app)

    def text_of(submission: Submission) -> str | None:
        try:
            return str(notebook_code(store.get(submission.notebook_sha256)).text)
        except Exception:  # hostile or missing notebook: the page says the code is not there
            log.exception("no code for submission %s", submission.id)
            return None

    return text_of(pair.submission_a), text_of(pair.submission_b)


def clean_spans(spans: Any, length: int, limit: int = MAX_SPANS) -> list[tuple[int, int]]:
    """``spans`` (``[[start, end], ...]`` as stored, possibly anything) as sorted, disjoint
    ``(start, end)`` ranges within ``0..length``: malformed entries dropped, each clipped,
    overlapping or touching ones merged, at most ``limit`` of them."""
    ranges: list[tuple[int, int]] = []
    if not isinstance(spans, Sequence) or isinstance(spans, str | bytes):
        return ranges
    for entry in spans[:limit * 10]:  # a bound on the work before merging
        if (not isinstance(entry, Sequence) or isinstance(entry, str | bytes)
                or len(entry) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in entry)):
            continue
        start, end = max(0, entry[0]), min(length, entry[1])
        if start < end:
            ranges.append((start, end))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for start, end in ranges:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged[:limit]


def marked_code(text: str, spans: Any, max_chars: int | None = None,
                max_spans: int | None = None) -> ShownCode:
    """``text`` cut to ``max_chars`` (:data:`MAX_CODE_CHARS`) and split into plain and marked
    segments by ``spans`` (at most ``max_spans``, :data:`MAX_SPANS`, marked)."""
    max_chars = MAX_CODE_CHARS if max_chars is None else max_chars
    max_spans = MAX_SPANS if max_spans is None else max_spans
    shown = text[:max_chars]
    ranges = clean_spans(spans, len(shown), max_spans)
    segments: list[Segment] = []
    at = 0
    for start, end in ranges:
        if start > at:
            segments.append(Segment(shown[at:start], False))
        segments.append(Segment(shown[start:end], True))
        at = end
    if at < len(shown):
        segments.append(Segment(shown[at:], False))
    return ShownCode(tuple(segments), len(text), len(text) > max_chars, len(ranges))
