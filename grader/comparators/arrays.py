"""``op_output``: the output of one convolution or pooling, against the reference's."""

from __future__ import annotations

from typing import Any

import numpy as np

from grader.comparators.base import CompareInput, Judgement, as_array, register, shape_text
from grader.comparators.variants import Variant, all_variants, apply_variant, describe
from grader.messages import bilingual
from grader.report import ItemStatus
from grader.spec import Text


def _spatial(array: np.ndarray) -> np.ndarray | None:
    """The 2-D image inside a (1, H, W, 1) tensor (or an already 2-D array)."""
    squeezed = np.squeeze(array)
    return squeezed if squeezed.ndim == 2 else None


def _inputs(data: dict | None, name: str) -> np.ndarray | None:
    if not data:
        return None
    array = as_array((data.get("inputs") or {}).get(name))
    return None if array is None else _spatial(array)


@register("op_output")
def compare_op_output(given: CompareInput) -> Judgement:
    options = given.item.compare.options
    atol = float(options.get("atol", 1e-4))
    expected = as_array((given.expected or {}).get("output"))
    if expected is None:
        raise ValueError(f"reference output for {given.item.id} is missing: build the reference")
    submitted = as_array(given.measured.get("output"))
    details: dict[str, Any] = {"expected_shape": list(expected.shape)}
    if given.measured.get("fresh") is False:
        if given.cell_error is not None:
            ename, evalue = given.cell_error
            return Judgement(0.0, ItemStatus.ERROR, [bilingual(
                "cell.raised", ename=ename, evalue=evalue)], details)
        return Judgement(0.0, ItemStatus.ERROR, [bilingual("arrays.stale_output")], details)
    if submitted is None:
        return Judgement(0.0, ItemStatus.ERROR, [bilingual("arrays.output_unreadable")], details)
    details["submitted_shape"] = list(submitted.shape)
    feedback: list[Text] = []
    if submitted.shape == expected.shape and np.allclose(submitted, expected, atol=atol, rtol=0):
        unseen = _unseen_images_agree(given, atol)
        details["fresh_images_ok"] = unseen
        if not unseen:
            return Judgement(0.0, ItemStatus.INCORRECT, [bilingual("arrays.hard_coded")], details)
        if given.cell_error is None:
            return Judgement(1.0, ItemStatus.CORRECT, [], details)
        feedback.append(_cell_error_text(given.cell_error, expected.shape))
        share = float(options.get("share_if_cell_fails", 0.5))
        return Judgement(share, ItemStatus.PARTIAL, feedback, details)
    feedback.append(_explain(given, submitted, expected, atol))
    if given.cell_error is not None and not _reshapes_to(given.cell_error, expected.shape):
        feedback.append(_cell_error_text(given.cell_error, expected.shape))
    return Judgement(0.0, ItemStatus.INCORRECT, feedback, details)


def _unseen_images_agree(given: CompareInput, atol: float) -> bool:
    """The student's graph gives the reference's outputs on the fresh images too (and was
    fed them: a graph with no input gives the same output whatever the image)."""
    if not given.measured.get("fed"):
        return False
    mine = given.measured.get("fresh_outputs") or []
    theirs = (given.expected or {}).get("fresh_outputs") or []
    if not theirs or len(mine) != len(theirs):
        return False
    for a, b in zip(mine, theirs, strict=True):
        got, want = as_array(a), as_array(b)
        if got is None or want is None or got.shape != want.shape:
            return False
        if not np.allclose(got, want, atol=atol, rtol=0):
            return False
    return True


def _reshapes_to(error: tuple[str, str], expected_shape: tuple[int, ...]) -> bool:
    """The cell's reshape already asks for the expected shape: fixing the op fixes it too."""
    spatial = tuple(d for d in expected_shape if d != 1)
    wanted = "(" + ",".join(str(d) for d in spatial) + ")"
    return error[0] == "ValueError" and f"intoshape{wanted}" in error[1].replace(" ", "")


def _cell_error_text(error: tuple[str, str], expected_shape: tuple[int, ...]) -> Text:
    ename, evalue = error
    spatial = tuple(d for d in expected_shape if d != 1) or expected_shape
    want = ", ".join(str(d) for d in spatial)
    if ename == "ValueError" and "reshape" in evalue:
        return bilingual("arrays.reshape", evalue=evalue, shape=shape_text(spatial), want=want)
    return bilingual("cell.raised", ename=ename, evalue=evalue)


def _explain(given: CompareInput, submitted: np.ndarray, expected: np.ndarray, atol: float
             ) -> Text:
    options = given.item.compare.options
    asked = Variant(str(options.get("op")), int(options.get("stride", 1)),
                    str(options.get("padding", "VALID")))
    window = int(options.get("window", 2))
    asked_text = describe(asked)
    image = _inputs(given.measured, "sample_image")
    if image is None:
        image = _inputs(given.expected, "sample_image")
    kernel = _inputs(given.measured, "W")
    if kernel is None:
        kernel = _inputs(given.expected, "W")
    spatial = _spatial(submitted)
    want = shape_text(tuple(d for d in expected.shape if d != 1))
    got = shape_text(tuple(d for d in submitted.shape if d != 1))
    if image is not None and spatial is not None:
        same_shape = []
        for variant in all_variants("conv" if asked.op == "conv" else "pool"):
            out = apply_variant(image, variant, window, kernel)
            if out is None or out.shape != spatial.shape:
                continue
            if np.allclose(out, spatial, atol=atol, rtol=0):
                return bilingual("arrays.other_variant", got=got, variant=describe(variant),
                                 asked=asked_text, want=want)
            same_shape.append(variant)
        expected_spatial = _spatial(expected)
        if same_shape and (expected_spatial is None or spatial.shape != expected_spatial.shape):
            described = [describe(v) for v in same_shape]
            variants = Text(ja="、".join(t.ja for t in described),
                            en="; ".join(t.en for t in described))
            return bilingual("arrays.shape_of_variants", got=got, variants=variants,
                             asked=asked_text, want=want)
    if submitted.shape != expected.shape:
        return bilingual("arrays.wrong_shape", want=want, got=got, asked=asked_text)
    return bilingual("arrays.wrong_values", want=want, asked=asked_text)
