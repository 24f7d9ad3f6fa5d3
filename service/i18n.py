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
        "ja": "採点で測定した精度 (低い方)",
        "en": "Accuracy measured by the grader (the lower one)",
    },
    "submission.accuracy_on.test": {
        "ja": "テスト画像 10,000 枚での精度", "en": "on the 10,000 test images"},
    "submission.accuracy_on.holdout": {
        "ja": "ノートブックが見ていない画像での精度", "en": "on images your notebook never saw"},
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
    # dashboard charts (templates/dashboard/_plots.html)
    "plots.heading": {"ja": "課題のグラフ", "en": "Charts of the exercise"},
    "plots.empty": {"ja": "まだデータがありません", "en": "No data yet"},
    "plots.students": {"ja": "学生数", "en": "Students"},
    "plots.scores.title": {"ja": "得点の分布", "en": "Scores"},
    "plots.scores.subtitle": {
        "ja": "採点済みの学生 {n} 人それぞれの最高得点",
        "en": "Best score of each of the {n} graded students",
    },
    "plots.scores.x": {"ja": "得点 ({max} 点満点)", "en": "Score (out of {max})"},
    "plots.accuracy.title": {"ja": "測定したテスト精度の分布", "en": "Measured test accuracy"},
    "plots.accuracy.subtitle": {
        "ja": "最高得点の実行で精度を測定できた学生 {n} 人",
        "en": "Best runs of the {n} students with a measured accuracy",
    },
    "plots.accuracy.x": {"ja": "テスト精度", "en": "Test accuracy"},
    "plots.accuracy.threshold": {"ja": "満点の基準", "en": "Full points from"},
    "plots.items.title": {"ja": "項目ごとの正解率", "en": "Items fully correct"},
    "plots.items.subtitle": {
        "ja": "採点済みの学生 {n} 人のうち、最高得点の実行でその項目が正解だった割合",
        "en": "Share of the {n} graded students whose best run got it right",
    },
    "plots.submissions.title_hour": {"ja": "1時間ごとの提出数", "en": "Submissions per hour"},
    "plots.submissions.title_day": {"ja": "1日ごとの提出数", "en": "Submissions per day"},
    "plots.submissions.subtitle": {
        "ja": "合計 {n} 件。時刻は UTC です。",
        "en": "{n} in all; times in UTC",
    },
    "plots.submissions.x_hour": {"ja": "時刻 (UTC)", "en": "Time (UTC)"},
    "plots.submissions.x_day": {"ja": "日付 (UTC)", "en": "Date (UTC)"},
    "plots.submissions.y": {"ja": "提出数", "en": "Submissions"},
    "plots.deadline": {"ja": "締切", "en": "Deadline"},
}


# --- the instructors' dashboard (service/dashboard, templates/dashboard) ---------------------
CATALOG.update({
    "status.none": {"ja": "未提出", "en": "Not submitted"},
    "dash.app": {"ja": "教員用ダッシュボード", "en": "Instructor dashboard"},
    "dash.staff": {"ja": "教員用", "en": "Staff"},
    "dash.back": {"ja": "ダッシュボードへ戻る", "en": "Back to the dashboard"},
    "dash.student_pages": {"ja": "学生用ページへ", "en": "Go to the student pages"},
    "dash.ago": {"ja": "{duration}前", "en": "{duration} ago"},
    "dash.dur.seconds": {"ja": "{n} 秒", "en": "{n} s"},
    "dash.dur.minutes": {"ja": "{m} 分 {s} 秒", "en": "{m} min {s} s"},
    "dash.dur.hours": {"ja": "{h} 時間 {m} 分", "en": "{h} h {m} min"},
    "dash.nav.exercises": {"ja": "課題", "en": "Exercises"},
    "dash.nav.queue": {"ja": "採点キュー", "en": "Queue"},
    "dash.nav.password": {"ja": "パスワード変更", "en": "Change password"},
    # logging in
    "dash.login.title": {"ja": "教員ログイン", "en": "Instructor login"},
    "dash.login.intro": {
        "ja": "教員用アカウントのユーザー名とパスワードを入力してください。",
        "en": "Log in with your instructor username and password.",
    },
    "dash.login.username": {"ja": "ユーザー名", "en": "Username"},
    "dash.login.password": {"ja": "パスワード", "en": "Password"},
    "dash.login.empty": {
        "ja": "ユーザー名とパスワードを入力してください。",
        "en": "Enter your username and password.",
    },
    "dash.login.failed": {
        "ja": "ユーザー名またはパスワードが違います。",
        "en": "The username or the password is wrong.",
    },
    "dash.login.throttled": {
        "ja": "ログインの失敗が続いたため、一時的にログインできません。"
              "約 {minutes} 分後にもう一度試してください。",
        "en": "Too many failed logins. Try again in about {minutes} minutes.",
    },
    "dash.login.students": {
        "ja": "学生の方はアクセストークンでログインします。",
        "en": "Students log in with their access token instead.",
    },
    # password
    "dash.password.title": {"ja": "パスワードの変更", "en": "Change your password"},
    "dash.password.forced": {
        "ja": "一時パスワードでログインしました。続ける前に新しいパスワードを設定してください。",
        "en": "You logged in with a one-time password. Choose a new password to continue.",
    },
    "dash.password.current": {"ja": "現在のパスワード", "en": "Current password"},
    "dash.password.new": {"ja": "新しいパスワード", "en": "New password"},
    "dash.password.repeat": {"ja": "新しいパスワード (確認)", "en": "New password again"},
    "dash.password.hint": {"ja": "{min} 文字以上。", "en": "At least {min} characters."},
    "dash.password.submit": {"ja": "変更する", "en": "Change password"},
    "dash.password.error.wrong_current": {
        "ja": "現在のパスワードが違います。",
        "en": "The current password is wrong.",
    },
    "dash.password.error.mismatch": {
        "ja": "確認用に入力した新しいパスワードが一致しません。",
        "en": "The two new passwords differ.",
    },
    "dash.password.error.length": {
        "ja": "パスワードは {min} 文字以上 {max} 文字以下にしてください。",
        "en": "A password has {min} to {max} characters.",
    },
    "dash.password.error.unchanged": {
        "ja": "新しいパスワードが現在のものと同じです。",
        "en": "The new password is the current one.",
    },
    "dash.flash.password_changed": {
        "ja": "パスワードを変更しました。",
        "en": "Your password is changed.",
    },
    # errors
    "dash.error.forbidden": {"ja": "教員専用のページです", "en": "For course staff only"},
    "dash.error.forbidden_body": {
        "ja": "このページは教員用アカウントでログインしたときだけ表示できます。",
        "en": "This page opens only when you are logged in with an instructor account.",
    },
    "dash.error.not_found_body": {
        "ja": "指定された課題・学生・提出は見つかりませんでした。",
        "en": "There is no such exercise, student or submission.",
    },
    # exercises and summaries
    "dash.index.title": {"ja": "課題一覧", "en": "Exercises"},
    "dash.index.queue": {
        "ja": "待ち {queued} 件・採点中 {running} 件・失敗 {failed} 件",
        "en": "{queued} queued, {running} running, {failed} failed",
    },
    "dash.exercise.points": {
        "ja": "{max} 点満点・{items} 項目",
        "en": "{max} points, {items} items",
    },
    "dash.summary.students": {"ja": "履修者", "en": "Students"},
    "dash.summary.submitted": {"ja": "提出済み", "en": "Handed in"},
    "dash.summary.missing": {"ja": "未提出", "en": "Not yet"},
    "dash.summary.stuck": {"ja": "失敗・途中停止", "en": "Failed or stopped"},
    "dash.summary.mean": {"ja": "最高得点の平均", "en": "Mean best score"},
    "dash.summary.median": {"ja": "最高得点の中央値", "en": "Median best score"},
    "dash.summary.pending": {"ja": "採点待ち・採点中", "en": "Queued or running"},
    "dash.export.title": {"ja": "成績を CSV で出力", "en": "Export grades (CSV)"},
    "dash.export.plain": {"ja": "Moodle・表計算用", "en": "Moodle / spreadsheet"},
    "dash.export.canvas": {"ja": "Canvas 用", "en": "Canvas"},
    # the class table
    "dash.table.title": {"ja": "学生ごとの結果", "en": "Students"},
    "dash.table.count": {
        "ja": "{total} 人中 {shown} 人を表示",
        "en": "Showing {shown} of {total} students",
    },
    "dash.table.note": {
        "ja": "最高点: 各提出の最新の採点結果のうち最も高い得点。"
              "項目別の得点と精度はその提出のものです。"
              "最新: 最後に提出したノートブックの得点。列見出しを押すと並べ替えます。",
        "en": "Best: the highest score over the student's submissions, each at its latest "
              "grading; items and accuracy are that submission's. Latest: the score of the "
              "last notebook handed in. Click a column heading to sort.",
    },
    "dash.filter.show": {"ja": "表示", "en": "Show"},
    "dash.filter.show_all": {"ja": "全員", "en": "Everyone"},
    "dash.filter.show_missing": {"ja": "未提出の学生", "en": "No submission yet"},
    "dash.filter.show_failed": {
        "ja": "最新の採点が失敗・途中停止",
        "en": "Latest run failed or stopped",
    },
    "dash.filter.show_submitted": {"ja": "提出済みの学生", "en": "Handed in"},
    "dash.filter.below": {"ja": "最高点がこの点未満", "en": "Best score below"},
    "dash.filter.below_hint": {
        "ja": "点数で絞り込むとき、採点済みの提出がない学生は 0 点として扱います。",
        "en": "When filtering by score, students with no graded submission count as 0.",
    },
    "dash.filter.search": {"ja": "学籍番号・氏名で検索", "en": "Search id or name"},
    "dash.filter.apply": {"ja": "絞り込む", "en": "Apply"},
    "dash.filter.clear": {"ja": "条件をクリア", "en": "Clear"},
    "dash.col.student_id": {"ja": "学籍番号", "en": "Student ID"},
    "dash.col.student": {"ja": "学生", "en": "Student"},
    "dash.col.name": {"ja": "氏名", "en": "Name"},
    "dash.col.status": {"ja": "状態", "en": "Status"},
    "dash.col.best": {"ja": "最高点", "en": "Best"},
    "dash.col.latest": {"ja": "最新", "en": "Latest"},
    "dash.col.accuracy": {"ja": "測定精度", "en": "Measured accuracy"},
    "dash.col.attempts": {"ja": "提出回数", "en": "Attempts"},
    "dash.col.last": {"ja": "最終提出", "en": "Last submitted"},
    "dash.col.submission": {"ja": "提出", "en": "Submission"},
    "dash.col.runs": {"ja": "採点回数", "en": "Runs"},
    # regrading
    "dash.regrade.title": {"ja": "再採点", "en": "Regrade"},
    "dash.regrade.intro": {
        "ja": "参照解答や採点基準を変更したあとは、提出をもう一度採点できます。"
              "以前の採点結果は履歴として残ります。",
        "en": "After the reference or the spec changed, grade the submissions again. "
              "Earlier runs are kept in each submission's history.",
    },
    "dash.regrade.open": {"ja": "再採点の操作を表示", "en": "Show the regrade buttons"},
    "dash.regrade.all": {
        "ja": "全提出 {count} 件を再採点",
        "en": "Regrade all {count} submissions",
    },
    "dash.regrade.latest": {
        "ja": "各学生の最新の提出 {count} 件だけ再採点",
        "en": "Regrade each student's latest submission ({count})",
    },
    "dash.regrade.hint": {
        "ja": "1 件の採点には数分かかります。採点待ち・採点中の提出は重ねて登録しません。",
        "en": "Each run takes minutes. Submissions already queued or running are skipped.",
    },
    "dash.flash.regraded_all": {
        "ja": "{queued} 件を再採点の待ち行列に入れました (採点待ちのため見送り: {skipped} 件)。",
        "en": "{queued} runs queued for regrading ({skipped} skipped: already queued or running).",
    },
    "dash.flash.regraded_one": {
        "ja": "再採点を登録しました (実行 #{run})。",
        "en": "Regrade queued (run #{run}).",
    },
    "dash.flash.already_pending": {
        "ja": "この提出はすでに採点待ちか採点中です。",
        "en": "This submission is already queued or being graded.",
    },
    # one student
    "dash.student.email": {"ja": "メール", "en": "Email"},
    "dash.student.none": {
        "ja": "この課題への提出はありません。",
        "en": "No submission for this exercise.",
    },
    "dash.student.best": {"ja": "最高点", "en": "best"},
    # one submission
    "dash.submission.download": {
        "ja": "提出されたノートブックをダウンロード",
        "en": "Download the notebook",
    },
    "dash.submission.counted": {"ja": "成績に使う得点", "en": "Score that counts"},
    "dash.submission.run_n": {"ja": "実行 #{id}", "en": "Run #{id}"},
    "dash.submission.regrade": {"ja": "この提出を再採点", "en": "Regrade this submission"},
    "dash.submission.pending": {
        "ja": "採点待ちか採点中のため、今は再採点できません。",
        "en": "A run is queued or running; regrade once it ends.",
    },
    "dash.submission.no_report": {
        "ja": "この実行はまだ終わっていません。",
        "en": "This run has not finished yet.",
    },
    "dash.submission.details": {"ja": "採点の詳細データ", "en": "Details behind the score"},
    "dash.submission.executed": {
        "ja": "採点で実行されたノートブック",
        "en": "The notebook as the grader ran it",
    },
    "dash.runs.title": {"ja": "採点の履歴", "en": "Runs (regrade history)"},
    "dash.runs.run": {"ja": "実行", "en": "Run"},
    "dash.runs.first": {"ja": "初回", "en": "first"},
    "dash.runs.regrade": {"ja": "再採点", "en": "regrade"},
    "dash.runs.queued_at": {"ja": "登録日時", "en": "Queued"},
    "dash.runs.waited": {"ja": "待ち時間", "en": "Waited"},
    "dash.runs.took": {"ja": "採点時間", "en": "Took"},
    "dash.runs.attempts": {"ja": "試行", "en": "Attempts"},
    "dash.runs.worker": {"ja": "ワーカー", "en": "Worker"},
    "dash.phase.title": {"ja": "各段階の所要時間", "en": "Time spent in each phase"},
    "dash.phase.queued": {"ja": "キューでの待ち", "en": "Waiting in the queue"},
    "dash.phase.sandbox": {"ja": "サンドボックスの起動など", "en": "Sandbox start and overhead"},
    "dash.phase.kernel_start": {"ja": "カーネルの起動", "en": "Kernel start"},
    "dash.phase.bootstrap": {"ja": "TF1 互換の準備", "en": "Bootstrap (TF1 compatibility)"},
    "dash.phase.cells": {"ja": "セルの実行", "en": "Running the cells"},
    "dash.phase.exports": {"ja": "解答の書き出し", "en": "Exporting the answers"},
    "dash.phase.cleanroom": {"ja": "クリーンルームでの測定", "en": "Measuring in the clean room"},
    "dash.phase.scoring": {"ja": "採点", "en": "Scoring"},
    "dash.phase.total": {"ja": "合計 (待ち時間を除く)", "en": "Total (without the wait)"},
    "dash.phase.note": {
        "ja": "サンドボックスの起動などは、サンドボックス全体の時間から"
              "内部の各段階を引いた値です。",
        "en": "Sandbox start and overhead is the sandbox's wall time less the phases inside it.",
    },
    "dash.sandbox.title": {"ja": "サンドボックスの記録", "en": "Sandbox log"},
    "dash.sandbox.exit_code": {"ja": "終了コード", "en": "Exit code"},
    "dash.sandbox.signal": {"ja": "シグナル", "en": "signal"},
    "dash.sandbox.peak_memory": {"ja": "最大メモリ使用量", "en": "Peak memory"},
    "dash.sandbox.located": {"ja": "解答セルの見つけ方", "en": "How answer cells were found"},
    "dash.sandbox.bootstrap": {"ja": "TF1 互換の準備のメモ", "en": "Bootstrap notes"},
    "dash.sandbox.log": {"ja": "ログの末尾", "en": "End of the log"},
    "dash.sandbox.no_log": {"ja": "ログはありません。", "en": "Nothing was logged."},
    # the queue
    "dash.queue.title": {"ja": "採点キュー", "en": "Grading queue"},
    "dash.queue.refresh": {
        "ja": "15 秒ごとに自動更新します。",
        "en": "This page refreshes every 15 s.",
    },
    "dash.queue.failed_day": {"ja": "失敗 (24 時間 / 累計)", "en": "Failed (24 h / all)"},
    "dash.queue.graded_hour": {"ja": "直近 1 時間の採点数", "en": "Graded in the last hour"},
    "dash.queue.alive": {"ja": "稼働中のワーカー", "en": "Workers alive"},
    "dash.queue.oldest": {"ja": "最も長い待ち時間", "en": "Oldest queued run has waited"},
    "dash.queue.average_wait": {
        "ja": "平均待ち時間 (直近 {n} 件)",
        "en": "Average wait (last {n} started runs)",
    },
    "dash.queue.average_grading": {
        "ja": "平均採点時間 (直近 {n} 件)",
        "en": "Average grading time (last {n} graded runs)",
    },
    "dash.queue.drain": {
        "ja": "現在の待ちが終わるまでの目安",
        "en": "Estimated time to clear the queue",
    },
    "dash.queue.drain_unknown": {"ja": "不明", "en": "unknown"},
    "dash.queue.drain_none": {"ja": "待ちはありません", "en": "Nothing is waiting"},
    "dash.queue.no_workers": {
        "ja": "採点待ちの提出がありますが、稼働中のワーカーがありません。"
              "サービスまたはワーカーを確認してください。",
        "en": "Runs are waiting but no worker is alive: check the service or its workers.",
    },
    "dash.queue.workers": {"ja": "ワーカー", "en": "Workers"},
    "dash.queue.no_workers_seen": {
        "ja": "直近 1 時間に動いたワーカーはありません。",
        "en": "No worker was seen in the last hour.",
    },
    "dash.queue.workers_note": {
        "ja": "{seconds} 秒以内に応答したワーカーを稼働中とみなします。"
              "Celery のワーカーは採点中にだけ応答します。",
        "en": "A worker seen in the last {seconds} s counts as alive. Celery workers report "
              "only while they run a task.",
    },
    "dash.queue.kind": {"ja": "種類", "en": "Kind"},
    "dash.queue.last_seen": {"ja": "最終応答", "en": "Last seen"},
    "dash.queue.doing": {"ja": "処理中", "en": "Doing"},
    "dash.queue.worker_alive": {"ja": "稼働中", "en": "Alive"},
    "dash.queue.worker_silent": {"ja": "応答なし", "en": "Not seen"},
    "dash.queue.grading_run": {"ja": "実行 #{id} を採点中", "en": "Grading run #{id}"},
    "dash.queue.idle": {"ja": "待機中", "en": "Idle"},
    "dash.queue.running": {"ja": "採点中", "en": "Running now"},
    "dash.queue.started": {"ja": "開始", "en": "Started"},
    "dash.queue.elapsed": {"ja": "経過", "en": "Elapsed"},
    "dash.queue.progress": {"ja": "進み具合", "en": "Progress"},
    "dash.queue.waiting": {"ja": "採点待ち ({count} 件)", "en": "Waiting ({count})"},
    "dash.queue.waiting_for": {"ja": "{duration}待ち", "en": "waiting for {duration}"},
    "dash.queue.retry": {"ja": "(再試行 {attempts} 回目の後)", "en": "(after {attempts} attempts)"},
    "dash.queue.more": {"ja": "ほか {count} 件", "en": "and {count} more"},
    "dash.queue.failed": {"ja": "最近の失敗", "en": "Recent failures"},
    "dash.queue.finished": {"ja": "終了", "en": "Ended"},
    "dash.queue.none": {"ja": "ありません。", "en": "None."},
})


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
    args: dict[str, Any] = {**request.args.to_dict(), "lang": lang}
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
