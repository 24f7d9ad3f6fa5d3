"""The grader's feedback texts: gettext catalogs in ``grader/locale`` (domain ``grader``),
turned into a :class:`~grader.spec.Text` in both languages.

A report carries every text in Japanese and English (the service shows the student's language,
the JSON keeps both), so a message is not translated once for a reader but formatted with each
catalog: ``bilingual("scoring.cell_not_run")``. Messages are symbolic keys, as in the service's
catalogs, so both catalogs are real and ``tests/test_catalogs.py`` catches a missing one.
Parameters fill ``%(name)s`` placeholders; a parameter that is itself a ``Text`` (a fragment
built from other messages) is filled in each language. The lookup and formatting are
:class:`grader.catalogs.Catalog`'s, which the service uses for its own catalog too.
"""

from __future__ import annotations

from pathlib import Path

from grader.catalogs import LANGUAGES, Catalog
from grader.spec import Text

DOMAIN = "grader"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
#: The grader's catalog (domain ``grader``).
CATALOG = Catalog(LOCALE_DIR, DOMAIN)

__all__ = ["CATALOG", "DOMAIN", "LANGUAGES", "LOCALE_DIR", "N_", "bilingual", "translate"]


def N_(key: str) -> str:
    """Mark a message key for extraction where it is stored and looked up later (gettext's
    ``N_``); returns the key unchanged."""
    return key


def translate(lang: str, key: str, /, **params: object) -> str:
    """``key`` in one language, its placeholders filled (``Text`` parameters in that language)."""
    return CATALOG.translate(lang, key, **params)


def bilingual(key: str, /, **params: object) -> Text:
    """The message ``key`` in both languages, as the report stores it."""
    return CATALOG.bilingual(key, **params)
