"""Data sets the grader supplies to notebooks that would otherwise download them."""

from grader.data.mnist import (
    DataError,
    MnistArrays,
    default_data_dir,
    ensure_mnist,
    fetch_main,
    load_mnist,
    verify_mnist,
)

__all__ = [
    "DataError",
    "MnistArrays",
    "default_data_dir",
    "ensure_mnist",
    "fetch_main",
    "load_mnist",
    "verify_mnist",
]
