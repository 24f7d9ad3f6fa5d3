"""The grading library: run a notebook in a sandbox, read its answers, score them.

The public API, used by the CLI and the web service::

    config = GraderConfig.from_env()
    exercise = config.exercise("chap06_cnn")
    report = grade_notebook(data, exercise, config, get_sandbox(config.sandbox))
    report.to_dict()

Nothing here imports web, database or queue code.

The public names are those of ``__all__`` here, and of two subpackages with an API of their
own: ``grader.sandbox`` (the backends, and the host's CPU slots and GPUs they run on) and
``grader.similarity`` (students' code and models compared pair by pair). The service imports
nothing else of ``grader`` (``tests/test_imports.py``): every other module is the library's own,
free to change. Importing it stays light: the pipeline imports all of this but the warm pool
anyway, and nothing here imports TensorFlow (``python -X importtime -c "import grader"``).
"""

from grader.catalogs import LANGUAGES, Catalog, compile_catalogs
from grader.comparators.accuracy import public_accuracy
from grader.config import PROJECT_ROOT, GraderConfig
from grader.data import evaluation_labels
from grader.fingerprints import ModelFingerprint
from grader.kit import Kit
from grader.limits import Limits
from grader.messages import N_
from grader.notebook import LIMIT_KEYS, NotebookError, ReadLimits, read_notebook
from grader.pipeline import Progress, grade_notebook
from grader.report import GradeReport, ItemResult, ItemStatus, Outcome
from grader.sandbox import get_sandbox
from grader.spec import Exercise, GpuNeed, SpecError, Text, list_exercises, load_exercise
from grader.warm_pool import PoolSettings, WarmPool

__all__ = [
    "LANGUAGES",
    "LIMIT_KEYS",
    "N_",
    "PROJECT_ROOT",
    "Catalog",
    "Exercise",
    "GpuNeed",
    "GradeReport",
    "GraderConfig",
    "ItemResult",
    "ItemStatus",
    "Kit",
    "Limits",
    "ModelFingerprint",
    "NotebookError",
    "Outcome",
    "PoolSettings",
    "Progress",
    "ReadLimits",
    "SpecError",
    "Text",
    "WarmPool",
    "compile_catalogs",
    "evaluation_labels",
    "get_sandbox",
    "grade_notebook",
    "list_exercises",
    "load_exercise",
    "public_accuracy",
    "read_notebook",
]
