"""Reading a submitted notebook: bytes in, a validated nbformat v4 notebook or a reason out."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import nbformat
from nbformat.validator import normalize

from grader.messages import bilingual
from grader.spec import Text

#: Largest notebook accepted, before outputs are stripped (uploads are checked earlier too).
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class NotebookError(Exception):
    """The file is not a notebook the grader can run; ``text`` is one line for the user in both
    languages (from the ``grader`` catalogs: ``notebook.*``)."""

    text: Text

    @property
    def reason(self) -> str:
        return self.text.en

    @property
    def reason_ja(self) -> str:
        return self.text.ja

    def __str__(self) -> str:
        return self.reason


def read_notebook(data: bytes) -> nbformat.NotebookNode:
    """Parse and validate; upgrade older v4 minors (no cell ids) and v3 to v4.5."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        size = len(data) // 1024 // 1024
        raise NotebookError(bilingual("notebook.too_large", size=size, limit=50))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotebookError(bilingual("notebook.not_utf8")) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(bilingual("notebook.not_json", line=exc.lineno)) from None
    if not isinstance(raw, dict) or ("cells" not in raw and "worksheets" not in raw):
        raise NotebookError(bilingual("notebook.no_cells"))
    if raw.get("nbformat") not in (3, 4):
        raise NotebookError(bilingual("notebook.unsupported_format",
                                      format=repr(raw.get("nbformat"))))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
            if nb.nbformat_minor < 5:
                nb.nbformat_minor = 5
            _, nb = normalize(nb)
            nb = nbformat.from_dict(nb)
            nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise NotebookError(bilingual("notebook.invalid", detail=exc.message)) from None
    except Exception as exc:  # nbformat raises assorted errors on odd input
        raise NotebookError(bilingual("notebook.unreadable", detail=str(exc))) from None
    return nb


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without outputs: what runs in the sandbox (old outputs prove nothing)."""
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in copy.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return copy
