"""The ``function`` comparator: a function's outputs against the reference function's, case by
case, on the inputs the grader drew for this run.

A case passes when the student's first call gave an output of the reference's shape, of an
acceptable dtype (``dtype``: ``same``, ``kind`` or ``any``), with values within ``rtol`` and
``atol`` (NaN where the reference has NaN, nowhere else), and the second call (the second
pass, in the reverse order) gave the same bytes. Scoring (``scoring``): ``all`` (default) gives
the points only when every case passes, ``cases`` in proportion. The feedback names the
failing cases (their name, the shapes and dtypes of their inputs, never the values) and how
each failed.

A function of several arrays (``returns``): each call must give exactly those parts (a tuple or
a list of that many, or a dict with exactly those keys: the room reads the structure, the
records say what came); each part is judged as a single output is, and a case passes when
every part passes. The feedback names the first part that failed, and the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grader.comparators.base import CompareInput, Judgement, register, shape_text
from grader.function_cases import Case, FunctionCompare, read_compare
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


#: How a result of several arrays came in the wrong structure, by the room's code.
STRUCTURE = {"parts_count": N_("functions.parts_count"), "parts_type": N_("functions.parts_type")}


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
        expected = reference_outputs(reference.call(0, n), spec.returns)
        if isinstance(expected, str):
            return Judgement(0.0, ItemStatus.ERROR, [bilingual(
                "functions.reference_failed", case=case.name, detail=expected[:300])])
        verdicts.append(_judge(n, expected, student, spec))
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


def reference_outputs(record: CallRecord | None, returns: list[str] | None
                      ) -> list[np.ndarray] | str:
    """The reference's arrays for a case (one, or one per name of ``returns``), or why there
    are none (in English: this is for the course's staff, and refuses a reference)."""
    if record is None:
        return "no result"
    if returns is None:
        if record.ok and record.array is not None:
            return [record.array]
        return record.detail or record.code or "no result"
    wanted = f"returns = [{', '.join(returns)}]"
    if record.code == "parts_count":
        return f"returned {record.count} values, not the {len(returns)} of {wanted}"
    if record.code == "parts_keys":
        how = ([f"without {', '.join(record.missing)}"] if record.missing else []) + (
            [f"with keys {', '.join(record.extra)}"] if record.extra else [])
        return f"returned a dict {' and '.join(how)}, not the keys of {wanted}"
    if record.code == "parts_type":
        return (f"returned a value of type {record.detail}, not a tuple, a list or a dict of "
                f"{wanted}")
    if not record.ok or record.parts is None:
        return record.detail or record.code or "no result"
    arrays = []
    for name, part in zip(returns, record.parts, strict=True):
        if not part.ok or part.array is None:
            return f"{name}: {part.detail or part.code or 'no array'}"
        arrays.append(part.array)
    return arrays


def _judge(n: int, expected: list[np.ndarray], student: SideResult, spec: FunctionCompare
           ) -> Text | None:
    """Why case ``n`` fails, or ``None`` when it passes."""
    first = student.call(0, n)
    if first is None:
        return _missing(student, n)
    if spec.returns is None:
        problem = _output_problem(first, expected[0], spec.rtol, spec.atol, spec.dtype)
    else:
        problem = _parts_problem(first, expected, spec)
    if problem is not None:
        return problem
    second = student.call(1, n)
    if second is None:
        return _missing(student, n)
    if not _same_outputs(first, second):
        return bilingual("functions.not_deterministic")
    return None


def _parts_problem(call: CallRecord, expected: list[np.ndarray], spec: FunctionCompare
                   ) -> Text | None:
    """Why a call of a function of several arrays fails: its structure, or its parts (the
    first that fails named with its problem, the others by name)."""
    names = spec.returns or []
    listed = ", ".join(names)
    if call.code in STRUCTURE:
        return bilingual(STRUCTURE[call.code], count=call.count, detail=call.detail[:200],
                         expected=len(names), names=listed)
    if call.code == "parts_keys":
        missing, extra = ", ".join(call.missing), ", ".join(call.extra)
        key = (N_("functions.parts_keys") if missing and extra else
               N_("functions.parts_missing") if missing else N_("functions.parts_extra"))
        return bilingual(key, missing=missing, extra=extra[:600], names=listed)
    if not call.ok or call.parts is None:
        return _output_problem(call, expected[0], spec.rtol, spec.atol, spec.dtype)
    failed = []
    for name, part, theirs in zip(names, call.parts, expected, strict=True):
        problem = _output_problem(part, theirs, spec.rtol, spec.atol, spec.dtype)
        if problem is not None:
            failed.append((name, problem))
    if not failed:
        return None
    name, problem = failed[0]
    if len(failed) == 1:
        return bilingual("functions.part_failed", part=name, problem=problem)
    return bilingual("functions.part_failed_more", part=name, problem=problem,
                     others=", ".join(other for other, _ in failed[1:]))


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


def _same_outputs(first: CallRecord, second: CallRecord) -> bool:
    """Both calls gave the same arrays, byte for byte (every part of a result of several)."""
    if not second.ok:
        return False
    if first.parts is None or second.parts is None:
        return first.parts is None and second.parts is None and _same_bytes(first.array,
                                                                             second.array)
    return len(first.parts) == len(second.parts) and all(
        a.ok and b.ok and _same_bytes(a.array, b.array)
        for a, b in zip(first.parts, second.parts, strict=True))


def _same_bytes(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is not None and b is not None and a.shape == b.shape and a.dtype == b.dtype
            and a.tobytes() == b.tobytes())
