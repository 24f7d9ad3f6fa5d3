"""Every message the code uses is translated, in Japanese and in English, and nothing else is.

For each gettext domain (``messages``: the service's pages and API; ``grader``: the grader's
feedback) the messages are extracted from the sources with the domain's ``babel.cfg``, as
``pybabel extract`` does, and compared with the ``.po`` catalogs: a message the code uses but a
catalog lacks (or holds empty, or fuzzy) would show its key to a student; one the catalogs hold
but no code uses is dead weight a translator would still maintain.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.catalogs import DOMAINS, LANGUAGES, catalog, extracted, placeholders


@pytest.fixture(scope="module", params=sorted(DOMAINS))
def domain(request: pytest.FixtureRequest) -> str:
    return request.param


def test_the_code_uses_messages(domain: str):
    assert len(extracted(domain)) > 20  # a broken mapping or keyword list would find none


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_the_code_uses_is_translated(domain: str, lang: str):
    entries = {m.id: m for m in catalog(domain, lang) if m.id}
    used = extracted(domain)
    missing = sorted(f"{key} ({', '.join(used[key])})" for key in used if key not in entries)
    assert missing == []
    assert sorted(key for key in used if not entries[key].string) == []
    assert sorted(key for key in used if entries[key].fuzzy) == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_catalogs_hold_no_message_the_code_no_longer_uses(domain: str, lang: str):
    used = extracted(domain)
    assert sorted(m.id for m in catalog(domain, lang) if m.id and m.id not in used) == []


def test_both_languages_fill_the_same_placeholders(domain: str):
    ja = {m.id: m.string for m in catalog(domain, "ja") if m.id}
    en = {m.id: m.string for m in catalog(domain, "en") if m.id}
    for key in ja.keys() & en.keys():
        assert placeholders(ja[key]) == placeholders(en[key]), key
        for text in (ja[key], en[key]):
            text % defaultdict(int)  # a stray % (or an unknown conversion) would raise here


def test_page_texts_are_plain_text():
    """Jinja's ``_`` (Flask-Babel, newstyle gettext) marks a translation safe, so a catalog
    text must not hold markup or characters that would need escaping in an attribute."""
    for lang in LANGUAGES:
        for message in catalog("messages", lang):
            if message.id:
                assert not set(message.string) & set('<>&"'), (lang, message.id)
