"""``layer``: a layer class instantiated on fixed inputs: initialisation and computation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from grader.comparators.base import CompareInput, Judgement, as_array, register, shape_text
from grader.messages import bilingual
from grader.report import ItemStatus
from grader.spec import Text


@register("layer")
def compare_layer(given: CompareInput) -> Judgement:
    options = given.item.compare.options
    expected = given.expected or {}
    feedback: list[Text] = []
    details: dict[str, Any] = {}
    variables = given.measured.get("variables") or []
    want_vars = expected.get("variables") or []
    got_shapes = [tuple(v.get("shape", [])) for v in variables if isinstance(v, dict)]
    want_shapes = [tuple(v.get("shape", [])) for v in want_vars]
    details["variable_shapes"] = [list(s) for s in got_shapes]
    cls = given.item.extract.args.get("cls", "")
    if got_shapes != want_shapes:
        feedback.append(bilingual("layers.variable_shapes", cls=cls, want=_shapes(want_shapes),
                                  got=_shapes(got_shapes)))
    init_share = 0.0
    init_ok = True
    if options.get("init") == "he_uniform":
        init_share = float(options.get("init_share", 0.5))
        weights = next((v for v in variables if len(v.get("shape", [])) >= 2), None)
        init_ok, text = _check_he_uniform(weights, cls)
        details["init_ok"] = init_ok
        if text is not None:
            feedback.append(text)
    forward_ok, text = _check_output(given, expected, cls)
    details["output_ok"] = forward_ok
    if text is not None:
        feedback.append(text)
    fraction = init_share * init_ok + (1 - init_share) * forward_ok
    if got_shapes != want_shapes:
        fraction = 0.0
    status = (ItemStatus.CORRECT if fraction >= 1 else
              ItemStatus.PARTIAL if fraction > 0 else ItemStatus.INCORRECT)
    return Judgement(fraction, status, feedback, details)


def _shapes(shapes: list[tuple[int, ...]]) -> str:
    return ", ".join(f"({shape_text(s)})" for s in shapes) or "none"


def _check_he_uniform(weights: dict | None, cls: str) -> tuple[bool, Text | None]:
    if weights is None:
        return False, bilingual("layers.no_weight", cls=cls)
    shape = weights["shape"]
    fan_in = math.prod(shape[:-1])
    fan_out = shape[-1] * (math.prod(shape[:-2]) if len(shape) > 2 else 1)
    bound = math.sqrt(6 / fan_in)
    low, high = float(weights.get("min", 0)), float(weights.get("max", 0))
    std = float(weights.get("std", 0))
    reach = max(-low, high)
    ok = (low >= -bound * 1.001 and high <= bound * 1.001 and reach >= 0.85 * bound
          and abs(std - bound / math.sqrt(3)) <= 0.15 * bound / math.sqrt(3))
    if ok:
        return True, None
    xavier = math.sqrt(6 / (fan_in + fan_out))
    if abs(reach - xavier) <= 0.15 * xavier:
        return False, bilingual("layers.xavier", reach=reach, bound=bound, fan_in=fan_in)
    return False, bilingual("layers.not_he_uniform", low=low, high=high, bound=bound,
                            fan_in=fan_in)


def _check_output(given: CompareInput, expected: dict, cls: str) -> tuple[bool, Text | None]:
    options = given.item.compare.options
    want = as_array(expected.get("output"))
    got = as_array(given.measured.get("output"))
    if want is None:
        raise ValueError(f"reference output for {given.item.id} is missing: build the reference")
    if got is None:
        return False, bilingual("layers.output_unreadable", cls=cls)
    if got.shape != want.shape:
        return False, bilingual("layers.output_shape", cls=cls, want=shape_text(want.shape),
                                got=shape_text(got.shape))
    if np.allclose(got, want, atol=float(options.get("atol", 1e-4)),
                   rtol=float(options.get("rtol", 1e-4))):
        return True, None
    if np.nanmin(want) >= 0 > np.nanmin(got):
        return False, bilingual("layers.no_activation", cls=cls)
    return False, bilingual("layers.wrong_output", cls=cls)
