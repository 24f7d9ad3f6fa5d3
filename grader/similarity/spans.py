"""The characters two notebooks' code have in common outside the template, as copydetect marks
them (for the review page's side-by-side view)."""

from __future__ import annotations

import io
from typing import Any

from grader.similarity.kgrams import K

Spans = tuple[tuple[int, int], ...]


def matching_spans(code_a: str, code_b: str, template: str, k: int = K) -> tuple[Spans, Spans]:
    """Character ranges ``[start, end)`` of ``code_a`` and of ``code_b`` whose normalised
    k-grams the other holds and the template does not (merged, in order)."""
    return SpanFinder(template, k).spans(code_a, code_b)


class SpanFinder:
    """:func:`matching_spans` for many pairs against one template, each text read once."""

    def __init__(self, template: str, k: int = K) -> None:
        from copydetect import CodeFingerprint, compare_files  # imports matplotlib: when used

        self._make, self._compare, self.k = CodeFingerprint, compare_files, k
        self._boilerplate: set[int] = _fingerprint(self._make, template, k).hashes
        self._read: dict[str, Any] = {}

    def spans(self, code_a: str, code_b: str) -> tuple[Spans, Spans]:
        _, _, (slices_a, slices_b) = self._compare(self._fingerprint(code_a),
                                                   self._fingerprint(code_b))
        return _as_spans(slices_a, len(code_a)), _as_spans(slices_b, len(code_b))

    def _fingerprint(self, code: str) -> Any:
        found = self._read.get(code)
        if found is None:
            found = _without(_fingerprint(self._make, code, self.k), self._boilerplate)
            self._read[code] = found
        return found


def _fingerprint(cls: Any, code: str, k: int) -> Any:
    # win_size 1: every k-gram kept (no winnowing: the notebooks are small)
    return cls("notebook.py", k, 1, filter=True, language="python", fp=io.StringIO(code))


def _without(fingerprint: Any, boilerplate: set[int]) -> Any:
    # copydetect's own boilerplate filter (np.intersect1d with assume_unique=True) mistakes a
    # k-gram repeated in one file for boilerplate; the template's hashes are removed here instead
    fingerprint.hashes = fingerprint.hashes - boilerplate
    fingerprint.hash_idx = {h: i for h, i in fingerprint.hash_idx.items() if h not in boilerplate}
    return fingerprint


def _as_spans(slices: Any, length: int) -> Spans:
    if len(slices) == 0 or len(slices[0]) == 0:
        return ()
    spans: list[tuple[int, int]] = []
    for start, end in zip(slices[0].tolist(), slices[1].tolist(), strict=True):
        start, end = max(0, int(start)), min(length, int(end))
        if end <= start:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return tuple(spans)
