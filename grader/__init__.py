"""The grading library: run a notebook in a sandbox, read its answers, score them.

The public API, used by the CLI and the web service::

    config = GraderConfig.from_env()
    exercise = config.exercise("chap06_cnn")
    report = grade_notebook(data, exercise, config, get_sandbox(config.sandbox))
    report.to_dict()

Nothing here imports web, database or queue code.
"""

from grader.comparators.accuracy import public_accuracy
from grader.config import GraderConfig
from grader.limits import Limits
from grader.pipeline import Progress, grade_notebook
from grader.report import GradeReport, ItemResult, ItemStatus, RunStatus
from grader.sandbox import get_sandbox
from grader.spec import Exercise, SpecError, list_exercises, load_exercise

__all__ = [
    "Exercise",
    "GradeReport",
    "GraderConfig",
    "ItemResult",
    "ItemStatus",
    "Limits",
    "Progress",
    "RunStatus",
    "SpecError",
    "get_sandbox",
    "grade_notebook",
    "list_exercises",
    "load_exercise",
    "public_accuracy",
]
