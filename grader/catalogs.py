"""Compiled gettext catalogs (``.mo``) made from the ``.po`` files that are kept in git.

Only the ``.po`` files are committed and shipped as package data; ``make deps`` compiles them
with ``pybabel compile``. So that a plain ``pip install -e .`` (or a fresh checkout on a CI
runner) works too, the grader and the service call :func:`compile_catalogs` before they load a
catalog: it writes a ``.mo`` that is missing or older than its ``.po`` and does nothing
otherwise. Shared here because the service may import the grader, never the other way round.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po


def compile_catalogs(directory: Path, domain: str) -> list[Path]:
    """Compile every ``<directory>/<lang>/LC_MESSAGES/<domain>.po`` whose ``.mo`` is missing or
    stale; returns the ``.mo`` files written. Fuzzy entries are left out, as ``pybabel compile``
    does, so a message nobody confirmed shows up as missing rather than wrong."""
    written = []
    for po in sorted(directory.glob(f"*/LC_MESSAGES/{domain}.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parents[1].name, domain=domain)
        # Write next to the target and rename: a concurrent reader (another worker starting at
        # the same moment) sees the old file or the whole new one, never half of it.
        handle, temporary = tempfile.mkstemp(dir=po.parent, prefix=f".{domain}.", suffix=".mo")
        try:
            with os.fdopen(handle, "wb") as target:
                write_mo(target, catalog, use_fuzzy=False)
            os.replace(temporary, mo)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written.append(mo)
    return written
