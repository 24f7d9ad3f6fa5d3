"""``op_output``: the output of one convolution or pooling, against the reference's."""

from __future__ import annotations

from typing import Any

import numpy as np

from grader.comparators.base import CompareInput, Judgement, as_array, register, shape_text
from grader.comparators.variants import Variant, all_variants, apply_variant, describe
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
            return Judgement(0.0, ItemStatus.ERROR, [Text(
                ja=f"セルでエラーが起きました: {ename}: {evalue}",
                en=f"The cell raised {ename}: {evalue}")], details)
        return Judgement(0.0, ItemStatus.ERROR, [Text(
            ja="このセルで新しい出力が作られていません（前のセルの値が残っています）。",
            en="This cell did not produce a new output: the value is left from an earlier cell.",
        )], details)
    if submitted is None:
        return Judgement(0.0, ItemStatus.ERROR, [Text(
            ja="出力を読み取れませんでした。", en="The output could not be read.")], details)
    details["submitted_shape"] = list(submitted.shape)
    feedback: list[Text] = []
    if submitted.shape == expected.shape and np.allclose(submitted, expected, atol=atol, rtol=0):
        unseen = _unseen_images_agree(given, atol)
        details["fresh_images_ok"] = unseen
        if not unseen:
            return Judgement(0.0, ItemStatus.INCORRECT, [Text(
                ja="演習の画像では正しい値ですが、採点側が用意した別の画像では違う値になります。"
                "答えは値を書き込むのではなく、入力 x に演算を適用して計算してください。",
                en="Your answer has the right values for the exercise's image but not for "
                "other images the grader fed to x: compute it from x with the operation "
                "instead of writing the values in.",
            )], details)
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
        return Text(
            ja=f"reshape が出力に合っていません ({evalue})。出力は {shape_text(spatial)} なので "
            f"reshape({want}) とします。",
            en=f"The reshape does not fit the output ({evalue}). The output is "
            f"{shape_text(spatial)}: use reshape({want}).",
        )
    return Text(ja=f"セルでエラーが起きました: {ename}: {evalue}",
                en=f"The cell raised {ename}: {evalue}")


def _explain(given: CompareInput, submitted: np.ndarray, expected: np.ndarray, atol: float
             ) -> Text:
    options = given.item.compare.options
    asked = Variant(str(options.get("op")), int(options.get("stride", 1)),
                    str(options.get("padding", "VALID")))
    window = int(options.get("window", 2))
    asked_ja, asked_en = describe(asked)
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
                ja, en = describe(variant)
                return Text(
                    ja=f"出力 ({got}) は {ja} の結果です。この課題は {asked_ja} で、出力は {want} です。",
                    en=f"Your output ({got}) is what {en} gives; this exercise asks for "
                    f"{asked_en}, whose output is {want}.",
                )
            same_shape.append(variant)
        expected_spatial = _spatial(expected)
        if same_shape and (expected_spatial is None or spatial.shape != expected_spatial.shape):
            ja = "、".join(describe(v)[0] for v in same_shape)
            en = "; ".join(describe(v)[1] for v in same_shape)
            return Text(
                ja=f"出力の形 {got} になるのは {ja} です。この課題は {asked_ja} で、出力は {want} です。",
                en=f"An output of shape {got} comes from {en}. This exercise asks for "
                f"{asked_en}: {want}.",
            )
    if submitted.shape != expected.shape:
        return Text(
            ja=f"出力の形が違います: {want} になるはずが {got} です ({asked_ja})。",
            en=f"Wrong output shape: expected {want} ({asked_en}), got {got}.",
        )
    return Text(
        ja=f"出力の形 ({want}) は正しいですが、値が違います。{asked_ja} になっているか確認してください。",
        en=f"The shape ({want}) is right but the values differ: check that you apply {asked_en} "
        "to x with the filter W.",
    )
