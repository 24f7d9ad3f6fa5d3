"""The ``function`` comparator: a function's outputs against the reference function's, case by
case, on the inputs the grader drew for this run.

A case passes when the student's first call gave an output of the reference's shape, of an
acceptable dtype (``dtype``: ``same``, ``kind`` or ``any``), with values within ``rtol`` and
``atol`` (NaN where the reference has NaN, nowhere else), and the second call (the second
pass, in the reverse order) gave the same bytes. Scoring (``scoring``): ``all`` (default) gives
the points only when every case passes, ``cases`` in proportion. The feedback names the
failing cases (their name, the shapes and dtypes of their inputs, never the values) and how
each failed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grader.comparators.base import CompareInput, Judgement, register, shape_text
from grader.function_cases import Case, read_compare
from grader.function_records import CallRecord, SideResult
from grader.messages import N_, bilingual
from grader.report import ItemStatus
from grader.spec import Text

#: How many failing cases the feedback names (the details list every case).
SHOWN_FAILURES = 3
REFUSED = {"file": N_("functions.refused_file"), "network": N_("functions.refused_network"),
           "process": N_("functions.refused_process"), "native": N_("functions.refused_native"),
           "clock": N_("functions.refused_clock")}
#: Why a call gave no output, by the room's code (anything else: it raised).
FAILED = {"memory": N_("functions.memory"), "too_large": N_("functions.too_large"),
          "bad_output": N_("functions.bad_output")}


@register("function")
def compare_function(data: CompareInput) -> Judgement:
    spec = read_compare(data.item.compare.kind, dict(data.item.compare.options))
    cases: list[Case] = data.measured["cases"]
    student: SideResult = data.measured["student"]
    reference: SideResult = (data.expected or {})["reference"]
    if student.load is not None:
        return _load_failure(student)
    verdicts = []
    for n, case in enumerate(cases):
        expected = reference.call(0, n)
        if expected is None or not expected.ok or expected.array is None:
            return Judgement(0.0, ItemStatus.ERROR, [bilingual(
                "functions.reference_failed", case=case.name,
                detail=(expected.detail if expected else "no result")[:300])])
        verdicts.append(_judge(n, case, expected.array, student, spec.rtol, spec.atol,
                               spec.dtype))
    passed = sum(1 for problem in verdicts if problem is None)
    total = len(cases)
    fraction = passed / total if total else 0.0
    if spec.scoring == "all" and passed < total:
        fraction = 0.0
    feedback = [bilingual("functions.summary", passed=passed, total=total)]
    failures = [(case, problem) for case, problem in zip(cases, verdicts, strict=True)
                if problem is not None]
    for case, problem in failures[:SHOWN_FAILURES]:
        feedback.append(bilingual("functions.case_failed", case=case.name,
                                  inputs=case.describe(), problem=problem))
    if len(failures) > SHOWN_FAILURES:
        feedback.append(bilingual("functions.more_failed", count=len(failures) - SHOWN_FAILURES))
    if spec.scoring == "all" and failures and passed:
        feedback.append(bilingual("functions.all_or_nothing"))
    status = (ItemStatus.CORRECT if fraction >= 1 else
              ItemStatus.PARTIAL if fraction > 0 else ItemStatus.INCORRECT)
    details: dict[str, Any] = {
        "cases": [{"name": c.name, "inputs": c.describe(), "passed": v is None}
                  for c, v in zip(cases, verdicts, strict=True)],
        "passed": passed, "total": total,
    }
    return Judgement(fraction, status, feedback, details)


def _load_failure(student: SideResult) -> Judgement:
    code, detail = student.load or ("load", "")
    if code in REFUSED:
        text = bilingual(REFUSED[code], detail=detail[:300])
    else:
        text = bilingual("functions.load_failed", detail=detail[:300])
    return Judgement(0.0, ItemStatus.ERROR, [text])


def _judge(n: int, case: Case, expected: np.ndarray, student: SideResult, rtol: float,
           atol: float, dtype_rule: str) -> Text | None:
    """Why case ``n`` fails, or ``None`` when it passes."""
    first = student.call(0, n)
    if first is None:
        return _missing(student, n)
    problem = _output_problem(first, expected, rtol, atol, dtype_rule)
    if problem is not None:
        return problem
    second = student.call(1, n)
    if second is None:
        return _missing(student, n)
    if not second.ok or second.array is None or not _same_bytes(first.array, second.array):
        return bilingual("functions.not_deterministic")
    return None


def _missing(student: SideResult, n: int) -> Text:
    if student.ending is not None and student.stopped_in is not None and (
            student.stopped_in[1] == n):
        return student.ending
    if student.ending is not None:
        return bilingual("functions.not_reached", reason=student.ending)
    return bilingual("functions.no_result")


def _output_problem(call: CallRecord, expected: np.ndarray, rtol: float, atol: float,
                    dtype_rule: str) -> Text | None:
    if not call.ok or call.array is None:
        code = call.code or "error"
        if code in REFUSED:
            return bilingual(REFUSED[code], detail=call.detail[:300])
        if code in FAILED:
            return bilingual(FAILED[code], detail=call.detail[:300])
        return bilingual("functions.raised", detail=call.detail[:300])
    got = call.array
    if got.shape != expected.shape:
        return bilingual("functions.wrong_shape", expected=shape_text(expected.shape),
                         got=shape_text(got.shape))
    if dtype_rule == "same" and got.dtype != expected.dtype:
        return bilingual("functions.wrong_dtype", expected=str(expected.dtype), got=str(got.dtype))
    if dtype_rule == "kind" and _kind(got.dtype) != _kind(expected.dtype):
        return bilingual("functions.wrong_dtype", expected=str(expected.dtype), got=str(got.dtype))
    mine = got.astype(np.float64)
    theirs = expected.astype(np.float64)
    nan_mine, nan_theirs = np.isnan(mine), np.isnan(theirs)
    if (nan_mine & ~nan_theirs).any():
        return bilingual("functions.nan", count=int((nan_mine & ~nan_theirs).sum()))
    with np.errstate(all="ignore"):
        close = np.isclose(mine, theirs, rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        wrong = ~close
        diff = np.abs(np.where(wrong, mine - theirs, 0.0))
        worst = float(np.nanmax(diff)) if diff.size else 0.0
        return bilingual("functions.values_off", count=int(wrong.sum()), total=int(close.size),
                         worst=f"{worst:.3g}", rtol=f"{rtol:g}", atol=f"{atol:g}")
    return None


def _kind(dtype: np.dtype) -> str:
    return "f" if dtype.kind == "f" else "i" if dtype.kind in "iu" else dtype.kind


def _same_bytes(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is not None and b is not None and a.shape == b.shape and a.dtype == b.dtype
            and a.tobytes() == b.tobytes())
