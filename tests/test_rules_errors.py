"""A refusal of the course's rules (``RulesError``) in Japanese and English, made from the
catalog files alone: no Flask app, no request (the CLI, the tests and the domain raise it). Its
English text is what the CLI prints and the tests match; the dashboard shows the Japanese one to
an instructor reading Japanese (``tests/service/test_dashboard_course.py``). The catalog machinery is
``grader.catalogs.Catalog``, shared with the grader's feedback.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import pytest
from flask import has_app_context

from grader.catalogs import Catalog
from grader.messages import CATALOG as GRADER_CATALOG
from grader.spec import Text
from service.catalog import MESSAGES
from service.domain import course_rules, schedules
from service.domain.course_rules import Dates, LatePenalty, RulesError, parse_release, parse_time
from service.domain.final_grade import AdjustMode
from tests.catalogs import extracted, messages

#: Kana and the common kanji: a text holding one is written in Japanese.
JAPANESE = (range(0x3040, 0x3100), range(0x4E00, 0xA000))


def is_japanese(text: str) -> bool:
    return any(ord(ch) in block for ch in text for block in JAPANESE)


def refusal(raise_it: Callable[[], object]) -> RulesError:
    with pytest.raises(RulesError) as caught:
        raise_it()
    return caught.value


# What each refusal said in English before it was localized, word for word: ``str()`` keeps it.
@pytest.mark.parametrize(("raise_it", "key", "english", "japanese"), [
    (lambda: parse_time("Christmas"), "rules.not_iso_time",
     "not an ISO 8601 time: 'Christmas' (for example 2026-12-24T23:59:59+09:00)",
     "ISO 8601 の日時ではありません: 'Christmas'"),
    (lambda: parse_time(" 2026-12-24T23:59 "), "rules.no_offset",
     "' 2026-12-24T23:59 ' has no offset: write it with one, e.g. 2026-12-24T23:59+09:00 or "
     "2026-12-24T23:59Z", "2026-12-24T23:59+09:00 や 2026-12-24T23:59Z"),
    (lambda: course_rules.zone("Mars/Olympus"), "rules.unknown_zone",
     "unknown time zone 'Mars/Olympus' (an IANA name such as Asia/Tokyo)",
     "タイムゾーン 'Mars/Olympus' は存在しません"),
    (lambda: LatePenalty.parse("ten percent"), "rules.bad_penalty",
     "late penalty 'ten percent' not understood: write 0, 100%, 10%/day or 5%/hour",
     "0、100%、10%/day、5%/hour"),
    (lambda: LatePenalty.parse("150%"), "rules.penalty_over_100",
     "late penalty '150%': at most 100%", "遅延の減点 '150%': 100% までです"),
    (lambda: Dates(late_until=parse_time("2026-12-24T00:00Z")).check(),
     "rules.late_until_needs_due", "a late-until needs a due time", "締切が必要です"),
    (lambda: Dates(parse_time("2026-12-25T00:00Z"), parse_time("2026-12-24T00:00Z")).check(),
     "rules.opens_not_before_due", "opens must be before due", "受付開始は締切より前に"),
    (lambda: Dates(None, parse_time("2026-12-25T00:00Z"), parse_time("2026-12-24T00:00Z")
                   ).check(),
     "rules.late_until_before_due", "late-until must not be before due",
     "遅延提出の受付終了を締切より前にはできません"),
    (lambda: parse_release("score=later"), "rules.bad_release_rule",
     "release rule 'score=later' not understood: write a preset (default, open, exam) or "
     "part=when with part one of score, feedback, test_accuracy, holdout_accuracy and when one "
     "of always, after_due, after_late_until, on_publish, never",
     "公開ルール 'score=later' を読み取れません"),
    (lambda: parse_release("score"), "rules.bad_release_rule", None, None),
    (lambda: schedules._limit("0"), "rules.attempts_below_one",
     "attempts per day must be at least 1 (or empty for no limit)", "上限なしなら空欄"),
    (lambda: schedules._weight("heavy"), "rules.weight_not_number",
     "weight must be a number, not 'heavy'", "'heavy' は数値ではありません"),
    (lambda: schedules.check_adjustment(AdjustMode.ADD, 1, "ok", "conv9", ["conv1", "conv2"]),
     "rules.unknown_item", "unknown item 'conv9' (items: conv1, conv2)",
     "項目 'conv9' は存在しません (項目: conv1, conv2)"),
])
def test_a_refusal_speaks_both_languages_without_an_app(
        raise_it: Callable[[], object], key: str, english: str | None, japanese: str | None):
    assert not has_app_context()
    error = refusal(raise_it)
    assert error.key == key
    assert isinstance(error.text, Text) and str(error) == error.text.en
    if english is not None:
        assert str(error) == english
    if japanese is not None:
        assert japanese in error.text.ja
    assert is_japanese(error.text.ja) and not is_japanese(error.text.en)


def test_a_refusal_inside_another_is_filled_in_each_language():
    """A CSV line's refusal wraps the line's own reason (a ``Text`` parameter)."""
    inner = RulesError("rules.unknown_exercise", exercise=repr("chap99"))
    outer = RulesError("rules.csv_line", line=3, reason=inner.text)
    assert str(outer) == "line 3: unknown exercise 'chap99'"
    assert outer.text.ja == "3 行目: 課題 'chap99' は存在しません"
    assert outer.params == {"line": 3, "reason": inner.text}


def test_a_refusal_survives_pickle_and_copy_with_its_key():
    error = RulesError("rules.weight_not_number", value=repr("x"))
    for again in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert (again.key, again.params, again.text, str(again)) == (
            error.key, error.params, error.text, str(error))


def test_every_rules_key_is_japanese_in_japanese():
    """Every refusal the code can raise has a Japanese text that is not the English one."""
    keys = sorted(key for key in extracted("messages") if key.startswith("rules."))
    assert len(keys) >= 25  # RulesError("rules...") is extracted (service/babel.cfg)
    ja, en = messages("messages", "ja"), messages("messages", "en")
    for key in keys:
        assert ja[key] != en[key] and is_japanese(ja[key]) and not is_japanese(en[key]), key


def test_a_catalog_is_the_same_lookup_for_the_grader_and_the_service(tmp_path):
    assert (MESSAGES.translate("en", "rules.penalty_over_100", spec="'x'")
            == "late penalty 'x': at most 100%")
    assert GRADER_CATALOG.domain == "grader" and MESSAGES.domain == "messages"
    # A key the catalog lacks comes back as itself (gettext's fallback), in both languages.
    assert MESSAGES.bilingual("rules.no_such") == Text("rules.no_such", "rules.no_such")
    # A catalog in any directory: compiled on first use, ``Text`` parameters per language.
    for lang, text in (("ja", "%(n)s 行目: %(reason)s (100%%)"),
                       ("en", "line %(n)s: %(reason)s (100%%)")):
        po = tmp_path / lang / "LC_MESSAGES" / "demo.po"
        po.parent.mkdir(parents=True)
        po.write_text(f'msgid ""\nmsgstr "Content-Type: text/plain; charset=utf-8\\n"\n\n'
                      f'msgid "demo.line"\nmsgstr "{text}"\n', encoding="utf-8")
    demo = Catalog(tmp_path, "demo")
    assert demo.bilingual("demo.line", n=2, reason=Text("なし", "none")) == Text(
        "2 行目: なし (100%)", "line 2: none (100%)")
    assert (tmp_path / "en" / "LC_MESSAGES" / "demo.mo").exists()
