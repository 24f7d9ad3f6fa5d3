"""Data sets the grader supplies to notebooks that would otherwise download them.

MNIST (docs/data.md): ``data_dir/mnist.npz`` is the full set, host side only;
``sandbox_data_dir(data_dir)`` is the only folder a sandbox may mount (the training set without
``HOLDOUT_SIZE`` held-out images, the full test set); ``load_holdout`` gives the held-out images
for measuring the trained model outside the sandbox; :mod:`grader.data.evaluation` serves them
(and the test images) with their labels, cached; :mod:`grader.data.perturb` makes the moved
copies of both that each run also measures (what a table of public MNIST cannot read).
"""

from grader.data.evaluation import evaluation_images, evaluation_labels, mnist_test_labels
from grader.data.mnist import (
    DataError,
    MnistArrays,
    default_data_dir,
    load_mnist,
    verify_mnist,
)
from grader.data.split import HOLDOUT_SIZE, load_holdout, sandbox_data_dir, verify_split
from grader.data.supply import ensure_mnist, fetch_main, verify_data_dir

__all__ = [
    "HOLDOUT_SIZE",
    "DataError",
    "MnistArrays",
    "default_data_dir",
    "ensure_mnist",
    "evaluation_images",
    "evaluation_labels",
    "fetch_main",
    "load_holdout",
    "load_mnist",
    "mnist_test_labels",
    "sandbox_data_dir",
    "verify_data_dir",
    "verify_mnist",
    "verify_split",
]
