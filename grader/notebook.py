"""Reading a submitted notebook: bytes in, a validated nbformat v4 notebook or a reason out.

A notebook is hostile input, and nbformat's validation is not linear in anything the uploader
pays for: a notebook that fails the schema is re-checked with ``jsonschema`` for a readable
message, about a millisecond per cell, so 60,000 cells with one bad cell at the end held a
thread for minutes; and ``[`` nested 100,000 deep made ``json.loads`` raise ``RecursionError``.
So reading is bounded in steps, each cheap enough to run before the next is paid for
(:class:`ReadLimits` holds the bounds):

1. the byte count;
2. the JSON nesting depth and the number of values, by a linear scan of the bytes
   (:func:`scan_json`, numpy) before ``json.loads`` recurses or allocates millions of objects;
3. after parsing: the cell count, each cell's bytes and all outputs' bytes, measured by
   serialising one cell at a time (C speed, linear);
4. the schema, with nbformat's compiled (``fastjsonschema``) validator, the top level first and
   then cell by cell under a deadline; only the first failing cell is re-checked with
   ``jsonschema``, for its message, so a bad cell costs one cell's slow check, not the whole
   notebook's; and a large one is narrowed to its first bad output first (one cell can hold
   tens of thousands of outputs: :func:`_narrowed`).

The service passes tighter bounds (``service/settings.py``); the grader reads with the defaults,
which are at least the service's, so a notebook the service accepted is read again unchanged.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

import nbformat
import numpy as np
from nbformat.corpus.words import generate_corpus_id
from nbformat.validator import get_validator

from grader.messages import N_, bilingual
from grader.spec import Text

MiB = 1024 * 1024

#: Largest notebook accepted, before outputs are stripped (uploads are checked earlier too).
MAX_NOTEBOOK_BYTES = 50 * MiB

_QUOTE, _COMMA = ord('"'), ord(",")
_OPEN_ARRAY, _CLOSE_ARRAY, _OPEN_OBJECT, _CLOSE_OBJECT = (ord(c) for c in "[]{}")
_SCAN_CHUNK = 1 * MiB
#: ``bytes.translate`` deletes these: every byte but the JSON syntax :func:`scan_json` reads.
_NOT_SYNTAX = bytes(code for code in range(256) if code not in b'"[]{},')
#: Longest schema message shown to the student (jsonschema quotes the offending value whole).
_DETAIL_CHARS = 300
_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
#: A JSON escape of half a surrogate pair (as ``grader/kernel/channel.py`` finds them, escaped
#: backslashes masked first): it decodes into a string no UTF-8 writer takes, so the notebook
#: parsed and was checked, and writing it for the runner raised ``UnicodeEncodeError``: the
#: grading ended ``sandbox_error``, which the service ran again.
_LONE_SURROGATE = re.compile(_HIGH + rb"(?!" + _LOW + rb")|(?<!" + _HIGH + rb")" + _LOW)


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on the work of reading one notebook; every one is checked before the step it
    protects. The defaults are the grader's; the service passes its own, never looser."""

    #: Bytes of the file.
    max_bytes: int = MAX_NOTEBOOK_BYTES
    #: Nesting of JSON arrays and objects; a notebook needs about 8, plus what metadata and
    #: ``application/json`` outputs hold.
    max_depth: int = 100
    #: JSON values (strings, numbers, arrays, objects...), bounded before parsing: parsing
    #: costs about a second per few million, whatever their size. A source line is one value;
    #: a course notebook has some thousands.
    max_values: int = 1_000_000
    #: Cells (a course notebook has a few hundred at most; each is run, located and checked).
    max_cells: int = 2000
    #: Bytes of one cell as JSON, outputs included.
    max_cell_bytes: int = 16 * MiB
    #: Bytes of every cell's outputs together (they are stripped before grading: only storage
    #: and the schema check pay for them).
    max_output_bytes: int = 40 * MiB
    #: Seconds of this thread's CPU the checks may take (``time.thread_time``: the work done on
    #: the notebook, not the time spent waiting for a busy machine's cores, so an honest
    #: notebook is not refused because other processes are busy); checked between cells.
    validate_seconds: float = 30.0


DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True)
class NotebookError(Exception):
    """The file is not a notebook the grader can run; ``text`` is one line for the user in both
    languages (from the ``grader`` catalogs: ``notebook.*``)."""

    text: Text
    #: The catalog key (``notebook.too_many_cells``...): which rule, for a program to act on.
    key: str = ""

    @property
    def reason(self) -> str:
        return self.text.en

    @property
    def reason_ja(self) -> str:
        return self.text.ja

    def __str__(self) -> str:
        return self.reason


#: The keys of :class:`NotebookError` that say a bound of :class:`ReadLimits` was passed (the
#: notebook may be fine, only too big), as opposed to a file that is not a valid notebook.
LIMIT_KEYS = frozenset({"notebook.too_large", "notebook.too_many_values",
                        "notebook.too_many_cells", "notebook.cell_too_large",
                        "notebook.outputs_too_large", "notebook.too_slow"})


def _refusal(key: str, **params: object) -> NotebookError:
    return NotebookError(bilingual(key, **params), key)


def read_notebook(data: bytes, limits: ReadLimits = DEFAULT_LIMITS) -> nbformat.NotebookNode:
    """Parse and validate within ``limits``; upgrade older v4 minors (no cell ids) and v3 to
    v4.5. Raises :class:`NotebookError` with the first bound or rule the file breaks."""
    deadline = time.thread_time() + limits.validate_seconds
    if len(data) > limits.max_bytes:
        raise _refusal(N_("notebook.too_large"), size=_mib(len(data)),
                       limit=_mib(limits.max_bytes))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refusal(N_("notebook.not_utf8")) from None
    if b"\\u" in data and _LONE_SURROGATE.search(data.replace(b"\\\\", b"__")):
        raise _refusal(N_("notebook.not_utf8"))
    shape = scan_json(data, limits.max_depth, limits.max_values)
    if shape.depth > limits.max_depth:
        raise _refusal(N_("notebook.too_deep"), limit=limits.max_depth)
    if shape.values > limits.max_values:
        raise _refusal(N_("notebook.too_many_values"), limit=limits.max_values)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refusal(N_("notebook.not_json"), line=exc.lineno) from None
    except RecursionError:  # the scan above makes this unreachable; kept as the last guard
        raise _refusal(N_("notebook.too_deep"), limit=limits.max_depth) from None
    if not isinstance(raw, dict) or ("cells" not in raw and "worksheets" not in raw):
        raise _refusal(N_("notebook.no_cells"))
    if raw.get("nbformat") not in (3, 4):
        raise _refusal(N_("notebook.unsupported_format"),
                       format=repr(raw.get("nbformat"))[:40])
    _check_structure(_raw_cells(raw), limits, deadline)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if raw["nbformat"] == 3:
                _check_v3_schema(raw)
            nb = nbformat.convert(_to_notebook(raw), 4)
            if nb.nbformat_minor < 5:
                nb.nbformat_minor = 5
            _repair_cell_ids(nb)
            _check_schema(nb, deadline, limits)
    except NotebookError:
        raise
    except Exception as exc:  # nbformat raises assorted errors on odd input
        raise _refusal(N_("notebook.unreadable"), detail=_one_line(str(exc))) from None
    return nb


@dataclass(frozen=True)
class JsonShape:
    """What a linear scan of JSON bytes tells without parsing them."""

    #: Deepest nesting of arrays and objects.
    depth: int
    #: An upper bound on the number of values (each comma, array and object counts one).
    values: int


def scan_json(data: bytes, max_depth: int | None = None, max_values: int | None = None
              ) -> JsonShape:
    """The nesting depth and (a bound on) the value count of JSON ``data``, in linear time
    and without recursion, so that neither a deep nor a huge-but-flat document reaches
    ``json.loads`` (which recurses per level, and spends seconds on millions of tiny values).
    The scan stops early once ``max_depth`` or ``max_values`` is passed.

    Escaped backslashes, then escaped quotes, are cut out (``bytes.replace`` scans left to
    right, as a JSON reader does), so every quote left opens or closes a string; every byte
    but quotes, brackets and commas is dropped (``bytes.translate``, C speed); then numpy, a
    chunk at a time, marks what lies outside strings, sums the brackets (+1 opening, -1
    closing) and counts the commas. Malformed JSON may be mis-measured; it is refused either
    way, by this or by the parser."""
    plain = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_SYNTAX)
    codes = np.frombuffer(plain, dtype=np.uint8)
    quotes, depth, deepest, values = 0, 0, 0, 1
    for start in range(0, len(codes), _SCAN_CHUNK):
        chunk = codes[start:start + _SCAN_CHUNK]
        quoted = np.cumsum(chunk == _QUOTE, dtype=np.int64) + quotes
        outside = (quoted & 1) == 0
        opening = outside & ((chunk == _OPEN_ARRAY) | (chunk == _OPEN_OBJECT))
        closing = outside & ((chunk == _CLOSE_ARRAY) | (chunk == _CLOSE_OBJECT))
        levels = np.cumsum(opening.astype(np.int64) - closing, dtype=np.int64) + depth
        deepest = max(deepest, int(levels.max()))
        commas = outside & (chunk == _COMMA)
        values += int(np.count_nonzero(opening)) + int(np.count_nonzero(commas))
        quotes, depth = int(quoted[-1]), int(levels[-1])
        if (max_depth is not None and deepest > max_depth) or (
                max_values is not None and values > max_values):
            break
    return JsonShape(depth=deepest, values=values)


def _raw_cells(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells of a parsed notebook (v3: of every worksheet), checked to be objects."""
    if raw["nbformat"] == 3:
        sheets = raw.get("worksheets")
        if not isinstance(sheets, list) or not all(
                isinstance(sheet, dict) and isinstance(sheet.get("cells"), list)
                for sheet in sheets):
            raise _refusal(N_("notebook.bad_cells"))
        cells = [cell for sheet in sheets for cell in sheet["cells"]]
    elif isinstance(raw.get("cells"), list):
        cells = raw["cells"]
    else:
        raise _refusal(N_("notebook.bad_cells"))
    if not all(isinstance(cell, dict) for cell in cells):
        raise _refusal(N_("notebook.bad_cells"))
    return cells


def _check_structure(cells: list[dict[str, Any]], limits: ReadLimits, deadline: float) -> None:
    """Cell count, each cell's size and the outputs' size, before any schema check: each cell
    is serialised once (C speed), so this is linear in the file."""
    if len(cells) > limits.max_cells:
        raise _refusal(N_("notebook.too_many_cells"), count=len(cells),
                       limit=limits.max_cells)
    outputs_total = 0
    for number, cell in enumerate(cells, 1):
        _check_deadline(deadline, limits)
        outputs = len(_json_bytes(cell["outputs"])) if "outputs" in cell else 0
        rest = len(_json_bytes({key: value for key, value in cell.items() if key != "outputs"}))
        if outputs + rest > limits.max_cell_bytes:
            raise _refusal(N_("notebook.cell_too_large"), cell=number,
                           size=_mib(outputs + rest),
                           limit=_mib(limits.max_cell_bytes))
        outputs_total += outputs
        if outputs_total > limits.max_output_bytes:
            raise _refusal(N_("notebook.outputs_too_large"),
                           limit=_mib(limits.max_output_bytes))


def _to_notebook(raw: dict[str, Any]) -> nbformat.NotebookNode:
    """The in-memory notebook, as ``nbformat.reads`` makes it before validating the whole:
    nodes, sources and outputs stored as lists of lines joined, transient keys dropped."""
    try:
        return nbformat.versions[raw["nbformat"]].to_notebook_json(
            raw, minor=raw.get("nbformat_minor"))
    except AttributeError as exc:  # a cell without "metadata"...: nbformat's wording
        raise _refusal(N_("notebook.invalid"), detail=_one_line(
            f"The notebook is invalid and is missing an expected key: {exc}")) from None


def _repair_cell_ids(nb: nbformat.NotebookNode) -> None:
    """What ``nbformat.validator.normalize`` does for v4.5, in place: a missing or repeated
    cell id gets a new one. (``normalize`` deep-copies the notebook first, a second or more
    of pure Python on a big one.) An id that is not a string is left for the schema."""
    seen: set[str] = set()
    for cell in nb.cells:
        if "id" not in cell or (isinstance(cell["id"], str) and cell["id"] in seen):
            cell["id"] = generate_corpus_id()
        if isinstance(cell["id"], str):
            seen.add(cell["id"])


def _check_schema(nb: nbformat.NotebookNode, deadline: float, limits: ReadLimits) -> None:
    """nbformat's schema with its compiled validator: the notebook without cells, then each
    cell alone (the schema has no rule across cells; duplicate ids were repaired by
    :func:`_repair_cell_ids`), the deadline checked between cells. Only a failing part is validated
    again by ``nbformat.validate`` (jsonschema, slow) for a readable message."""
    fast = get_validator(nb.nbformat, nb.nbformat_minor, name="fastjsonschema")
    if fast is None:
        raise _refusal(N_("notebook.unsupported_format"),
                       format=f"{nb.nbformat}.{nb.nbformat_minor}")
    top = {**nb, "cells": []}
    if errors := fast.iter_errors(top):
        raise _refusal(N_("notebook.invalid"), detail=_schema_message(top, errors))
    for number, cell in enumerate(nb.cells, 1):
        _check_deadline(deadline, limits)
        alone = {**top, "cells": [cell]}
        if errors := fast.iter_errors(alone):
            raise _refusal(N_("notebook.invalid_cell"), cell=number,
                           detail=_schema_message(_narrowed(alone, fast), errors))


def _check_v3_schema(raw: dict[str, Any]) -> None:
    """A v3 notebook against its schema, compiled validator only: nbformat's conversion
    re-checks an invalid one with jsonschema, slowly, just to log it."""
    fast = get_validator(3, 0, name="fastjsonschema")
    errors = fast.iter_errors(raw) if fast is not None else []
    if errors:
        raise _refusal(N_("notebook.invalid"), detail=_one_line(errors[0].message))


#: Largest part (the notebook without its cells, or one cell) whose message is jsonschema's:
#: it validates about 2,000 values a second (a cell of 45,000 outputs, 2.6 MB within the
#: upload's limits, took 26 s of the upload's request with one bad field), so a larger part
#: gets the compiled validator's message (the path, no value).
MAX_SLOW_MESSAGE_BYTES = 64 * 1024


def _narrowed(part: dict[str, Any], fast: Any) -> dict[str, Any]:
    """``part`` (one invalid cell) with only what makes it invalid, when that is small: the
    cell without its outputs, or with only its first invalid output (found by halving, with
    the compiled validator), so that jsonschema's message costs one output, not thousands."""
    cell = part["cells"][0]
    outputs = list(cell.get("outputs") or [])
    if len(_json_bytes(part)) <= MAX_SLOW_MESSAGE_BYTES or not outputs:
        return part

    def with_outputs(chosen: list[Any]) -> dict[str, Any]:
        return {**part, "cells": [{**cell, "outputs": chosen}]}

    if fast.iter_errors(with_outputs([])):
        return with_outputs([])
    low, high = 0, len(outputs)  # the first invalid output is in outputs[low:high]
    while high - low > 1:
        middle = (low + high) // 2
        if fast.iter_errors(with_outputs(outputs[low:middle])):
            high = middle
        else:
            low = middle
    return with_outputs(outputs[low:high])


def _schema_message(part: dict[str, Any], errors: Any = ()) -> str:
    """nbformat's (jsonschema's) message for a part known to be invalid, or, for a part over
    :data:`MAX_SLOW_MESSAGE_BYTES`, the compiled validator's first error; one short line."""
    if errors and len(_json_bytes(part)) > MAX_SLOW_MESSAGE_BYTES:
        return _one_line(str(errors[0].message))
    try:
        nbformat.validate(nbformat.from_dict(part))
    except nbformat.ValidationError as exc:
        return _one_line(exc.message)
    return "?"


def _check_deadline(deadline: float, limits: ReadLimits) -> None:
    if time.thread_time() > deadline:
        raise _refusal(N_("notebook.too_slow"), seconds=limits.validate_seconds)


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _mib(size: int) -> str:
    return f"{size / MiB:.3g}"


def _one_line(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= _DETAIL_CHARS else line[:_DETAIL_CHARS - 1] + "…"


def strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without outputs: what runs in the sandbox (old outputs prove nothing). The
    outputs are left behind before the copy (they may be most of an upload's bytes)."""
    cells = [{**cell, "outputs": [], "execution_count": None} if cell.cell_type == "code"
             else cell for cell in nb.cells]
    return nbformat.from_dict(json.loads(json.dumps({**nb, "cells": cells})))
