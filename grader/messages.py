"""The grader's feedback texts: gettext catalogs in ``grader/locale`` (domain ``grader``),
turned into a :class:`~grader.spec.Text` in both languages.

A report carries every text in Japanese and English (the service shows the student's language,
the JSON keeps both), so a message is not translated once for a reader but formatted with each
catalog: ``bilingual("scoring.cell_not_run")``. Messages are symbolic keys, as in the service's
catalogs, so both catalogs are real and ``tests/test_catalogs.py`` catches a missing one.
Parameters fill ``%(name)s`` placeholders; a parameter that is itself a ``Text`` (a fragment
built from other messages) is filled in each language.
"""

from __future__ import annotations

import gettext
from functools import cache
from pathlib import Path

from grader.catalogs import compile_catalogs
from grader.spec import Text

DOMAIN = "grader"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("ja", "en")


def N_(key: str) -> str:
    """Mark a message key for extraction where it is stored and looked up later (gettext's
    ``N_``); returns the key unchanged."""
    return key


@cache
def _translations(lang: str) -> gettext.NullTranslations:
    compile_catalogs(LOCALE_DIR, DOMAIN)
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang])


def translate(lang: str, key: str, **params: object) -> str:
    """``key`` in one language, its placeholders filled (``Text`` parameters in that language)."""
    text = _translations(lang).gettext(key)
    if not params:
        return text
    return text % {name: value.get(lang) if isinstance(value, Text) else value
                   for name, value in params.items()}


def bilingual(key: str, **params: object) -> Text:
    """The message ``key`` in both languages, as the report stores it."""
    return Text(ja=translate("ja", key, **params), en=translate("en", key, **params))
