"""Function items whose function returns several arrays (``returns = [...]``): the spec, the
records a room writes for them (read on the host, forged or not), and whole items in the real
sandbox.

The exercise is ``tests/fixtures/functions`` (``numpy_parts``: ``affine_backward(x, w, dout)``
returning ``dx, dw, db``). As in ``tests/test_function_answers.py`` the sandbox tests call the
function rooms directly (a function item does not depend on the kernel), and one builds the
reference as ``grader build-reference`` does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from grader.function_cases import read_compare
from grader.function_records import read_records
from grader.function_room import measure_functions
from grader.locate import locate_items
from grader.report import ItemResult
from grader.scoring import Evidence, score_items
from grader.spec import Exercise
from tests.conftest import FIXTURES
from tests.test_function_answers import (
    feedback,
    fixture_exercise,
    measure_and_score,
    notebook,
    with_options,
)

ROOT = FIXTURES / "functions"
ITEM = "affine_backward"
NAMES = ["dx", "dw", "db"]
#: What the grader says when a comparator raised (it must never come from a hostile record).
INTERNAL = "internal error of the grader"


@pytest.fixture(scope="module")
def pexercise() -> Exercise:
    return fixture_exercise("numpy_parts")[0]


@pytest.fixture(scope="module")
def psolution() -> nbformat.NotebookNode:
    return fixture_exercise("numpy_parts")[1]


def answer(body: str) -> str:
    """A definition of ``affine_backward`` with ``body`` (indented four spaces)."""
    return "def affine_backward(x, w, dout):\n" + "".join(
        f"    {line}\n" for line in body.splitlines())


def grade(exercise: Exercise, solution: nbformat.NotebookNode, body: str | None,
          sandbox: Any, workdir: Path) -> ItemResult:
    nb = solution if body is None else notebook(solution, replace={ITEM: answer(body)})
    return measure_and_score(exercise, nb, sandbox, workdir)[ITEM]


# --- the spec ---------------------------------------------------------------------------------


def test_returns_is_read_and_checked(pexercise: Exercise):
    spec = read_compare("function", dict(pexercise.item(ITEM).compare.options))
    assert spec.returns == NAMES
    plain = {"args": [{"shape": [2]}], "cases": 1}
    assert read_compare("function", plain).returns is None
    for returns, says in [([], "at least 1"), (["a"] * 2, "unique"), (["d-x"], "identifier"),
                          (["class"], "identifier"), (["x" * 65], "identifier"),
                          ([f"g{n}" for n in range(17)], "at most 16"), ("dx", "list"),
                          ([1], "string")]:
        with pytest.raises(ValueError, match=says):
            read_compare("function", {**plain, "returns": returns})


# --- what a room hands back (host) ------------------------------------------------------------


def array_record(array: np.ndarray) -> dict[str, Any]:
    return {"ok": True, "shape": list(array.shape), "dtype": array.dtype.str,
            "data": base64.b64encode(array.tobytes()).decode()}


def read_lines(tmp_path: Path, lines: list[Any], caps: list[list[int]],
               returns: list[str] | None = NAMES, limit: int = 1_000_000):
    path = tmp_path / "out.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line)
                              for line in lines) + "\n")
    return read_records(path, limit, passes=1, cases=len(caps), caps=caps, returns=returns)


def test_parts_records_are_read_each_part_held_to_its_cap(tmp_path: Path):
    a, b, c = np.ones((2, 3)), np.arange(4.0), np.float64(7.0)
    parts = [array_record(a), array_record(b), array_record(np.asarray(c))]
    side = read_lines(tmp_path, [
        {"case": 0, "pass": 0, "ok": True, "parts": parts},
        {"case": 1, "pass": 0, "ok": True, "parts": parts},  # b over its cap of 3
        {"case": 2, "pass": 0, "ok": True,
         "parts": [parts[0], {"ok": False, "code": "too_large", "detail": "9 values"},
                   {"ok": False, "code": "made_up", "detail": "x"}]},
    ], caps=[[6, 4, 1], [6, 3, 1], [6, 4, 1]])
    first = side.call(0, 0)
    assert first is not None and first.ok and first.parts is not None
    assert [p.array.tolist() for p in first.parts if p.array is not None] == [
        a.tolist(), b.tolist(), 7.0]
    capped = side.call(0, 1)
    assert capped is not None and capped.parts is not None
    assert [p.ok for p in capped.parts] == [True, False, True]
    assert capped.parts[1].code == "bad_output"
    failed = side.call(0, 2)
    assert failed is not None and failed.parts is not None
    assert [p.code for p in failed.parts] == [None, "too_large", "error"]
    assert side.bad_lines == 0


def test_structure_failures_are_read_and_checked_against_the_names(tmp_path: Path):
    side = read_lines(tmp_path, [
        {"case": 0, "pass": 0, "ok": False, "code": "parts_count", "count": 2},
        {"case": 1, "pass": 0, "ok": False, "code": "parts_keys", "missing": ["db"],
         "extra": ["dB", "0"]},
        {"case": 2, "pass": 0, "ok": False, "code": "parts_type", "detail": "ndarray"},
        {"case": 3, "pass": 0, "ok": False, "code": "error", "detail": "ValueError: no"},
    ], caps=[[8] * 3] * 4)
    calls = [side.call(0, n) for n in range(4)]
    assert [c.code if c else None for c in calls] == ["parts_count", "parts_keys", "parts_type",
                                                      "error"]
    assert calls[0] is not None and calls[0].count == 2
    assert calls[1] is not None and (calls[1].missing, calls[1].extra) == (("db",), ("dB", "0"))


FORGED = {
    "too few parts": {"ok": True, "parts": [{"ok": True, "shape": [0], "dtype": "<f8",
                                             "data": ""}]},
    "no parts": {"ok": True, "shape": [0], "dtype": "<f8", "data": ""},
    "a count that is right": {"ok": False, "code": "parts_count", "count": 3},
    "no count": {"ok": False, "code": "parts_count"},
    "keys that are all there": {"ok": False, "code": "parts_keys", "missing": [], "extra": []},
    "a missing key that is no name": {"ok": False, "code": "parts_keys", "missing": ["dz"]},
    "an extra key that is a name": {"ok": False, "code": "parts_keys", "extra": ["dx"]},
    "parts on a failure": {"ok": False, "code": "error", "parts": []},
    "a part too large to hold": {"ok": True, "parts": [
        {"ok": True, "shape": [10**9], "dtype": "<f8", "data": "AAAA"}] * 3},
    "a part of objects": {"ok": True, "parts": [
        {"ok": True, "shape": [1], "dtype": "|O", "data": "AAAAAAAAAAA="}] * 3},
}
SKIPPED = {
    "parts not a list": {"ok": True, "parts": {"dx": 1}},
    "seventeen parts": {"ok": True, "parts": [{"ok": False}] * 17},
    "a part with a field of its own": {"ok": True, "parts": [{"ok": True, "evil": 1}] * 3},
    "a negative count": {"ok": False, "code": "parts_count", "count": -1},
    "a key of a thousand characters": {"ok": False, "code": "parts_keys",
                                       "extra": ["k" * 1000]},
    "a count that is text": {"ok": False, "code": "parts_count", "count": "2"},
}


@pytest.mark.parametrize("name", sorted(FORGED))
def test_a_forged_record_is_an_output_that_cannot_be_read(tmp_path: Path, name: str):
    side = read_lines(tmp_path, [{"case": 0, "pass": 0, **FORGED[name]}], caps=[[8] * 3])
    call = side.call(0, 0)
    assert call is not None
    unreadable = [call] if call.parts is None else [p for p in call.parts if not p.ok]
    assert unreadable and all(c.code == "bad_output" for c in unreadable), call


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_a_malformed_record_is_skipped(tmp_path: Path, name: str):
    side = read_lines(tmp_path, [{"case": 0, "pass": 0, **SKIPPED[name]}], caps=[[8] * 3])
    assert side.call(0, 0) is None and side.bad_lines == 1


def test_a_parts_record_for_a_single_output_and_the_reverse(tmp_path: Path):
    parts = {"case": 0, "pass": 0, "ok": True, "parts": [array_record(np.ones(2))] * 3}
    single = {"case": 0, "pass": 0, **array_record(np.ones(2))}
    counted = {"case": 0, "pass": 0, "ok": False, "code": "parts_count", "count": 2}
    for line in (parts, counted):
        side = read_lines(tmp_path, [line], caps=[8], returns=None)  # type: ignore[list-item]
        call = side.call(0, 0)
        assert call is not None and not call.ok and call.code == "bad_output"
    side = read_lines(tmp_path, [single], caps=[[8] * 3])
    call = side.call(0, 0)
    assert call is not None and not call.ok and call.code == "bad_output"


# --- the function rooms (sandbox) -------------------------------------------------------------


RIGHT = {
    "a tuple": "return dout @ w.T, x.T @ dout, dout.sum(axis=0)",
    "a list": "return [dout @ w.T, x.T @ dout, dout.sum(axis=0)]",
    "a dict in another order": "return {'db': dout.sum(axis=0), 'dx': dout @ w.T, "
                               "'dw': x.T @ dout}",
}


@pytest.mark.sandbox
def test_the_solution_and_right_structures_earn_full_marks(pexercise, psolution, sandbox,
                                                           tmp_path: Path):
    result = grade(pexercise, psolution, None, sandbox, tmp_path / "solution")
    assert (result.score, result.max_score) == (3.0, 3.0), feedback(result)
    assert result.details["passed"] == result.details["total"] == 7
    for n, (name, body) in enumerate(RIGHT.items()):
        result = grade(pexercise, psolution, body, sandbox, tmp_path / str(n))
        assert result.score == 3.0, (name, feedback(result))


WRONG = {
    "two of three": ("return dout @ w.T, x.T @ dout",
                     "the function returned 2 values; it must return 3 arrays (dx, dw, db)"),
    "four of three": ("return dout @ w.T, x.T @ dout, dout.sum(axis=0), 0.0",
                      "the function returned 4 values"),
    "nested in pairs": ("return (dout @ w.T, x.T @ dout), (dout.sum(axis=0),)",
                        "the function returned 2 values"),
    "a nested tuple as a part": ("return dout @ w.T, (x.T @ dout,), dout.sum(axis=0)",
                                 "dw: the output is not an array of numbers (a tuple inside"),
    "one array": ("return dout @ w.T", "returned a value of type ndarray; it must return 3"),
    "a dict lacking a key": ("return {'dx': dout @ w.T, 'dw': x.T @ dout}",
                             "lacks db: its keys must be exactly dx, dw, db"),
    "a dict with an extra key": ("return {'dx': dout @ w.T, 'dw': x.T @ dout, "
                                 "'db': dout.sum(axis=0), 'dout': dout}",
                                 "has keys it should not have (dout)"),
    "a dict with a misspelt key": ("return {'dx': dout @ w.T, 'dW': x.T @ dout, "
                                   "'db': dout.sum(axis=0)}",
                                   "lacks dw and has keys it should not have (dW)"),
    "a dict keyed by position": ("return {0: dout @ w.T, 1: x.T @ dout, 2: dout.sum(axis=0)}",
                                 "lacks dx, dw, db and has keys it should not have (0, 1, 2)"),
    "db off": ("return dout @ w.T, x.T @ dout, dout.mean(axis=0)", "db: "),
    "dw transposed": ("return dout @ w.T, (x.T @ dout).T, dout.sum(axis=0)",
                      "dw: the output's shape is"),
    "two parts off": ("return dout @ w.T * 2, x.T @ dout, dout.sum(axis=0) + 1",
                      "also wrong: db"),
    "a huge part": ("return dout @ w.T, x.T @ dout, np.zeros(10**7)",
                    "db: the output is far larger than expected"),
    "a part that changes": ("CALLS.append(1)\nreturn dout @ w.T, x.T @ dout, "
                            "dout.sum(axis=0) * (1 + 1e-3 * (len(CALLS) > 7))", "different"),
}


@pytest.mark.sandbox
def test_a_wrong_result_earns_nothing_and_says_why(pexercise, psolution, sandbox,
                                                   tmp_path: Path):
    with_calls = notebook(psolution, before={ITEM: ["CALLS = []\n"]})
    for n, (name, (body, says)) in enumerate(WRONG.items()):
        result = grade(pexercise, with_calls, body, sandbox, tmp_path / str(n))
        text = feedback(result)
        assert result.score == 0.0, name
        assert says in text, (name, text)
        assert INTERNAL not in text and all(t.ja for t in result.feedback), name


@pytest.mark.sandbox
def test_one_part_off_by_values_is_named_in_both_languages(pexercise, psolution, sandbox,
                                                            tmp_path: Path):
    exercise = with_options(pexercise, ITEM, scoring="cases")
    result = grade(exercise, psolution, "return dout @ w.T, x.T @ dout, dout.sum(axis=0) + 0.5",
                   sandbox, tmp_path)
    assert result.score == 0.0 and result.details["passed"] == 0
    shown = [t for t in result.feedback if "db:" in t.en]
    assert len(shown) == 3  # the first three failing cases, each naming the part
    for text in shown:
        assert "values are off, by up to 0.5 " in text.en and "dx" not in text.en
        assert "db: " in text.ja and "個の値が" in text.ja


FORGER = """import gc
import io
import json
def affine_backward(x, w, dout):
    lines = [
        {"ok": True, "parts": [{"ok": True, "shape": [2], "dtype": "<f8", "data": "AAAA"}]},
        {"ok": True, "parts": [{"ok": True, "shape": [10 ** 12], "dtype": "<f8",
                                "data": "AAAAAAAAAAA="}] * 3},
        {"ok": False, "code": "parts_count", "count": 3},
        {"ok": False, "code": "parts_keys", "missing": [], "extra": ["dx"]},
        {"ok": True, "parts": [{"ok": True, "shape": [1], "dtype": "|O",
                                "data": "AAAAAAAAAAA="}] * 3},
    ]
    for handle in gc.get_objects():
        if isinstance(handle, io.TextIOWrapper) and handle.name == "out.jsonl":
            for case in range(64):
                for pass_ in range(2):
                    record = dict(lines[(case + pass_) % len(lines)], case=case)
                    record["pass"] = pass_
                    handle.write(json.dumps(record) + "\\n")
            handle.write('{"case": 0, "pass": 0, "ok": true, "parts": [[[[[[' + "[" * 10**5
                         + "\\n")
            handle.flush()
            json.dumps = lambda value, **kw: '{"nested": ' * 1000
    print('{"event": "case", "case": 10**9}')
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)
"""


@pytest.mark.sandbox
def test_records_forged_by_the_student_fail_their_cases_and_crash_nothing(
        pexercise, psolution, sandbox, tmp_path: Path):
    nb = notebook(psolution, replace={ITEM: FORGER})
    result = measure_and_score(pexercise, nb, sandbox, tmp_path)[ITEM]
    text = feedback(result)
    assert result.score == 0.0 and result.details["passed"] == 0, text
    assert "cannot read" in text and INTERNAL not in text, text
    forged = json.loads((tmp_path / ITEM / "student" / "out.jsonl").read_text()
                        .splitlines()[0])
    assert forged["ok"] is True and len(forged["parts"]) == 1  # the forgery did reach the file


# --- the reference ----------------------------------------------------------------------------


@pytest.mark.sandbox
def test_a_reference_of_the_wrong_structure_is_refused_saying_why(pexercise, psolution,
                                                                  sandbox, tmp_path: Path):
    for n, (body, says) in enumerate([
            ("return dout @ w.T, x.T @ dout", "returned 2 values, not the 3 of returns = "
                                              "[dx, dw, db]"),
            ("return {'dx': dout @ w.T, 'dw': x.T @ dout, 'grad_b': dout.sum(axis=0)}",
             "returned a dict without db and with keys grad_b, not the keys of"),
            ("return dout @ w.T", "returned a value of type ndarray, not a tuple")]):
        reference = notebook(psolution, replace={ITEM: answer(body)})
        located = locate_items(psolution, pexercise)
        functions = measure_functions(pexercise, psolution, located, sandbox,
                                      tmp_path / str(n), reference_nb=reference)
        evidence = Evidence(located=located, runner=None, sources={}, exports={},
                            measured=None, functions=functions)
        result = score_items(pexercise, evidence)[0]
        assert result.score == 0.0 and str(result.status) == "error"
        assert "reference function failed" in feedback(result) and says in feedback(result), (
            feedback(result))


@pytest.mark.sandbox
def test_build_reference_records_the_cases_and_refuses_a_wrong_solution(
        tmp_path: Path, psolution, sandbox):
    from grader.config import GraderConfig
    from grader.reference import expected_path
    from grader.reference_build import ReferenceBuildError, build_reference

    shutil.copytree(ROOT, tmp_path, dirs_exist_ok=True)
    config = GraderConfig.from_env({**os.environ,
                                    "GRADER_EXERCISES": str(tmp_path / "exercises"),
                                    "GRADER_REFERENCE": str(tmp_path / "reference")})
    exercise = config.exercise("numpy_parts")
    build_reference(exercise, config, sandbox)
    expected = json.loads(expected_path(exercise).read_text())["items"][ITEM]
    assert expected["status"] == "correct" and expected["passed"] == expected["total"] == 7
    assert [c["name"] for c in expected["cases"]][:2] == ["batch of one", "random 1"]
    wrong = notebook(psolution, replace={ITEM: answer("return dout @ w.T, x.T @ dout")})
    nbformat.write(wrong, tmp_path / "reference" / "numpy_parts" / "solution.ipynb")
    with pytest.raises(ReferenceBuildError, match=r"returned 2 values, not the 3 of returns"):
        build_reference(exercise, config, sandbox)
