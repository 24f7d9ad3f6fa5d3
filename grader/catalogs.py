"""The gettext catalogs of the grader and the service: :class:`Catalog`, one domain's messages
formatted in both languages, and the compiled ``.mo`` files it reads.

A message is looked up by a symbolic key (``scoring.cell_not_run``, ``rules.bad_penalty``) and
formatted with each language's catalog, so a text that reaches people in either language (a
report's feedback, a refusal of the course's rules) is made once as a
:class:`~grader.spec.Text` and shown in the reader's language later. Nothing here needs a web
framework or a request: the catalog is read from its directory, once per language and process.

Only the ``.po`` files are committed and shipped as package data; ``make deps`` compiles them
with ``pybabel compile``. So that a plain ``pip install -e .`` (or a fresh checkout on a CI
runner) works too, the grader and the service call :func:`compile_catalogs` before they load a
catalog: it writes a ``.mo`` that is missing or older than its ``.po`` and does nothing
otherwise. Shared here because the service may import the grader, never the other way round.
"""

from __future__ import annotations

import gettext
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from grader.spec import Text

#: The languages every catalog holds (a :class:`~grader.spec.Text` has both).
LANGUAGES = ("ja", "en")


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


class Catalog:
    """The messages of one gettext domain, ``<directory>/<lang>/LC_MESSAGES/<domain>.po``.

    A message is a symbolic key whose text may hold ``%(name)s`` placeholders, filled from the
    keyword parameters; a parameter that is itself a :class:`~grader.spec.Text` (a fragment
    made from other messages, such as the reason inside "line 3: <reason>") is filled in the
    language being written. A key the catalog lacks comes back as the key itself (gettext's
    fallback), which ``tests/test_catalogs.py`` makes sure never happens.
    """

    def __init__(self, directory: Path, domain: str) -> None:
        #: Where ``<lang>/LC_MESSAGES/<domain>.po`` (and its compiled ``.mo``) are.
        self.directory = directory
        #: The gettext domain: the catalogs' file name.
        self.domain = domain
        self._loaded: dict[str, gettext.NullTranslations] = {}
        self._lock = threading.Lock()

    def translations(self, lang: str) -> gettext.NullTranslations:
        """The catalog of ``lang``, compiled first if its ``.mo`` is missing or stale (read
        once per process)."""
        found = self._loaded.get(lang)
        if found is None:
            with self._lock:
                found = self._loaded.get(lang)
                if found is None:
                    compile_catalogs(self.directory, self.domain)
                    found = gettext.translation(self.domain, self.directory, languages=[lang])
                    self._loaded[lang] = found
        return found

    def translate(self, lang: str, key: str, /, **params: object) -> str:
        """``key`` in one language, its placeholders filled (``Text`` parameters in that
        language). The text is always %-formatted, so ``%%`` is a percent sign with or
        without parameters."""
        text = self.translations(lang).gettext(key)
        return text % _filled(params, lang)

    def bilingual(self, key: str, /, **params: object) -> Text:
        """The message ``key`` in both languages."""
        return Text(ja=self.translate("ja", key, **params),
                    en=self.translate("en", key, **params))


def _filled(params: Mapping[str, object], lang: str) -> dict[str, object]:
    return {name: value.get(lang) if isinstance(value, Text) else value
            for name, value in params.items()}
