"""Bounded work after grading: the executed notebook is rendered and the result stored while the
run's lease is still renewed, within caps; a notebook too large or too slow to render keeps its
report, without the HTML, and the feedback page says why. The rendering starts as soon as the
grader hands the executed notebook over, while the clean room measures. The grader is replaced
by a stub that returns a report at once (the sandbox is not what these tests are about)."""

from __future__ import annotations

import threading
import time
from typing import Any

import nbformat
import pytest
from sqlalchemy import update

from grader import Outcome
from grader.report import GradeReport
from service.blobs import FolderBlobStore
from service.domain.instructors import change_password, create_instructor
from service.extensions import db
from service.models import GradingRun, utcnow
from service.queue import claims, grading, rendering
from tests.service.service_support import (
    bearer,
    grade_run,
    in_session,
    only_run,
    tiny_notebook,
)


def _executed(cells: int) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"cell {k}")
                                         for k in range(cells)])
    return nbformat.writes(nb)


@pytest.fixture
def graded_by_stub(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``grade_notebook`` returns at once a graded report whose executed notebook has
    ``stub["cells"]`` markdown cells."""
    stub: dict[str, Any] = {"cells": 3}

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score,
                           executed_notebook=_executed(stub["cells"]))

    monkeypatch.setattr(grading, "grade_notebook", grade)
    return stub


def _claimed_run(app, submit) -> tuple[int, int]:
    submission_id = submit(tiny_notebook("render"), via=app).get_json()["id"]
    run_id = only_run(app, submission_id)["id"]
    assert in_session(app, lambda s: claims.claim(s, run_id, "worker-A",
                                                  app.config["LEASE_SECONDS"])) is True
    return submission_id, run_id


@pytest.mark.processes
def test_a_slow_store_after_grading_keeps_the_lease_and_the_result(
        make_app, submit, graded_by_stub, monkeypatch):
    """The finding: the HTML was rendered and stored after the lease keeper had stopped, so a
    slow host let the lease run out; the janitor requeued the run and its result was dropped
    (then it was graded again, up to MAX_ATTEMPTS times). Here storing the HTML takes three
    lease periods and the janitor runs just before the result is written."""
    app = make_app(LEASE_SECONDS=2)  # renewed every second; same database as ``submit``'s
    submission_id, run_id = _claimed_run(app, submit)
    put = FolderBlobStore.put

    def slow_put(self: FolderBlobStore, data: bytes) -> str:
        time.sleep(3 * app.config["LEASE_SECONDS"])  # a slow disk, a loaded host
        with app.app_context():  # the janitor, meanwhile
            claims.requeue_expired(db.session, app.config["MAX_ATTEMPTS"])
            db.session.remove()
        return put(self, data)

    monkeypatch.setattr(FolderBlobStore, "put", slow_put)
    assert grade_run(app, run_id, "worker-A") == "graded"
    run = only_run(app, submission_id)
    assert (run["state"], run["attempts"], run["worker"]) == ("graded", 1, "worker-A")
    assert run["executed_html_sha256"] is not None


def test_a_run_requeued_while_its_worker_paused_is_taken_back(app, submit):
    """A host paused past the lease (the janitor requeued the run, nobody claimed it yet):
    the next renewal takes the run back instead of dropping the result."""
    _, run_id = _claimed_run(app, submit)

    def expire_and_requeue(session) -> None:
        session.execute(update(GradingRun).where(GradingRun.id == run_id)
                        .values(lease_expires_at=utcnow().replace(year=2000)))
        session.commit()
        claims.requeue_expired(session, app.config["MAX_ATTEMPTS"])

    in_session(app, expire_and_requeue)
    assert in_session(app, lambda s: claims.renew(s, run_id, "worker-A", 60)) is False
    assert in_session(app, lambda s: claims.reclaim(s, run_id, "worker-A", 60)) is True
    assert in_session(app, lambda s: claims.owned(s, run_id, "worker-A")) is True
    # ... but never one another worker has claimed since.
    in_session(app, expire_and_requeue)
    assert in_session(app, lambda s: claims.claim(s, run_id, "worker-B", 60)) is True
    assert in_session(app, lambda s: claims.reclaim(s, run_id, "worker-A", 60)) is False


def test_a_notebook_over_the_cell_cap_is_graded_without_html_and_the_page_says_why(
        make_app, submit, tokens, graded_by_stub):
    """The finding's notebook in small: 60,000 empty cells took 3.3 ms each to render. Over
    ``HTML_MAX_CELLS`` the report is stored at once, without the HTML, with the reason."""
    app = make_app(HTML_MAX_CELLS=50, WTF_CSRF_ENABLED=False)
    graded_by_stub["cells"] = 51
    submission_id, run_id = _claimed_run(app, submit)
    assert grade_run(app, run_id, "worker-A") == "graded"
    run = only_run(app, submission_id)
    assert run["executed_html_sha256"] is None and run["outcome"] == "graded"
    report = in_session(app, lambda s: s.get(GradingRun, run_id).report)
    assert report["executed_html_omitted"]["reason"] == "too_large"
    assert report["executed_html_omitted"]["cells"] == 51

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert client.post("/login", data={"token": tokens["alice"]}).status_code == 303
    page = client.get(f"/submissions/{submission_id}").get_data(as_text=True)
    assert 'id="executed-omitted"' in page and "51 cells" in page and "50 cells" in page

    # the API says why as well, in both languages, and has no notebook URL
    answer = app.test_client().get(f"/api/submissions/{submission_id}",
                                   headers=bearer(tokens["alice"])).get_json()
    assert "executed_notebook_url" not in answer
    omitted = answer["executed_notebook_omitted"]
    assert omitted["reason"] == "too_large"
    assert "51 cells" in omitted["message"]["en"] and "51" in omitted["message"]["ja"]
    assert omitted["message"]["ja"] != omitted["message"]["en"]

    # and so does the instructor's page of the submission
    with app.app_context():
        instructor, once = create_instructor("teacher")
        change_password(instructor, once, "a long enough password", "a long enough password")
    staff = app.test_client()
    staff.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert staff.post("/dashboard/login", data={
        "username": "teacher", "password": "a long enough password"}).status_code == 303
    page = staff.get(f"/dashboard/submissions/{submission_id}").get_data(as_text=True)
    assert 'id="executed-omitted"' in page and "51 cells" in page


@pytest.mark.processes
def test_the_render_runs_while_the_clean_room_measures(make_app, submit, monkeypatch):
    """Part 4 of issue 11: the grader hands the executed notebook over (``on_executed``) before
    its clean room measures; the stub's "measurement" waits for the rendering to start, which it
    would do only after grading if the render were not started ahead. The stored report then
    has the HTML and the service's phase timings."""
    app = make_app()
    render_started = threading.Event()
    seen: dict[str, Any] = {}

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, *,
              on_executed: Any = None, **kw: Any) -> GradeReport:
        executed = nbformat.reads(_executed(3), as_version=4)
        if on_executed is not None:
            on_executed(executed)
        # the clean room measuring: the rendering has started meanwhile, or never will here
        seen["render_started_while_measuring"] = render_started.wait(10)
        return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score,
                           executed_notebook=nbformat.writes(executed))

    real_render = rendering.render_bounded

    def watched_render(*args: Any, **kw: Any) -> Any:
        render_started.set()
        return real_render(*args, **kw)

    monkeypatch.setattr(grading, "grade_notebook", grade)
    monkeypatch.setattr(rendering, "render_bounded", watched_render)
    submission_id, run_id = _claimed_run(app, submit)
    assert grade_run(app, run_id, "worker-A") == "graded"
    assert seen["render_started_while_measuring"] is True
    run = only_run(app, submission_id)
    assert run["executed_html_sha256"] is not None
    html = FolderBlobStore(app.config["UPLOAD_DIR"]).get(run["executed_html_sha256"])
    assert b"cell 2" in html
    timings = in_session(app, lambda s: s.get(GradingRun, run_id).report["timings"])
    assert {"queue_wait", "render", "render_wait", "store"} <= set(timings)
    assert timings["render"] > 0 and timings["queue_wait"] >= 0 and timings["store"] >= 0


@pytest.mark.processes
def test_a_notebook_changed_after_it_was_handed_over_is_rendered_again(
        make_app, submit, monkeypatch):
    """The HTML is always that of the report's executed notebook: one that differs from what
    ``on_executed`` heard (a grader that changed it) is rendered again at the store."""
    app = make_app()

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, *,
              on_executed: Any = None, **kw: Any) -> GradeReport:
        on_executed(nbformat.reads(_executed(1), as_version=4))
        return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score,
                           executed_notebook=_executed(4))

    monkeypatch.setattr(grading, "grade_notebook", grade)
    submission_id, run_id = _claimed_run(app, submit)
    assert grade_run(app, run_id, "worker-A") == "graded"
    html = FolderBlobStore(app.config["UPLOAD_DIR"]).get(
        only_run(app, submission_id)["executed_html_sha256"])
    assert b"cell 3" in html
