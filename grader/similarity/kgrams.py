"""Code as a set of k-grams: copydetect's tokens with names normalised, hashed stably.

copydetect (MOSS-style fingerprints) reads the code with Pygments and writes every name as
``V``, a function's as ``F``, a class's as ``O``, every string as ``S``, and drops comments and
white space: renaming variables or reformatting changes nothing. A k-gram is :data:`K`
consecutive characters of that normalised text (about eight to twelve tokens).

Each cell is normalised and cut into k-grams alone, so no k-gram spans two cells: moving or
swapping cells changes nothing either. The hash is blake2b (8 bytes), the same in every process
(copydetect's own uses Python's ``hash()``, randomised per process). A cell's k-grams are cached
by its source: most of a class's cells are the template's, unchanged, and are read once."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np

from grader.similarity.text import split_cells

#: Characters of normalised code in a k-gram (copydetect's default noise threshold, 25: shorter
#: matches, such as ``V=V.V(V,V)``, are everywhere and mean nothing).
K = 25

_EMPTY = np.zeros(0, dtype=np.int64)

# the name after ``as`` (``import numpy as np``, ``with ... as sess``): Pygments leaves an import
# alias unnormalised (a namespace, not a name), so a renamed alias would change the k-grams
_ALIAS = re.compile(r"\bas\s+[^\W\d]\w*")


def normalise(source: str) -> str:
    """``source`` as copydetect's tokeniser writes it (names ``V``/``F``/``O``, strings ``S``)."""
    from copydetect.utils import filter_code  # imports matplotlib: only when code is compared

    filtered, _ = filter_code(_ALIAS.sub("as V", source), "cell.py", language="python")
    return str(filtered)


def hash_kgrams(normalised: str, k: int = K) -> np.ndarray:
    """The sorted unique blake2b-64 hashes of ``normalised``'s k-grams (int64)."""
    if len(normalised) < k:
        return _EMPTY
    hashes = {
        int.from_bytes(hashlib.blake2b(normalised[i:i + k].encode(), digest_size=8).digest(),
                       "little", signed=True)
        for i in range(len(normalised) - k + 1)
    }
    return np.array(sorted(hashes), dtype=np.int64)


class KgramReader:
    """Reads texts into k-gram sets, one cell at a time, caching each distinct cell's set.

    ``max_cached`` bounds the cache in k-grams held (8 bytes each: 20 million, 160 MB; a class
    of 1,000 holds about 3 million); cells read beyond it are read again when met again."""

    def __init__(self, k: int = K, max_cached: int = 20_000_000) -> None:
        self.k = k
        self.max_cached = max_cached
        self._cache: dict[str, np.ndarray] = {}
        self._held = 0

    def cell(self, source: str) -> np.ndarray:
        found = self._cache.get(source)
        if found is None:
            found = hash_kgrams(normalise(source), self.k)
            if self._held + len(found) <= self.max_cached:
                self._cache[source] = found
                self._held += len(found)
        return found

    def text(self, code: str) -> np.ndarray:
        """The k-grams of a joined text (:mod:`grader.similarity.text`), every cell's united."""
        return union(self.cell(cell) for cell in split_cells(code))

    def texts(self, codes: Iterable[str]) -> np.ndarray:
        return union(self.text(code) for code in codes)


def union(sets: Iterable[np.ndarray]) -> np.ndarray:
    parts = [s for s in sets if len(s)]
    return np.unique(np.concatenate(parts)) if parts else _EMPTY
