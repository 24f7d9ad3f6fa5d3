"""The embedded workers and ``grade_run`` on real notebooks in the real sandbox."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from service.blobs import FolderBlobStore
from service.extensions import sessions_of
from service.models import GradingRun, utcnow
from service.queue import claims as jobs
from service.queue.embedded import EmbeddedWorkers
from service.queue.leases import LeaseKeeper
from tests.service.service_support import (
    add_queued_runs,
    bearer,
    grade_run,
    in_session,
    item_scores,
    only_run,
    run_rows,
    tiny_notebook,
    wait_for,
)
from tests.service.test_service_api import _schema_validator

FIRST_SIX = ["conv1", "conv2", "conv3", "pool1", "pool2", "pool3"]


def start_workers(app, count: int = 1) -> EmbeddedWorkers:
    """Workers as ``python -m service`` starts them; stopped by the ``make_app`` fixture."""
    workers = EmbeddedWorkers(app, count, poll_seconds=0.2)
    app.extensions["grader_workers"] = workers
    workers.start()
    return workers


def test_a_run_whose_notebook_is_missing_fails_and_the_worker_goes_on(app, submit):
    """A worker whose upload directory lacks the file (another host, a wiped disk) records
    the failure and keeps taking runs; it must not die and leave the queue stuck."""
    ids = [submit(tiny_notebook(n)).get_json()["id"] for n in (1, 2)]
    for path in Path(app.config["UPLOAD_DIR"]).rglob("*"):
        if path.is_file():
            path.unlink()

    start_workers(app)

    def finished() -> bool:
        return all(only_run(app, i)["state"] in ("graded", "failed") for i in ids)

    wait_for(finished, timeout=20, what="both runs to finish",
             describe=lambda: str([only_run(app, i) for i in ids]))
    for submission_id in ids:
        run = only_run(app, submission_id)
        assert run["state"] == "failed", run
        assert "FileNotFoundError" in run["reason"] or "missing" in run["reason"], run
        assert run["lease_expires_at"] is None and run["finished_at"] is not None


@pytest.mark.sandbox
@pytest.mark.timeout(180)
def test_embedded_worker_grades_a_submission_end_to_end(app, client, submit, tokens,
                                                        short_notebook):
    start_workers(app)
    started = time.monotonic()
    submission_id = submit(short_notebook).get_json()["id"]
    url = f"/api/submissions/{submission_id}"
    seen: list[tuple[str, dict | None]] = []

    def graded() -> dict | None:
        body = client.get(url, headers=bearer(tokens["alice"])).get_json()
        seen.append((body["state"], body["progress"]))
        return body if body["state"] not in ("queued", "running") else None

    body = wait_for(graded, timeout=120, what="the submission to be graded", interval=0.25,
                    describe=lambda: str(seen[-3:]))
    elapsed = time.monotonic() - started

    assert body["state"] == "graded" and body["outcome"] == "graded", body
    assert (body["score"], body["max_score"], body["attempt"]) == (36, 100, 1)
    scores = {item["id"]: item["score"] for item in body["items"]}
    assert [scores.pop(i) for i in FIRST_SIX] == [6] * 6
    assert set(scores.values()) == {0} and len(scores) == 5
    assert body["progress"] is None and body["finished_at"] and body["queue_position"] is None
    assert body["executed_notebook_url"].endswith(f"/submissions/{submission_id}/notebook")
    document = client.get("/api/openapi.json").get_json()
    errors = list(_schema_validator(document, {"$ref": "#/components/schemas/Submission"})
                  .iter_errors(body))
    assert not errors, [e.message for e in errors]

    # Progress was shown while it ran (a cell number out of the notebook's code cells).
    progress = [p for status, p in seen if status == "running" and p]
    assert progress, f"no progress seen while running in {len(seen)} polls: {seen[:5]}"
    assert any("cell" in p for p in progress), progress

    # What the database holds: one run, its item scores, the executed notebook as HTML.
    run = only_run(app, submission_id)
    assert run["worker"].startswith("embedded:") and run["progress"]
    items = item_scores(app, run["id"])
    assert [i["position"] for i in items] == list(range(11))
    assert [i["item_id"] for i in items][:6] == FIRST_SIX
    assert sum(i["score"] for i in items) == 36 and sum(i["max_score"] for i in items) == 100
    assert {i["status"] for i in items[6:]} == {"missing"}
    html = FolderBlobStore(app.config["UPLOAD_DIR"]).get(run["executed_html_sha256"]).decode()
    assert "avg_pool" in html and "<script" not in html.lower()
    print(f"graded end to end in {elapsed:.1f} s")


def _claim_and_grade_in_thread(app, run_id: int, worker: str) -> tuple[threading.Thread, dict]:
    assert in_session(app, lambda s: jobs.claim(s, run_id, worker,
                                                app.config["LEASE_SECONDS"])) is True
    outcome: dict = {}

    def work() -> None:
        outcome["status"] = grade_run(app, run_id, worker)

    thread = threading.Thread(target=work, name="grading-A")
    thread.start()
    return thread, outcome


def _take_over(app, run_id: int, new_worker: str) -> None:
    """Another worker takes the run, as it would after the first one's lease ran out."""

    def take(session) -> None:
        session.execute(update(GradingRun).where(GradingRun.id == run_id)
                        .values(lease_expires_at=utcnow().replace(year=2000)))
        session.commit()
        assert jobs.claim(session, run_id, new_worker, 600) is True

    in_session(app, take)


def _lose_the_run_while_grading(app, submit, notebook: bytes) -> None:
    """Worker A grades; once it is under way worker B takes the run over. A's result must be
    dropped: no score, no item scores, the run still B's."""
    submission_id = submit(notebook, via=app).get_json()["id"]
    run_id = only_run(app, submission_id)["id"]

    thread, outcome = _claim_and_grade_in_thread(app, run_id, "worker-A")
    try:
        wait_for(lambda: only_run(app, submission_id)["progress"], timeout=60,
                 what="worker A to be grading")
        _take_over(app, run_id, "worker-B")
    finally:
        thread.join(timeout=120)

    assert outcome == {"status": "lost"}
    run = only_run(app, submission_id)
    assert (run["state"], run["worker"], run["attempts"]) == ("running", "worker-B", 2)
    assert run["score"] is None and run["outcome"] is None
    assert run["executed_html_sha256"] is None
    assert item_scores(app, run_id) == []


@pytest.mark.sandbox
@pytest.mark.timeout(180)
def test_a_worker_that_lost_its_run_cannot_store_its_result(make_app, submit, short_notebook):
    # Renewals too rare to notice the takeover: only the fenced store (owned()) can refuse.
    _lose_the_run_while_grading(make_app(LEASE_SECONDS=600), submit, short_notebook)


@pytest.mark.processes
def test_the_lease_keeper_renews_while_owned_and_notices_a_takeover(make_app):
    app = make_app(LEASE_SECONDS=6)  # renewed every 2 s: slack for a loaded machine
    (run_id,) = add_queued_runs(app, 1)
    assert in_session(app, lambda s: jobs.claim(s, run_id, "worker-A", 6)) is True
    first_lease = run_rows(app)[0]["lease_expires_at"]

    with LeaseKeeper(sessions_of(app), run_id, "worker-A", 6) as lease:
        time.sleep(7)  # past the first lease: only renewals keep the run
        assert in_session(app, lambda s: jobs.requeue_expired(s, 3)) == 0
        row = run_rows(app)[0]
        assert row["worker"] == "worker-A" and row["lease_expires_at"] > first_lease
        assert not lease.lost.is_set()

        _take_over(app, run_id, "worker-B")
        wait_for(lease.lost.is_set, timeout=10, what="the lease keeper to notice")

    row = run_rows(app)[0]
    assert (row["worker"], row["attempts"], row["state"]) == ("worker-B", 2, "running")
