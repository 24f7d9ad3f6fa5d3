"""``flask --app service worker`` whose grader is a stub that answers at once (``python -m
tests.service.stub_worker --app service worker``): the real loop, wake-up, claim, lease and
fenced store, for tests about the queue rather than the sandbox."""

from __future__ import annotations

from typing import Any

from flask.cli import main

from grader import Outcome
from grader.report import GradeReport
from service.queue import grading


def _graded_at_once(data: bytes, exercise: Any, config: Any, sandbox: Any,
                    **kw: Any) -> GradeReport:
    return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score)


if __name__ == "__main__":
    grading.grade_notebook = _graded_at_once
    main()
