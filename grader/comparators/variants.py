"""NumPy versions of tf.nn.conv2d / max_pool / avg_pool on one 2-D image, for feedback only.

Scores never come from here (expected values come from the reference run); these name the
mistake: "your output is what stride 2 with VALID padding gives".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grader.messages import N_, bilingual
from grader.spec import Text


@dataclass(frozen=True)
class Variant:
    op: str  # "conv", "max" or "avg"
    stride: int
    padding: str  # "VALID" or "SAME"


def output_size(n: int, window: int, stride: int, padding: str) -> int:
    if padding == "SAME":
        return math.ceil(n / stride)
    return math.ceil((n - window + 1) / stride)


def apply_variant(image: np.ndarray, variant: Variant, window: int, kernel: np.ndarray | None
                  ) -> np.ndarray | None:
    """Output of ``variant`` on a 2-D image (``kernel`` is the conv filter), TF semantics."""
    n_rows, n_cols = image.shape
    out_r = output_size(n_rows, window, variant.stride, variant.padding)
    out_c = output_size(n_cols, window, variant.stride, variant.padding)
    if out_r <= 0 or out_c <= 0:
        return None
    pad_r = max((out_r - 1) * variant.stride + window - n_rows, 0)
    pad_c = max((out_c - 1) * variant.stride + window - n_cols, 0)
    top, left = pad_r // 2, pad_c // 2
    fill = -np.inf if variant.op == "max" else np.nan if variant.op == "avg" else 0.0
    padded = np.full((n_rows + pad_r, n_cols + pad_c), fill)
    padded[top : top + n_rows, left : left + n_cols] = image
    out = np.zeros((out_r, out_c))
    for i in range(out_r):
        for j in range(out_c):
            r, c = i * variant.stride, j * variant.stride
            patch = padded[r : r + window, c : c + window]
            if variant.op == "conv":
                if kernel is None:
                    return None
                out[i, j] = float(np.sum(patch * kernel))
            elif variant.op == "max":
                out[i, j] = float(np.max(patch))
            else:
                out[i, j] = float(np.nanmean(patch))
    return out


def all_variants(op_family: str) -> list[Variant]:
    ops = ["conv"] if op_family == "conv" else ["max", "avg"]
    return [Variant(op, s, p) for op in ops for s in (1, 2) for p in ("VALID", "SAME")]


def describe(variant: Variant) -> Text:
    """A variant in words, in both languages (a fragment of the arrays feedback)."""
    names = {"conv": N_("variant.conv"), "max": N_("variant.max"), "avg": N_("variant.avg")}
    return bilingual("variant.described", op=bilingual(names[variant.op]),
                     stride=variant.stride, padding=variant.padding)
