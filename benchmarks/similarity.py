"""``make bench`` (similarity, issue 20): every pair of a class compared, code and models.

Code: a synthetic class made of the lecture's real notebooks. Each student is the reference
solution with each answer written one of the honest ways (tests/similarity_support.py), plus
lines of their own (a print to look at a shape, a changed learning rate or epoch count, an extra
cell); one student in fifty hands in a renamed, reordered copy of another's. Timed: reading the
notebooks' code (:func:`grader.similarity.notebook_code`) and :func:`compare_code` over every
pair (k-grams, the matrix products, copydetect's spans of the first pairs).

Models: fingerprints of 15,000 labels (10,000 test, 5,000 held-out images), each model erring
on about 2% of them, more often on hard images (so honest models share some errors, as real
ones do); one in fifty a copy. Timed: :func:`compare_models` over every pair.

Goals: 300 students (44,850 pairs) within 60 s for code and 5 s for models; 1,000 students
within 10 minutes (`--quick`: 300 only).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import nbformat
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.fingerprints import ModelFingerprint  # noqa: E402
from grader.similarity import CodeSubmission, compare_code, compare_models, notebook_code  # noqa: E402
from tests.similarity_support import (  # noqa: E402
    SOLUTION,
    TEMPLATE,
    honest_variant,
    read,
    renamed_copy,
)

GOALS = {300: (60.0, 5.0), 1000: (600.0, 600.0)}
COPY_EVERY = 50

OWN_LINES = [
    "print(x_train.shape, t_train.shape)",
    "print(h.get_shape())",
    "print(sample_image.shape, {n})",
    "n_epochs = {n}",
    "print('check', {n})",
    "assert convoluted_image is not None",
    "print(np.mean(x_train), {n})",
    "batch_size = {n}",
]


def synthetic_class(n: int, seed: int) -> tuple[list[nbformat.NotebookNode], list[int]]:
    """The notebooks, and for each the student whose work it is (itself, or the one copied)."""
    rng = random.Random(seed)
    solution = read(SOLUTION)
    notebooks: list[nbformat.NotebookNode] = []
    origin: list[int] = []
    for i in range(n):
        if i and i % COPY_EVERY == 0:
            source = rng.randrange(i)
            notebooks.append(renamed_copy(notebooks[source], (45, 49)))
            origin.append(origin[source])
            continue
        origin.append(i)
        nb = honest_variant(solution, seed * 100_000 + i)
        code_cells = [c for c in nb.cells if c.cell_type == "code"]
        for _ in range(rng.randrange(1, 4)):
            line = rng.choice(OWN_LINES).format(n=rng.randrange(2, 500))
            cell = rng.choice(code_cells)
            cell.source = cell.source + "\n" + line
        if rng.random() < 0.3:
            loop = f"for epoch_check in range({rng.randrange(2, 9)}):\n"
            nb.cells.append(nbformat.v4.new_code_cell(
                loop + f"    print(epoch_check * {rng.randrange(100)})"))
        notebooks.append(nb)
    return notebooks, origin


def found(flagged: list[tuple[int, int]], origin: list[int]) -> tuple[int, int]:
    """Copies in a flagged pair with a notebook of the same origin; flagged pairs of honest
    students (different origins)."""
    copies = {i for a, b in flagged if origin[a] == origin[b] for i in (a, b) if origin[i] != i}
    return len(copies), sum(origin[a] != origin[b] for a, b in flagged)


def bench_code(n: int) -> tuple[float, float, int, int]:
    """Seconds reading and comparing, copies found, honest pairs flagged."""
    notebooks, origin = synthetic_class(n, seed=n)
    template = read(TEMPLATE)
    start = time.perf_counter()
    texts = [notebook_code(nb).text for nb in notebooks]
    template_text = notebook_code(template).text
    solution_text = notebook_code(read(SOLUTION)).text
    read_s = time.perf_counter() - start
    students = [CodeSubmission(f"s{i:04d}", t) for i, t in enumerate(texts)]
    start = time.perf_counter()
    pairs = compare_code(students, template_text, expected=[solution_text])
    compare_s = time.perf_counter() - start
    assert len(pairs) == n * (n - 1) // 2
    flagged = [(int(p.a[1:]), int(p.b[1:])) for p in pairs if p.flagged]
    return read_s, compare_s, *found(flagged, origin)


def synthetic_fingerprints(n: int, seed: int) -> tuple[dict[str, ModelFingerprint],
                                                       dict[str, np.ndarray], list[int]]:
    rng = np.random.default_rng(seed)
    sizes = {"test": 10_000, "holdout": 5_000}
    labels = {k: rng.integers(0, 10, size, dtype=np.uint8) for k, size in sizes.items()}
    difficulty = {k: rng.beta(0.3, 12, size) for k, size in sizes.items()}  # mean about 2.4%
    confusion = {k: (labels[k] + rng.integers(1, 10, size)) % 10 for k, size in sizes.items()}
    prints: dict[str, ModelFingerprint] = {}
    origin: list[int] = []
    for i in range(n):
        key = f"s{i:04d}"
        if i and i % COPY_EVERY == 0:
            source = int(rng.integers(i))
            copied = prints[f"s{source:04d}"].predictions
            prints[key] = ModelFingerprint(rng.bytes(32).hex(), copied)
            origin.append(origin[source])
            continue
        origin.append(i)
        predictions = {}
        for k, truth in labels.items():
            wrong = rng.random(len(truth)) < difficulty[k]
            other = (truth + rng.integers(1, 10, len(truth))) % 10
            guess = np.where(rng.random(len(truth)) < 0.6, confusion[k], other)
            predictions[k] = np.where(wrong, guess, truth).astype(np.uint8).tobytes()
        prints[key] = ModelFingerprint(rng.bytes(32).hex(), predictions)
    return prints, labels, origin


def bench_models(n: int) -> tuple[float, int, int]:
    prints, labels, origin = synthetic_fingerprints(n, seed=n)
    start = time.perf_counter()
    pairs = compare_models(prints, labels)
    took = time.perf_counter() - start
    assert len(pairs) == n * (n - 1) // 2
    flagged = [(int(p.a[1:]), int(p.b[1:])) for p in pairs if p.flagged]
    return took, *found(flagged, origin)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 students only")
    args = parser.parse_args()
    sizes = [300] if args.quick else [300, 1000]
    print("similarity: every pair of a class (code: read + compare; models: compare)\n")
    print("found: planted copies in a flagged pair with their original; honest: flagged pairs"
          " of students who did not copy\n")
    print(f"{'students':>9}{'pairs':>9}{'copies':>7}{'read s':>8}{'code s':>8}{'goal':>6}"
          f"{'found':>6}{'honest':>7}{'models s':>10}{'goal':>6}{'found':>6}{'honest':>7}  verdict")
    failed = False
    for n in sizes:
        read_s, code_s, code_flagged, code_wrong = bench_code(n)
        models_s, models_flagged, models_wrong = bench_models(n)
        code_goal, models_goal = GOALS[n]
        ok = read_s + code_s <= code_goal and models_s <= models_goal
        failed |= not ok
        print(f"{n:>9}{n * (n - 1) // 2:>9}{(n - 1) // COPY_EVERY:>7}{read_s:>8.1f}{code_s:>8.1f}"
              f"{code_goal:>6.0f}{code_flagged:>6}{code_wrong:>7}{models_s:>10.2f}"
              f"{models_goal:>6.0f}{models_flagged:>6}{models_wrong:>7}  "
              f"{'ok' if ok else 'OVER'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
