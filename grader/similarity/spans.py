"""The characters two notebooks' code have in common outside the template, as copydetect marks
them (for the review page's side-by-side view)."""

from __future__ import annotations

import io
from typing import Any

from grader.similarity.kgrams import K
from grader.similarity.text import cell_offsets

Spans = tuple[tuple[int, int], ...]


def matching_spans(code_a: str, code_b: str, template: str, k: int = K) -> tuple[Spans, Spans]:
    """Character ranges ``[start, end)`` of ``code_a`` and of ``code_b`` whose normalised
    k-grams the other holds and the template does not (merged, in order)."""
    return SpanFinder(template, k).spans(code_a, code_b)


class SpanFinder:
    """:func:`matching_spans` for many pairs against one template.

    Cell by cell: a cell the template holds as is has nothing to mark and is skipped; every
    other cell is fingerprinted once (copydetect, the template's k-grams removed) and compared
    with each of the other side's."""

    def __init__(self, template: str, k: int = K) -> None:
        from copydetect import CodeFingerprint, compare_files  # imports matplotlib: when used

        self._make, self._compare, self.k = CodeFingerprint, compare_files, k
        self._template_cells = {source.strip() for _, source in cell_offsets(template)}
        self._boilerplate: set[int] = _fingerprint(self._make, template, k).hashes
        self._read: dict[str, Any] = {}

    def spans(self, code_a: str, code_b: str) -> tuple[Spans, Spans]:
        cells_a, cells_b = self._cells(code_a), self._cells(code_b)
        marked_a: list[tuple[int, int]] = []
        marked_b: list[tuple[int, int]] = []
        for start_a, fa in cells_a:
            for start_b, fb in cells_b:
                if not fa.hashes & fb.hashes:
                    continue
                _, _, (slices_a, slices_b) = self._compare(fa, fb)
                marked_a += _shifted(_as_spans(slices_a, len(fa.raw_code)), start_a)
                marked_b += _shifted(_as_spans(slices_b, len(fb.raw_code)), start_b)
        return _merged(marked_a), _merged(marked_b)

    def _cells(self, code: str) -> list[tuple[int, Any]]:
        cells = []
        for start, source in cell_offsets(code):
            if source.strip() in self._template_cells:
                continue
            found = self._read.get(source)
            if found is None:
                found = _without(_fingerprint(self._make, source, self.k), self._boilerplate)
                self._read[source] = found
            if found.hashes:
                cells.append((start, found))
        return cells


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
    pairs = zip(slices[0].tolist(), slices[1].tolist(), strict=True)
    return tuple((max(0, int(s)), min(length, int(e))) for s, e in pairs)


def _shifted(spans: Spans, by: int) -> list[tuple[int, int]]:
    return [(start + by, end + by) for start, end in spans]


def _merged(spans: list[tuple[int, int]]) -> Spans:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)
