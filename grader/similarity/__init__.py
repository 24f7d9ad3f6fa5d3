"""Which students' work is too alike: code compared pair by pair, and trained models compared
by how they err (issue 20; docs/similarity.md).

- :mod:`~grader.similarity.text`: a notebook's code cells as one text, each cell's place kept.
- :mod:`~grader.similarity.kgrams`: that text as k-grams, names normalised (copydetect).
- :mod:`~grader.similarity.code`: every pair scored; template code dropped, expected code
  (the solution's, the class's common lines) counted but never decisive.
- :mod:`~grader.similarity.spans`: the matching characters of a pair, for the review page.
- :mod:`~grader.similarity.models`: every pair of models, by their shared errors.

Nothing here leaves the machine, and nothing reads a database: the caller hands in the code and
the fingerprints, and gets pairs back."""

from grader.fingerprints import (
    AGREEMENT_FLAG,
    COMMON_MODEL,
    MIN_ACCURACY,
    MIN_UNION,
    error_agreement,
)
from grader.similarity.code import (
    CLASS_SHARE,
    CLASS_SHARE_MIN,
    CODE_FLAG,
    CODE_IDENTICAL,
    DISTINCTIVE_ALONE,
    DISTINCTIVE_FLAG,
    IDENTICAL_DISTINCTIVE,
    IDENTICAL_MIN_KGRAMS,
    CodePair,
    CodeSubmission,
    compare_code,
)
from grader.similarity.models import ModelPair, compare_models
from grader.similarity.spans import matching_spans
from grader.similarity.text import MAX_CODE_CHARS, CellSpan, CodeText, notebook_code

__all__ = [
    "AGREEMENT_FLAG",
    "CLASS_SHARE",
    "CLASS_SHARE_MIN",
    "CODE_FLAG",
    "CODE_IDENTICAL",
    "COMMON_MODEL",
    "DISTINCTIVE_ALONE",
    "DISTINCTIVE_FLAG",
    "IDENTICAL_DISTINCTIVE",
    "IDENTICAL_MIN_KGRAMS",
    "MAX_CODE_CHARS",
    "MIN_ACCURACY",
    "MIN_UNION",
    "CellSpan",
    "CodePair",
    "CodeSubmission",
    "CodeText",
    "ModelPair",
    "compare_code",
    "compare_models",
    "error_agreement",
    "matching_spans",
    "notebook_code",
]
