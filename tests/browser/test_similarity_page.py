"""An instructor reviews a similarity run in a real browser against the real service (issue 20):
the planted pair comes first on the review page, its page shows both students' code with the
matching parts marked (and a student's hostile code as text, never run), a confirmation with a
comment joins the audit trail, and the pairs' CSV downloads with the decision in it.

The class and the similarity run are written into the service's database the way the workers
write them (as ``test_course_rules`` seeds its class), with real notebooks in its upload folder;
the marked spans are computed from ``grader.similarity``'s ``notebook_code`` of those notebooks,
the text the page shows. The service is one of this module's own (``own_service``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Page, expect

from service.blobs import FolderBlobStore
from service.domain.roster import import_roster
from service.extensions import db
from service.models import (
    GradingRun,
    ItemScore,
    SimilarityPair,
    SimilarityRun,
    Student,
    Submission,
    utcnow,
)
from service.states import SimilarityState
from tests.browser.conftest import LiveService
from tests.browser.test_course_rules import log_in_as_admin, service_app

pytestmark = pytest.mark.browser
# The code beside a pair is the similarity library's text; without it the page has none to show.
similarity = pytest.importorskip("grader.similarity")

EXERCISE = "chap06_cnn"
ROSTER = ("student_id,name,email\nv001,Rin Aoki,rin@example.org\n"
          "v002,Sota Kudo,sota@example.org\nv003,Mei Hara,\n")
SHARED = "def shared_helper(values):\n    return sorted(set(values))[::-1]\n"
#: Code that would run in the page if it were not shown as text.
HOSTILE = "print('</pre></script><script>window.pwned = 1</script><img src=x onerror=alert(1)>')"
COMMENT = "Same helper in both; confirmed with the students."


def notebook(*sources: str) -> bytes:
    return nbformat.writes(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# CNN"),
        *(nbformat.v4.new_code_cell(source) for source in sources)])).encode("utf-8")


def seed(service: LiveService) -> dict[str, int]:
    """v001 and v002 share a helper (the planted, flagged pair; v002's code is hostile too);
    v002 and v003 a pair below the thresholds, ranked after it."""
    now = utcnow().replace(microsecond=0)
    data = {"v001": notebook("import numpy as np", SHARED + "print(shared_helper([2, 1]))"),
            "v002": notebook(HOSTILE, "rows = [1, 2]\n" + SHARED),
            "v003": notebook("import tensorflow as tf")}
    scores = {"v001": 88.0, "v002": 61.5, "v003": 70.0}
    app = service_app(service)
    with app.app_context():
        import_roster(ROSTER)
        students = {s.student_id: s for s in db.session.query(Student)}
        store = FolderBlobStore(app.config["UPLOAD_DIR"])
        subs = {}
        for n, (sid, raw) in enumerate(data.items()):
            created = now - dt.timedelta(hours=3 - n)
            submission = Submission(student=students[sid], exercise=EXERCISE, filename="hw.ipynb",
                                    notebook_sha256=store.put(raw), size=len(raw),
                                    created_at=created)
            GradingRun(submission=submission, state="graded", outcome="graded",
                       score=scores[sid], max_score=100.0, measured_accuracy=0.98,
                       queued_at=created, started_at=created + dt.timedelta(seconds=20),
                       finished_at=created + dt.timedelta(minutes=3),
                       items=[ItemScore(position=0, item_id="conv1", score=scores[sid],
                                        max_score=100.0, status="correct")])
            db.session.add(submission)
            db.session.flush()
            subs[sid] = submission.id
        texts = {sid: similarity.notebook_code(raw).text for sid, raw in data.items()}
        run = SimilarityRun(exercise=EXERCISE, state=SimilarityState.DONE, requested_by="cli",
                            started_at=now - dt.timedelta(minutes=2), finished_at=now,
                            submissions=dict(subs),
                            summary={"thresholds": {"code": 0.5, "model": 0.6}})
        db.session.add(run)
        db.session.flush()
        low = SimilarityPair(run_id=run.id, rank=1, student_a_pk=students["v002"].id,
                             student_b_pk=students["v003"].id, submission_a_id=subs["v002"],
                             submission_b_id=subs["v003"], code=0.1, distinctive=0,
                             model=None)
        db.session.add(low)

        def span(sid: str) -> list[int]:
            start = texts[sid].index(SHARED)
            return [start, start + len(SHARED)]

        planted = SimilarityPair(run_id=run.id, rank=0, student_a_pk=students["v001"].id,
                                 student_b_pk=students["v002"].id,
                                 submission_a_id=subs["v001"], submission_b_id=subs["v002"],
                                 code=0.8137, distinctive=12, model=0.91, code_flagged=True,
                                 model_flagged=True, flagged=True,
                                 spans={"a": [span("v001")], "b": [span("v002")]})
        db.session.add(planted)
        db.session.commit()
        ids = {"run": run.id, "planted": planted.id, "low": low.id}
        db.session.remove()
        db.engine.dispose()
    return ids


def download_pairs(staff: Page) -> list[dict[str, str]]:
    with staff.expect_download() as caught:
        staff.locator("#similarity-csv").click()
    raw = Path(caught.value.path()).read_bytes()
    assert raw.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


@pytest.mark.timeout(120)
def test_an_instructor_reviews_the_planted_pair_and_exports_the_csv(
        own_service: LiveService, new_page, screenshots: Path):
    ids = seed(own_service)
    staff = new_page()
    log_in_as_admin(staff, own_service)
    staff.goto(f"{own_service.url}/dashboard/{EXERCISE}")
    staff.locator("a.similarity-link").click()
    expect(staff).to_have_url(re.compile(rf"/dashboard/{EXERCISE}/similarity$"))
    expect(staff.locator("h1")).to_have_text("類似度レビュー")  # the page's language: ja
    rows = staff.locator("table.similarity-pairs tbody tr")
    expect(rows).to_have_count(2)
    first = rows.first
    expect(first).to_have_attribute("data-pair", str(ids["planted"]))
    expect(first.locator("td.code")).to_have_text("81.4%")
    expect(first.locator("td.model")).to_have_text("91%")
    expect(first.locator("td.distinctive")).to_have_text("12")
    expect(first.locator("td.side").first).to_contain_text("v001")
    expect(first.locator("td.side").nth(1)).to_contain_text("v002")
    expect(first.locator(".final").first).to_have_text("88")
    expect(rows.nth(1).locator("td.model")).to_have_text("—")
    staff.screenshot(path=screenshots / "s01-review.png", full_page=True)

    # The planted pair's page: both sides' code, the shared helper marked on each.
    first.locator("th a").click()
    expect(staff).to_have_url(re.compile(rf"/similarity/{ids['planted']}$"))
    for side in ("#code-a", "#code-b"):
        marks = staff.locator(f"{side} pre.code-view mark")
        expect(marks).to_have_count(1)
        expect(marks.first).to_have_text(SHARED)
    # v002's hostile code is text on the page, and none of it ran
    expect(staff.locator("#code-a pre.code-view")).to_contain_text("print(shared_helper([2, 1]))")
    expect(staff.locator("#code-b pre.code-view")).to_contain_text(
        "<script>window.pwned = 1</script>")
    assert staff.evaluate("window.pwned") is None
    expect(staff.locator("#code-b img")).to_have_count(0)
    staff.screenshot(path=screenshots / "s02-pair.png", full_page=True)

    # Confirming without a comment is refused; with one it joins the trail.
    staff.select_option("#decision-choice", "confirmed")
    staff.locator("form.decision-form button[type=submit]").click()
    expect(staff.locator("#decision-error")).to_be_visible()
    expect(staff.locator("#decision-trail")).to_have_count(0)
    assert [status for status, _ in staff.failed_responses] == [400]  # the refusal itself
    staff.failed_responses.clear()
    staff.select_option("#decision-choice", "confirmed")
    staff.fill("#decision-comment", COMMENT)
    staff.locator("form.decision-form button[type=submit]").click()
    expect(staff).to_have_url(re.compile(rf"/similarity/{ids['planted']}#decision$"))
    expect(staff.locator(".flash")).to_have_count(1)
    trail = staff.locator("#decision-trail tbody tr")
    expect(trail).to_have_count(1)
    expect(trail.first).to_contain_text(COMMENT)
    expect(trail.first).to_contain_text("admin")
    expect(trail.first.locator("td.decision")).to_have_text("不正と判断")
    staff.screenshot(path=screenshots / "s03-confirmed.png", full_page=True)

    # Back on the review page: the decision in force, and the CSV with it.
    staff.locator("a", has_text="ペアの一覧に戻る").click()
    expect(staff.locator("table.similarity-pairs tbody tr").first.locator("td.decision")
           ).to_have_text("不正と判断")
    pairs = download_pairs(staff)
    assert [(p["student_a"], p["student_b"]) for p in pairs] == [("v001", "v002"),
                                                                 ("v002", "v003")]
    assert (pairs[0]["code"], pairs[0]["model"], pairs[0]["flagged"]) == ("0.8137", "0.9100",
                                                                          "yes")
    assert (pairs[0]["decision"], pairs[0]["comment"], pairs[0]["decided_by"]) == (
        "confirmed", COMMENT, "admin")
    assert (pairs[1]["decision"], pairs[1]["model"]) == ("open", "")
    assert pairs[0]["run_id"] == str(ids["run"])

    # The button queues a new check (the page then says a newer one is on its way).
    staff.locator("#similarity-start").click()
    expect(staff).to_have_url(re.compile(rf"/dashboard/{EXERCISE}/similarity$"))
    expect(staff.locator(".flash")).to_contain_text(f"#{ids['run'] + 1}")

    assert staff.console_errors == [], staff.console_errors
    assert staff.failed_responses == [], staff.failed_responses
