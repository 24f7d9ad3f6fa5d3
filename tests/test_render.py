"""The report as the CLI prints it: every label comes from the grader's catalogs, in the
language asked for."""

from __future__ import annotations

from grader.render import render_text
from grader.report import GradeReport, Outcome


def _report() -> GradeReport:
    return GradeReport(exercise="chap06_cnn", outcome=Outcome.GRADED, items=[], max_score=100,
                       reason=None, measured_accuracy=0.9791, claimed_accuracy=0.98, notes=[],
                       timings={"cells": 12.5}, diagnostics={}, executed_notebook=None)


def test_the_accuracy_and_time_lines_are_in_the_language_asked_for():
    ja, en = render_text(_report(), "ja"), render_text(_report(), "en")
    assert "テスト精度 (測定値 / 表示値): 0.9791 / 0.9800" in ja
    assert "時間: cells 12.5s" in ja
    assert "test accuracy (measured / printed): 0.9791 / 0.9800" in en
    assert "time: cells 12.5s" in en
    assert "テスト" not in en and "test accuracy" not in ja
