"""The images the trained model is measured on, and their labels, read once per data file.

Host side only: the images go to the clean room (with moved copies made per run from the clean
room's secret seed, :mod:`grader.data.perturb`), the labels never leave the host (the accuracy
comparator's ``prepare`` hook reads them). ``mnist.npz`` is about 55 MB; it is read once per
change of the file (its mtime is part of the cache key), not once per submission.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from grader.data.mnist import NPZ_NAME, MnistArrays, load_mnist
from grader.data.perturb import moved_name
from grader.data.split import load_holdout


def mnist_test_labels(data_dir: Path) -> np.ndarray:
    """MNIST's test labels, verified once per change of the data file."""
    return _mnist(data_dir / NPZ_NAME).y_test


def evaluation_images(data_dir: Path) -> dict[str, np.ndarray]:
    """The 10,000 test images and the training images kept back from the student's sandbox
    (``docs/data.md``)."""
    return {"test": _mnist(data_dir / NPZ_NAME).x_test, "holdout": load_holdout(data_dir)[0]}


def evaluation_labels(data_dir: Path) -> dict[str, np.ndarray]:
    """Their labels, by the same image set names, and again under the name of each set's moved
    copy (:mod:`grader.data.perturb`: moving an image does not change its digit)."""
    labels = {"test": mnist_test_labels(data_dir), "holdout": load_holdout(data_dir)[1]}
    return {**labels, **{moved_name(name): truth for name, truth in labels.items()}}


def _mnist(path: Path) -> MnistArrays:
    return _load_mnist(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load_mnist(path: Path, mtime_ns: int) -> MnistArrays:
    return load_mnist(path)
