"""Every pair of a class's notebooks compared by their code (docs/similarity.md, "How code is
compared").

Three kinds of code, by k-gram (:mod:`grader.similarity.kgrams`: names normalised, cell by cell):

- **template**: k-grams of the notebook handed out. Dropped: never counted, never shown.
- **expected**: k-grams of the reference solution (``expected``), and k-grams that at least
  :data:`CLASS_SHARE` of the class (and at least :data:`CLASS_SHARE_MIN` students) wrote. They
  count in ``code`` but are no evidence: every correct student writes them.
- **distinctive**: every other k-gram. Two students sharing many of them wrote alike what
  nobody else wrote.

For a pair, ``code`` is the share of the larger notebook's non-template k-grams that both hold
(1.0: the same added code), ``distinctive`` the number of shared distinctive k-grams. A pair is
flagged when the added code is mostly the same *and* something distinctive is shared
(:data:`CODE_FLAG`, :data:`DISTINCTIVE_FLAG`), when much distinctive code is shared whatever
else each added (:data:`DISTINCTIVE_ALONE`), or when the added code is the same to the token
(:data:`CODE_IDENTICAL`, at least :data:`IDENTICAL_MIN_KGRAMS` shared) in fewer than
:data:`CLASS_SHARE_MIN` students' notebooks, or with something distinctive in it
(:data:`IDENTICAL_DISTINCTIVE`). The thresholds were set
on the lecture's notebooks (tests/test_similarity_code.py): a copy renamed and reordered,
honest variants of the solution, an independently written notebook.

All pairs are scored at once: the k-grams two or more notebooks hold become the columns of a 0/1
matrix, and a matrix product counts the shared ones of every pair (numpy, in column blocks of
:data:`BLOCK_COLUMNS`). copydetect then marks the matching characters of the pairs shown first
(:data:`SPAN_PAIRS`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grader.similarity.kgrams import KgramReader
from grader.similarity.spans import SpanFinder

#: A k-gram at least this share of the class holds is expected code (10%): what is common is
#: what the lecture taught, not what one student passed to another.
CLASS_SHARE = 0.10
#: ... and at least this many students (in a class of twenty, two alike are not "the class").
CLASS_SHARE_MIN = 3
#: Flag a pair whose added code is at least this alike (share of the larger one's k-grams) ...
CODE_FLAG = 0.80
#: ... and who share at least this many distinctive k-grams (60: about three lines nobody else
#: wrote). A copy of an independently written notebook, renamed, reordered and with two answers
#: rewritten, scores 0.91 with 436; honest students share 19 at most in a class of twenty and
#: 40 in the benchmark's synthetic class of 1,000 (499,500 pairs, a shared debugging line
#: among them), at a ``code`` under 0.8 (0.91 with 22: the spike's 0.90 and 20 flagged it).
DISTINCTIVE_FLAG = 60
#: Flag a pair sharing this many distinctive k-grams whatever its ``code`` (about ten lines
#: nobody else wrote): a copier who pads the notebook with cells of their own lowers ``code``,
#: not what is shared. Honest pairs: 40 at most in the synthetic class of 1,000.
DISTINCTIVE_ALONE = 200
#: Flag a pair whose added code is this alike even with nothing distinctive: the same code to
#: the token (a copy of the solution renamed and reordered scores 1.0). Honest students differ
#: somewhere in the ~15 lines they add: one rewritten expression (``tf.add(a, b)`` for
#: ``a + b``) takes 2 to 4% off, and honest variants of the solution score 0.75 at most.
CODE_IDENTICAL = 0.99
#: ... when they share at least this many k-grams (two notebooks that add one short line alike
#: are not "the same code").
IDENTICAL_MIN_KGRAMS = 150
#: ... or, however many students hold it, when what is the same includes at least this many
#: distinctive k-grams (10: part of one line of their own; honest notebooks are never the same
#: to the token in the first place, the closest honest pair of 1,000 scores 0.95).
IDENTICAL_DISTINCTIVE = 10
#: Matching character spans are computed for the pairs sorted first, up to this many (and for
#: every flagged pair), when their ``code`` is at least :data:`SPAN_FLOOR`.
SPAN_PAIRS = 100
SPAN_FLOOR = 0.5
#: Columns of the 0/1 matrix multiplied at once (memory: rows x BLOCK_COLUMNS x 4 bytes).
BLOCK_COLUMNS = 4096


@dataclass(frozen=True, slots=True)
class CodeSubmission:
    """One notebook's code (:func:`grader.similarity.text.notebook_code`'s text) and who owns it."""

    key: str
    code: str


@dataclass(frozen=True, slots=True)
class CodePair:
    """Two notebooks compared. ``a`` is always a student; ``b`` a student or an archived
    notebook. ``spans_a``/``spans_b``: character ranges of each side's code that match outside
    the template (empty when not computed: below the floor or beyond the first pairs)."""

    a: str
    b: str
    code: float
    distinctive: int
    flagged: bool
    spans_a: tuple[tuple[int, int], ...] = ()
    spans_b: tuple[tuple[int, int], ...] = ()


def compare_code(students: Sequence[CodeSubmission], template: str,
                 expected: Sequence[str] = (), archive: Sequence[CodeSubmission] = (),
                 *, min_code: float = 0.0, reader: KgramReader | None = None) -> list[CodePair]:
    """Every pair of ``students``, and every student with every ``archive`` notebook (past
    terms: compared against, never against each other), flagged pairs first, then by ``code``
    and ``distinctive``, highest first. Pairs under ``min_code`` are left out."""
    reader = reader or KgramReader()
    everyone = [*students, *archive]
    n_students, n_all = len(students), len(everyone)
    if n_students == 0 or n_all < 2:
        return []
    template_kgrams = reader.text(template)
    sets = [np.setdiff1d(reader.text(s.code), template_kgrams, assume_unique=True)
            for s in everyone]
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    expected_kgrams = np.setdiff1d(reader.texts(expected), template_kgrams, assume_unique=True)

    shared, shared_distinctive = _shared_counts(sets, n_students, expected_kgrams)
    larger = np.maximum(sizes[:n_students, None], sizes[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        code = np.where(larger > 0, shared / np.maximum(larger, 1), 0.0)
    flagged = (((code >= CODE_FLAG) & (shared_distinctive >= DISTINCTIVE_FLAG))
               | (shared_distinctive >= DISTINCTIVE_ALONE)
               | (_identical(code, shared) & (shared_distinctive >= IDENTICAL_DISTINCTIVE))
               | _rare_identical(code, shared, n_students))

    # the pairs: i < j among students, every student with every archived notebook
    rows, cols = np.triu_indices(n_students, k=1, m=n_all)
    code_v, dist_v, flag_v = code[rows, cols], shared_distinctive[rows, cols], flagged[rows, cols]
    if min_code > 0:
        keep = code_v >= min_code
        rows, cols, code_v, dist_v, flag_v = (rows[keep], cols[keep], code_v[keep], dist_v[keep],
                                              flag_v[keep])
    order = np.lexsort((cols, rows, -dist_v, -code_v, ~flag_v))

    pairs: list[CodePair] = []
    shown = 0
    finder: SpanFinder | None = None
    for at in order.tolist():
        i, j = int(rows[at]), int(cols[at])
        score, is_flagged = float(code_v[at]), bool(flag_v[at])
        spans_a: tuple[tuple[int, int], ...] = ()
        spans_b: tuple[tuple[int, int], ...] = ()
        if score >= SPAN_FLOOR and (is_flagged or shown < SPAN_PAIRS):
            shown += 1
            finder = finder or SpanFinder(template, reader.k)
            spans_a, spans_b = finder.spans(everyone[i].code, everyone[j].code)
        pairs.append(CodePair(everyone[i].key, everyone[j].key, round(score, 4), int(dist_v[at]),
                              is_flagged, spans_a, spans_b))
    return pairs


def _identical(code: np.ndarray, shared: np.ndarray) -> np.ndarray:
    return (code >= CODE_IDENTICAL) & (shared >= IDENTICAL_MIN_KGRAMS)


def _rare_identical(code: np.ndarray, shared: np.ndarray, n_students: int) -> np.ndarray:
    """Pairs with the same added code (:data:`CODE_IDENTICAL`, :data:`IDENTICAL_MIN_KGRAMS`)
    that fewer than :data:`CLASS_SHARE_MIN` students hold: the same code held by three or more
    is a common way to write the answers, as a k-gram that many hold is expected."""
    near = _identical(code, shared)
    among_students = near[:, :n_students].copy()
    np.fill_diagonal(among_students, False)
    rare = 1 + among_students.sum(axis=1) < CLASS_SHARE_MIN
    rare_column = np.ones(near.shape[1], dtype=bool)
    rare_column[:n_students] = rare
    return near & rare[:, None] & rare_column[None, :]


def _shared_counts(sets: list[np.ndarray], n_students: int,
                   expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each student (rows) and each notebook (columns): the k-grams both hold, and those of
    them that are distinctive (neither expected nor common in the class)."""
    n_all = len(sets)
    sizes = [len(s) for s in sets]
    shared = np.zeros((n_students, n_all), dtype=np.float32)
    distinctive = np.zeros((n_students, n_all), dtype=np.float32)
    if sum(sizes) == 0:
        return shared.astype(np.int64), distinctive.astype(np.int64)
    values = np.concatenate(sets)
    owners = np.repeat(np.arange(n_all), sizes)
    vocab, column, holders = np.unique(values, return_inverse=True, return_counts=True)
    in_class = np.bincount(column[owners < n_students], minlength=len(vocab))
    common = in_class >= max(CLASS_SHARE_MIN, math.ceil(CLASS_SHARE * n_students))
    is_expected = common | np.isin(vocab, expected, assume_unique=True)

    # only k-grams two notebooks hold can be shared; renumber them 0..m-1
    kept = holders >= 2
    new_column = np.cumsum(kept) - 1
    entry_kept = kept[column]
    owners, column = owners[entry_kept], new_column[column[entry_kept]]
    entry_distinctive = ~is_expected[kept][column]
    by_column = np.argsort(column, kind="stable")
    owners, column, entry_distinctive = (owners[by_column], column[by_column],
                                         entry_distinctive[by_column])
    n_columns = int(kept.sum())
    for start in range(0, n_columns, BLOCK_COLUMNS):
        lo, hi = np.searchsorted(column, [start, start + BLOCK_COLUMNS])
        block = np.zeros((n_all, BLOCK_COLUMNS), dtype=np.float32)
        block[owners[lo:hi], column[lo:hi] - start] = 1.0
        shared += block[:n_students] @ block.T
        block[:, :] = 0.0
        pick = entry_distinctive[lo:hi]
        block[owners[lo:hi][pick], column[lo:hi][pick] - start] = 1.0
        distinctive += block[:n_students] @ block.T
    return np.rint(shared).astype(np.int64), np.rint(distinctive).astype(np.int64)
