"""``flask --app service worker`` whose grader is a stub answering at once with the uploaded
notebook as the executed one (``python -m tests.service.echo_worker --app service worker``):
the real loop, claim, lease and fenced store, the notebook read from the blob store at the start
and its HTML rendered and put into the blob store at the end, without a sandbox. What the web
then shows was read by this worker, from wherever the store keeps it."""

from __future__ import annotations

from typing import Any

from flask.cli import main

from grader import Outcome
from grader.report import GradeReport
from service.queue import grading


def _executed_as_uploaded(data: bytes, exercise: Any, config: Any, sandbox: Any,
                          **kw: Any) -> GradeReport:
    return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score,
                       executed_notebook=data.decode("utf-8"))


if __name__ == "__main__":
    grading.grade_notebook = _executed_as_uploaded
    main()
