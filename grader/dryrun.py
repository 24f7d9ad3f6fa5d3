"""``grader dry-run``: the reference earns full marks, the blank template earns none.

A course's CI runs this after every change to an exercise, its reference or the grader."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grader.config import GraderConfig
from grader.notebook_run import ProgressCallback
from grader.pipeline import grade_notebook
from grader.reference import solution_path
from grader.report import GradeReport, Outcome
from grader.sandbox.base import Sandbox
from grader.spec import Exercise


@dataclass(frozen=True)
class DryRunCheck:
    exercise: str
    notebook: str  # "solution" or "template"
    passed: bool
    score: float
    max_score: float
    #: The run's :class:`~grader.report.Outcome`, or ``not run``.
    outcome: str
    problems: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "problems": list(self.problems)}


def failed_check(exercise_id: str, problem: str) -> DryRunCheck:
    """An exercise that could not be dry-run at all (its spec, its reference missing)."""
    return DryRunCheck(exercise_id, "exercise", False, 0.0, 0.0, "not run", (problem,), 0.0)


def _problems_solution(report: GradeReport) -> list[str]:
    problems = []
    if report.outcome is not Outcome.GRADED:
        problems.append(f"outcome {report.outcome}: {report.reason.en if report.reason else ''}")
    for item in report.items:
        if item.score < item.max_score:
            feedback = " / ".join(t.en for t in item.feedback)
            problems.append(f"{item.id}: {item.score:g}/{item.max_score:g} ({item.status}) "
                            f"{feedback}")
    return problems


def _problems_template(report: GradeReport) -> list[str]:
    problems = []
    if report.outcome is not Outcome.GRADED:
        problems.append(f"outcome {report.outcome}: {report.reason.en if report.reason else ''}")
    for item in report.items:
        if item.score > 0:
            problems.append(f"{item.id}: the blank template earns {item.score:g} points")
    return problems


def dry_run_exercise(
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    *,
    log: Callable[[str], None] = print,
    progress: Callable[[str], ProgressCallback | None] | None = None,
) -> list[DryRunCheck]:
    """Grade the exercise's solution and blank template, one check each. ``log`` gets a line
    per step; ``progress``, given a label (``<exercise>/solution``), returns the callback that
    follows that run (the CLI prints cells as they run; a library caller may want none)."""
    checks = []
    for name, path, judge in (
        ("solution", solution_path(exercise), _problems_solution),
        ("template", exercise.template, _problems_template),
    ):
        log(f"{exercise.id}: grading the {name} ({path.name})")
        started = time.monotonic()
        report = grade_notebook(path.read_bytes(), exercise, config, sandbox,
                                on_progress=progress(f"{exercise.id}/{name}") if progress
                                else None)
        problems = judge(report)
        check = DryRunCheck(exercise.id, name, not problems, report.score, report.max_score,
                            str(report.outcome), tuple(problems), time.monotonic() - started)
        verdict = "ok" if check.passed else "FAILED"
        log(f"{exercise.id}: {name} {report.score:g}/{report.max_score:g} "
            f"[{report.outcome}] {verdict} in {check.seconds:.0f}s")
        for problem in problems:
            log(f"    {problem}")
        checks.append(check)
    return checks

