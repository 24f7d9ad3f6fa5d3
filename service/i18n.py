"""Japanese and English for the student pages: one message catalog, one language per request.

Every string a student can read on a page comes from :data:`CATALOG` through :func:`t` (exposed
to Jinja with the page language), so a page never mixes languages and a missing translation is a
``KeyError`` in the tests rather than a silent English fallback. The language is, in order: a
``?lang=`` switch, the one remembered in the session from an earlier switch, the browser's
``Accept-Language``, then Japanese (the course's language).

Texts that come with both languages already (exercise and item titles, grader feedback, notes)
are stored as ``{"ja": ..., "en": ...}`` and picked with :func:`localize`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from flask import g, request, session, url_for
from werkzeug.datastructures import LanguageAccept

LANGUAGES = ("ja", "en")
DEFAULT_LANGUAGE = "ja"
SESSION_KEY = "lang"
#: Each language is named in itself on the switch, whatever the page language.
LANGUAGE_NAMES = {"ja": "日本語", "en": "English"}

CATALOG: dict[str, dict[str, str]] = {
    "app.name": {"ja": "ノートブック採点", "en": "Notebook grader"},
    "nav.main": {"ja": "メニュー", "en": "Menu"},
    "nav.upload": {"ja": "提出", "en": "Submit"},
    "nav.history": {"ja": "提出履歴", "en": "My submissions"},
    "nav.logout": {"ja": "ログアウト", "en": "Log out"},
    "nav.language": {"ja": "表示言語", "en": "Language"},
    "nav.signed_in": {"ja": "{name} さん", "en": "Signed in as {name}"},
    # login
    "login.title": {"ja": "ログイン", "en": "Log in"},
    "login.intro": {
        "ja": "授業で配布された個人用アクセストークンを貼り付けてください。",
        "en": "Paste the personal access token you were given for this course.",
    },
    "login.token": {"ja": "アクセストークン", "en": "Access token"},
    "login.token_hint": {
        "ja": "gt_ で始まる文字列です。他の人に教えないでください。",
        "en": "It starts with gt_. Keep it to yourself.",
    },
    "login.submit": {"ja": "ログイン", "en": "Log in"},
    "login.empty": {"ja": "トークンを入力してください。", "en": "Enter your token."},
    "login.bad_token": {
        "ja": "このトークンは登録されていません。gt_ から始まるトークン全体を"
              "貼り付けてください。それでも入れない場合は担当教員に連絡してください。",
        "en": "This token is not registered. Paste the whole token, starting with gt_. "
              "If it still does not work, ask the course staff.",
    },
    # notices shown once after a redirect
    "flash.login_required": {
        "ja": "このページを見るにはログインしてください。",
        "en": "Please log in to see this page.",
    },
    "flash.logged_out": {"ja": "ログアウトしました。", "en": "You are logged out."},
    "flash.submitted": {
        "ja": "提出を受け付けました。順番に採点します。",
        "en": "Your notebook was received and is queued for grading.",
    },
    "flash.duplicate": {
        "ja": "同じノートブックを少し前に提出しています。その提出を表示します。",
        "en": "You submitted this same notebook a moment ago: here is that submission.",
    },
    # upload
    "upload.title": {"ja": "ノートブックの提出", "en": "Submit a notebook"},
    "upload.intro": {
        "ja": "採点では学習も実行するため数分かかります。提出後のページで進み具合を確認できます。",
        "en": "Grading runs your training too, so it takes a few minutes. "
              "The next page shows how it is going.",
    },
    "upload.exercise": {"ja": "課題", "en": "Exercise"},
    "upload.file": {"ja": "ノートブック (.ipynb)", "en": "Notebook (.ipynb)"},
    "upload.drop": {
        "ja": ".ipynb ファイルをここにドラッグ＆ドロップ",
        "en": "Drop your .ipynb file here",
    },
    "upload.or_choose": {"ja": "またはファイルを選択:", "en": "or choose the file:"},
    "upload.chosen": {"ja": "選択したファイル: {name}", "en": "Selected: {name}"},
    "upload.limit": {
        "ja": "ファイルサイズの上限は {limit} です。",
        "en": "Files up to {limit}.",
    },
    "upload.submit": {"ja": "提出する", "en": "Submit"},
    "upload.rejected": {"ja": "提出できませんでした", "en": "The notebook was not accepted"},
    "upload.no_file": {
        "ja": "提出するノートブックを選択してください。",
        "en": "Choose the notebook to submit.",
    },
    "upload.not_ipynb": {
        "ja": "拡張子が .ipynb のファイルを選んでください。",
        "en": "Choose a file whose name ends in .ipynb.",
    },
    "upload.too_large": {
        "ja": "ファイルが上限の {limit} を超えています。出力をすべてクリアしてから"
              "保存し直すと小さくなります。",
        "en": "The file is larger than the {limit} limit. Clear all outputs in your "
              "notebook, save it and upload it again.",
    },
    "upload.no_exercises": {
        "ja": "提出を受け付けている課題はまだありません。",
        "en": "No exercise is open for submission yet.",
    },
    # one submission
    "submission.title": {"ja": "提出 #{id}", "en": "Submission #{id}"},
    "submission.exercise": {"ja": "課題", "en": "Exercise"},
    "submission.file": {"ja": "ファイル", "en": "File"},
    "submission.submitted_at": {"ja": "提出日時", "en": "Submitted"},
    "submission.queued": {"ja": "採点待ち", "en": "Waiting to be graded"},
    "submission.queue_position": {
        "ja": "待ち順: {position} 番目",
        "en": "Position in the queue: {position}",
    },
    "submission.retrying": {
        "ja": "前回の実行が採点環境の問題で止まったため、もう一度実行します。",
        "en": "The last attempt stopped on a problem of the grading machine; "
              "it will run again.",
    },
    "submission.running": {"ja": "採点中", "en": "Being graded"},
    "submission.starting": {"ja": "カーネルを起動しています", "en": "Starting the kernel"},
    "submission.cell_of": {
        "ja": "セル {position} / {count} を実行中",
        "en": "Running cell {position} of {count}",
    },
    "submission.elapsed": {"ja": "経過時間: {seconds} 秒", "en": "Elapsed: {seconds} s"},
    "submission.last_output": {"ja": "最後の出力", "en": "Last printed line"},
    "submission.live_note": {
        "ja": "このページは自動で更新され、採点が終わると結果が表示されます。",
        "en": "This page updates by itself and shows the result when grading ends.",
    },
    "submission.score": {"ja": "得点", "en": "Score"},
    "submission.run": {"ja": "実行結果", "en": "Run"},
    "submission.stopped_early": {
        "ja": "実行が途中で止まりました。止まる前に実行された項目の得点は残ります。",
        "en": "The run stopped early. Items reached before it stopped keep their scores.",
    },
    "submission.notes": {"ja": "採点時の注意", "en": "Notes from the grader"},
    "submission.items": {"ja": "採点項目", "en": "Items"},
    "submission.points": {"ja": "{score} / {max} 点", "en": "{score} / {max} points"},
    "submission.expected_shape": {"ja": "正しい出力の形", "en": "Expected shape"},
    "submission.submitted_shape": {"ja": "提出された出力の形", "en": "Your output's shape"},
    "submission.measured_accuracy": {
        "ja": "採点で測定したテスト精度",
        "en": "Test accuracy measured by the grader",
    },
    "submission.claimed_accuracy": {
        "ja": "ノートブックが表示した精度",
        "en": "Accuracy your notebook printed",
    },
    "submission.threshold": {
        "ja": "満点の基準: {threshold} 以上",
        "en": "Full points from {threshold}",
    },
    "submission.claimed_mismatch": {
        "ja": "ノートブックに表示された精度が、採点で測定した精度と大きく違います。",
        "en": "The accuracy your notebook printed is far from the one the grader measured.",
    },
    "submission.executed": {
        "ja": "採点で実行されたノートブック",
        "en": "Your notebook as the grader ran it",
    },
    "submission.open_notebook": {"ja": "新しいタブで開く", "en": "Open in a new tab"},
    "submission.failed_title": {
        "ja": "採点を完了できませんでした",
        "en": "Grading could not be completed",
    },
    "submission.failed_body": {
        "ja": "提出されたノートブックは保存されており、失われていません。この失敗は記録され、"
              "担当教員が確認して採点し直せます。",
        "en": "Your notebook is stored: nothing is lost. The failure is recorded for the "
              "course staff, who can grade it again.",
    },
    "submission.reason": {"ja": "理由", "en": "Reason"},
    "submission.submit_again": {"ja": "もう一度提出する", "en": "Submit again"},
    "submission.all": {"ja": "提出履歴を見る", "en": "All my submissions"},
    # history
    "history.title": {"ja": "提出履歴", "en": "My submissions"},
    "history.time": {"ja": "提出日時", "en": "Submitted"},
    "history.exercise": {"ja": "課題", "en": "Exercise"},
    "history.status": {"ja": "状態", "en": "Status"},
    "history.score": {"ja": "得点", "en": "Score"},
    "history.empty": {"ja": "まだ提出はありません。", "en": "No submissions yet."},
    "history.view": {"ja": "#{id} を表示", "en": "View #{id}"},
    "history.details": {"ja": "詳細", "en": "Details"},
    # statuses
    "status.queued": {"ja": "採点待ち", "en": "Queued"},
    "status.running": {"ja": "採点中", "en": "Running"},
    "status.graded": {"ja": "採点済み", "en": "Graded"},
    "status.failed": {"ja": "採点失敗", "en": "Failed"},
    "run_status.graded": {"ja": "最後まで実行されました", "en": "Ran to the end"},
    "run_status.timeout": {"ja": "時間切れ", "en": "Timed out"},
    "run_status.out_of_memory": {"ja": "メモリ不足", "en": "Out of memory"},
    "run_status.kernel_died": {"ja": "カーネル停止", "en": "Kernel died"},
    "run_status.invalid_notebook": {"ja": "不正なノートブック", "en": "Not a valid notebook"},
    "run_status.sandbox_error": {"ja": "採点環境のエラー", "en": "Grading machine error"},
    "item.correct": {"ja": "正解", "en": "Correct"},
    "item.partial": {"ja": "部分点", "en": "Partly correct"},
    "item.incorrect": {"ja": "不正解", "en": "Incorrect"},
    "item.error": {"ja": "エラー", "en": "Error"},
    "item.missing": {"ja": "未回答", "en": "Missing"},
    "item.not_reached": {"ja": "未実行", "en": "Not reached"},
    # errors
    "error.not_found": {"ja": "見つかりません", "en": "Not found"},
    "error.not_found_body": {
        "ja": "この提出は存在しないか、あなたの提出ではありません。",
        "en": "There is no such submission among yours.",
    },
    "error.too_large": {"ja": "ファイルが大きすぎます", "en": "The file is too large"},
    "error.csrf": {"ja": "フォームの有効期限が切れました", "en": "The form has expired"},
    "error.csrf_body": {
        "ja": "ページを読み込み直してから、もう一度送信してください。",
        "en": "Reload the page and send the form again.",
    },
    "error.back": {"ja": "提出ページへ戻る", "en": "Back to the submission page"},
    "time.utc": {"ja": "(UTC)", "en": "(UTC)"},
}


def translate(lang: str, key: str, **params: Any) -> str:
    """The text of ``key`` in ``lang`` with its ``{fields}`` filled; unknown keys raise."""
    text = CATALOG[key][lang]
    return text.format(**params) if params else text


def choose_language(requested: str | None, remembered: str | None,
                    accepted: LanguageAccept) -> str:
    """A switch beats the remembered choice, which beats the browser's preference."""
    for lang in (requested, remembered):
        if lang in LANGUAGES:
            return lang
    return accepted.best_match(LANGUAGES, default=DEFAULT_LANGUAGE)


def current_language() -> str:
    """The language of this request (cached on ``g``).

    Computed on first use rather than in a ``before_request`` hook, because some pages (a 413
    or CSRF error) are rendered when the request failed before the blueprint's hooks ran."""
    if "lang" not in g:
        g.lang = choose_language(request.args.get("lang"), session.get(SESSION_KEY),
                                 request.accept_languages)
    return g.lang


def remember_language() -> None:
    """``before_request``: keep a ``?lang=`` switch in the session for the following pages."""
    requested = request.args.get("lang")
    if requested in LANGUAGES and session.get(SESSION_KEY) != requested:
        session[SESSION_KEY] = requested


def t(key: str, **params: Any) -> str:
    """:func:`translate` in the language of the current request."""
    return translate(current_language(), key, **params)


def flashed(message: str) -> str:
    """A flashed message: flashed as a catalog key, translated when shown."""
    return t(message) if message in CATALOG else message


def label(kind: str, value: str | None) -> str:
    """The name of a status (``kind`` ``status``, ``run_status`` or ``item``); a status the
    catalog does not know yet is shown as it is rather than breaking the page."""
    key = f"{kind}.{value}"
    return t(key) if key in CATALOG else (value or "")


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
    args = {**request.args.to_dict(), "lang": lang}
    return url_for(request.endpoint, **(request.view_args or {}), **args)


def template_helpers() -> dict[str, Any]:
    """Jinja globals of the student pages."""
    return {
        "t": t,
        "lang": current_language(),
        "languages": LANGUAGES,
        "language_names": LANGUAGE_NAMES,
        "localize": localize,
        "flashed": flashed,
        "label": label,
        "switch_url": switch_url,
    }
