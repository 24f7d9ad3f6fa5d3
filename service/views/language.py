"""The page language: which one a request gets, and the helpers the pages need around gettext.

Every text on a page is a message of the gettext catalogs in ``service/translations`` (domain
``messages``), looked up by a symbolic key (``login.title``) with Flask-Babel's ``_`` in Python
and in the templates. Keys rather than English sentences as msgids keep both catalogs real: a
message missing from either one is caught by ``tests/test_catalogs.py`` instead of falling back
silently to the other language.

The language is, in order: a ``?lang=`` switch, the one remembered in the session from an
earlier switch, the browser's ``Accept-Language``, then Japanese (the course's language). Texts
that come with both languages as data (exercise and item titles, grader feedback, notes) are
``{"ja": ..., "en": ...}`` and picked with :func:`localize`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from flask import has_request_context, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from werkzeug.datastructures import LanguageAccept

from grader import LANGUAGES, N_

DEFAULT_LANGUAGE = "ja"
SESSION_KEY = "lang"
#: Each language is named in itself on the switch, whatever the page language.
LANGUAGE_NAMES = {"ja": "日本語", "en": "English"}


#: Messages whose key a page builds at run time ("state." + a run's state, "outcome." + its
#: outcome, "dash.phase." + a phase, "dash.password.error." + an error code, "dash.filter.show_"
#: + a filter), marked so that extraction, and with it the catalog test, knows them.
BUILT_KEYS = (
    N_("state.queued"), N_("state.running"), N_("state.graded"), N_("state.failed"),
    N_("state.none"),
    N_("outcome.graded"), N_("outcome.timeout"), N_("outcome.out_of_memory"),
    N_("outcome.kernel_died"), N_("outcome.invalid_notebook"),
    N_("outcome.sandbox_error"), N_("outcome.gpu_out_of_memory"),
    N_("item.correct"), N_("item.partial"), N_("item.incorrect"), N_("item.error"),
    N_("item.missing"), N_("item.not_reached"),
    N_("dash.phase.queued"), N_("dash.phase.sandbox"), N_("dash.phase.kernel_start"),
    N_("dash.phase.bootstrap"), N_("dash.phase.cells"), N_("dash.phase.exports"),
    N_("dash.phase.cleanroom"), N_("dash.phase.scoring"), N_("dash.phase.total"),
    N_("dash.password.error.wrong_current"), N_("dash.password.error.mismatch"),
    N_("dash.password.error.length"), N_("dash.password.error.unchanged"),
    N_("dash.filter.show_all"), N_("dash.filter.show_missing"), N_("dash.filter.show_failed"),
    N_("dash.filter.show_submitted"),
)


def choose_language(requested: str | None, remembered: str | None,
                    accepted: LanguageAccept) -> str:
    """A switch beats the remembered choice, which beats the browser's preference."""
    for lang in (requested, remembered):
        if lang in LANGUAGES:
            return lang
    return accepted.best_match(LANGUAGES, default=DEFAULT_LANGUAGE)


def select_locale() -> str:
    """Flask-Babel's ``locale_selector``: :func:`choose_language` for this request (Japanese
    outside one, e.g. in a CLI command). Flask-Babel calls it on first use and caches the result
    on the request, so pages rendered after a failed request (a 413, a CSRF error) get it too."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    return choose_language(request.args.get("lang"), session.get(SESSION_KEY),
                           request.accept_languages)


def current_language() -> str:
    """The language code (``ja`` or ``en``) of this request."""
    locale = get_locale()
    return locale.language if locale is not None else DEFAULT_LANGUAGE


def remember_language() -> None:
    """``before_request``: keep a ``?lang=`` switch in the session for the following pages."""
    requested = request.args.get("lang")
    if requested in LANGUAGES and session.get(SESSION_KEY) != requested:
        session[SESSION_KEY] = requested


def flashed(message: str) -> str:
    """A flashed message: flashed as a catalog key (``flash("flash.logged_out")``, extracted
    through the ``flash`` keyword of ``babel.cfg``), translated when shown; any other text is
    shown as it is."""
    return _(message)


def label(kind: str, value: str | None) -> str:
    """The name of a value of ``kind``: ``state`` (a run's :class:`~service.states.RunState`,
    or ``none``), ``outcome`` (its ``grader.Outcome``) or ``item`` (an item's status); a value
    the catalog does not know yet is shown as it is rather than breaking the page."""
    key = f"{kind}.{value}"
    text = _(key)
    return text if text != key else (value or "")


def localize(value: Mapping[str, str] | Any | None) -> str:
    """Pick the page language from a ``{"ja", "en"}`` mapping (or an object with ``.ja``/``.en``,
    such as ``grader.spec.Text``); the other language when this one is empty."""
    if value is None:
        return ""
    lang = current_language()
    other = "en" if lang == "ja" else "ja"
    if isinstance(value, Mapping):
        return value.get(lang) or value.get(other) or ""
    return getattr(value, lang, "") or getattr(value, other, "") or ""


def switch_url(lang: str) -> str:
    """This page's address in another language (the query string is kept)."""
    if request.endpoint is None or request.method != "GET":
        return "?" + urlencode({"lang": lang})  # after a POST: the same path, as a GET
    args: dict[str, Any] = {**request.args.to_dict(), "lang": lang}
    return url_for(request.endpoint, **(request.view_args or {}), **args)


def template_helpers() -> dict[str, Any]:
    """Jinja globals of the student pages and the dashboard (``_`` comes from Flask-Babel)."""
    return {
        "lang": current_language(),
        "languages": LANGUAGES,
        "language_names": LANGUAGE_NAMES,
        "localize": localize,
        "flashed": flashed,
        "label": label,
        "switch_url": switch_url,
    }
