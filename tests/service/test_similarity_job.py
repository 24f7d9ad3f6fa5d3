"""The similarity run as a job (issue 20): ``flask --app service similarity run EXERCISE``, the
queue carrying it (claimed, leased, fenced, requeued by the janitor), what it stores, on SQLite
and PostgreSQL.

The class is seeded through the service: students upload real notebooks over the API and the
runs are taken by the real ``grading.take``, whose grader is a stub reporting the model
fingerprint each notebook's training would have (``tests/service/similarity_class.py``). The
comparison itself is the real ``grader.similarity`` (only the failure test replaces it, at the
one seam, ``service.domain.similarity_compare``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import nbformat
import pytest
from flask import Flask
from sqlalchemy import select, update

from grader import Outcome
from grader.config import PROJECT_ROOT
from grader.data.evaluation import evaluation_labels
from grader.fingerprints import ModelFingerprint
from grader.report import GradeReport, ItemResult
from grader.spec import Text
from service.domain import fingerprints as stored
from service.domain import similarity_compare
from service.domain.roster import import_roster
from service.domain.similarity_runs import latest_run, request_run
from service.extensions import db
from service.models import RunFingerprint, SimilarityPair, SimilarityRun, utcnow
from service.queue import dispatch, grading, janitor
from service.queue.embedded import EmbeddedWorkers
from service.states import ItemStatus, SimilarityState
from tests.service.service_support import (
    EXERCISE,
    bearer,
    cli,
    cli_ok,
    in_session,
    only_run,
    take,
    upload,
    wait_for,
)
from tests.service.similarity_class import fingerprint, honest_notebook, renamed_copy

Grades = dict[str, tuple[float, ModelFingerprint | None]]


# --- the class -------------------------------------------------------------------------------

@pytest.fixture
def graded(monkeypatch: pytest.MonkeyPatch) -> Grades:
    """The stub grader's answers, by the notebook's sha256: (score, fingerprint)."""
    answers: Grades = {}

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        score, model = answers.get(hashlib.sha256(data).hexdigest(), (50.0, None))
        item = ItemResult("all", Text("all", "all"), score, exercise.max_score,
                          ItemStatus.PARTIAL)
        return GradeReport(exercise.id, Outcome.GRADED, [item], exercise.max_score,
                           fingerprint=model)

    monkeypatch.setattr(grading, "grade_notebook", grade)
    return answers


class Seeder:
    """Uploads as students through the API, graded by the stub (``graded``)."""

    def __init__(self, app: Flask, answers: Grades):
        self.app, self.answers = app, answers
        self.tokens: dict[str, str] = {}
        self.submissions: dict[str, int] = {}

    def submit(self, student: str, data: bytes, score: float = 50.0,
               model: ModelFingerprint | None = None, grade: bool = True) -> int:
        if student not in self.tokens:
            with self.app.app_context():
                issued, _ = import_roster(f"student_id,name,email\n{student},{student},\n")
            self.tokens[student] = issued[0].token
        self.answers[hashlib.sha256(data).hexdigest()] = (score, model)
        response = self.app.test_client().post(
            "/api/submissions", data=upload(data), headers=bearer(self.tokens[student]),
            content_type="multipart/form-data")
        assert response.status_code in (200, 201, 202), response.get_data(as_text=True)
        submission_id = response.get_json()["id"]
        self.submissions[student] = submission_id
        if grade:
            self.grade_all()
        return submission_id

    def grade_all(self) -> None:
        while take(self.app, None, "test-grader").run_id is not None:
            pass


@pytest.fixture
def app(make_app) -> Flask:
    """The service, with a notebook check deadline that a busy machine cannot reach: the
    seeded notebooks are whole lecture notebooks, and the deadline has tests of its own."""
    return make_app(UPLOAD_CHECK_SECONDS=30)


@pytest.fixture
def seeder(app: Flask, graded: Grades) -> Seeder:
    return Seeder(app, graded)


#: An independently written correct notebook of chap06_cnn (100/100 with ``grader grade``), kept
#: with the library's similarity tests.
INDEPENDENT = PROJECT_ROOT / "tests" / "data" / "similarity" / "independent.ipynb"


@pytest.fixture
def notebooks(solution_nb: nbformat.NotebookNode, template_nb: nbformat.NotebookNode
              ) -> dict[str, bytes]:
    return {"reference": nbformat.writes(solution_nb).encode(),
            "renamed": renamed_copy(solution_nb),
            "independent": INDEPENDENT.read_bytes(),
            **{f"honest{n}": honest_notebook(template_nb, n) for n in range(5)}}


@pytest.fixture
def labels(app: Flask) -> dict[str, Any]:
    return evaluation_labels(app.config["GRADER"].data_dir)


#: The planted pairs of the seeded class, and its honest students.
PLANTED = [("s1-reference", "s2-renamed"), ("s4-train", "s5-train"),
           ("s6-paste", "s7-paste")]
STUDENTS = ["s1-reference", "s2-renamed", "s3-independent", "s4-train", "s5-train",
            "s6-paste", "s7-paste"]


def seed_class(seeder: Seeder, notebooks: dict[str, bytes], labels: dict[str, Any]) -> None:
    """Seven students: the reference solution and its renamed copy (the copy's model not
    measured: no fingerprint), an independent honest notebook, two honest notebooks whose
    models are the same training run twice, and two whose weights were pasted from one."""
    trained = fingerprint(labels, seed=4)
    pasted = fingerprint(labels, seed=6)
    seeder.submit("s1-reference", notebooks["reference"], 100, fingerprint(labels, seed=1))
    seeder.submit("s2-renamed", notebooks["renamed"], 100, None)
    seeder.submit("s3-independent", notebooks["honest0"], 100, fingerprint(labels, seed=3))
    seeder.submit("s4-train", notebooks["honest1"], 95, trained)
    seeder.submit("s5-train", notebooks["honest2"], 96,
                  fingerprint(labels, seed=5, like=trained))
    seeder.submit("s6-paste", notebooks["honest3"], 97, pasted)
    seeder.submit("s7-paste", notebooks["honest4"], 97,
                  ModelFingerprint(pasted.weights, dict(pasted.predictions)))


def run_json(app: Flask, *extra: str) -> tuple[list[dict[str, Any]], str]:
    result = cli(app, "similarity", "run", EXERCISE, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def pairs_of(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(p["students"][0], p["students"][1]) for p in found]


def runs(app: Flask) -> list[SimilarityRun]:
    def read(session: Any) -> list[SimilarityRun]:
        rows = list(session.scalars(select(SimilarityRun).order_by(SimilarityRun.id)))
        for row in rows:
            session.expunge(row)
        return rows

    return in_session(app, read)


# --- the acceptance check ----------------------------------------------------------------------

@pytest.mark.parametrize("own", ["independent", "honest0"])
def test_the_renamed_copy_is_first_and_flagged_the_independent_notebook_is_not(
        app, seeder, notebooks, own):
    """Issue 20's "done when": the reference, its renamed copy with two cells swapped, an
    independently written correct notebook; no model fingerprints."""
    seeder.submit("ref", notebooks["reference"], 100)
    seeder.submit("copy", notebooks["renamed"], 100)
    seeder.submit("own", notebooks[own], 100)

    found, stderr = run_json(app)

    assert "comparing in this process" in stderr  # no worker alive in this test
    assert found, "no pair reported"
    assert found[0]["students"] == ["copy", "ref"] and found[0]["flagged"] is True
    assert found[0]["code"] is not None and found[0]["model"] is None
    for pair in found:
        if "own" in pair["students"]:
            assert pair["flagged"] is False, pair
    assert [p["rank"] for p in found] == list(range(1, len(found) + 1))


# --- the seeded class ----------------------------------------------------------------------------

def test_a_seeded_class_gets_its_planted_pairs_flagged_and_first(app, seeder, notebooks,
                                                                labels):
    seed_class(seeder, notebooks, labels)
    assert in_session(app, lambda s: len(list(s.scalars(select(RunFingerprint))))) == 6

    found, stderr = run_json(app)

    assert "over 7 submissions, 21 pairs compared, 6 model fingerprints; 3 flagged" in stderr
    flagged = [pair for pair in found if pair["flagged"]]
    assert sorted(pairs_of(flagged)) == PLANTED, found
    assert found[:len(flagged)] == flagged  # flagged first
    by_pair = dict(zip(pairs_of(found), found, strict=True))
    copy = by_pair[PLANTED[0]]
    assert copy["code_flagged"] and copy["model"] is None  # the copy's model was not measured
    trained, pasted = by_pair[PLANTED[1]], by_pair[PLANTED[2]]
    assert trained["model_flagged"] and not trained["identical_weights"]
    assert pasted["model_flagged"] and pasted["identical_weights"] and pasted["model"] == 1.0
    for pair in found:
        assert set(pair) >= {"students", "code", "model", "flagged", "distinctive",
                             "identical_weights", "rank", "submissions"}
        assert pair["submissions"] == [seeder.submissions[s] for s in pair["students"]]
    strengths = [max(v for v in (p["code"], p["model"], 0.0) if v is not None)
                 for p in found[len(flagged):]]
    assert strengths == sorted(strengths, reverse=True)

    (run,) = runs(app)
    assert run.state == SimilarityState.DONE and run.requested_by.startswith("cli:")
    assert run.submissions == seeder.submissions
    assert run.finished_at is not None and run.started_at is not None
    summary = run.summary or {}
    assert summary["students"] == 7 and summary["pairs_compared"] == 21
    assert summary["fingerprints"] == 6 and summary["flagged"] == 3
    assert set(summary["seconds"]) >= {"choose", "read", "code", "models", "store"}
    assert "model_report_floor" in summary["thresholds"]

    shown = cli_ok(app, "similarity", "show", EXERCISE)  # the human table
    assert f"similarity run {run.id} of {EXERCISE}" in shown
    (line,) = [line for line in shown.splitlines() if "s1-reference" in line]
    assert line.split()[2] == "s2-renamed" and line.endswith("yes: code")


def test_the_counted_submission_is_compared_and_a_new_run_replaces_the_view_not_the_record(
        app, seeder, notebooks):
    seeder.submit("ref", notebooks["reference"], 100)
    seeder.submit("own", notebooks["honest0"], 90)
    first, _ = run_json(app)
    assert not any(p["flagged"] for p in first if "own" in p["students"])

    # A later, worse upload of the reference does not count (best counts): still compared
    # is the honest one, whose score is higher.
    seeder.submit("own", notebooks["reference"], 10)
    second, _ = run_json(app)
    assert not any(p["flagged"] for p in second if "own" in p["students"])
    older, newer = runs(app)
    assert newer.submissions is not None and older.submissions is not None
    assert newer.submissions["own"] == older.submissions["own"]  # the counted, not latest

    # The copy now scores best: it counts, and the pair is flagged.
    seeder.submit("own", notebooks["renamed"], 100)
    third, _ = run_json(app)
    assert third[0]["students"] == ["own", "ref"] and third[0]["flagged"]
    assert third[0]["submissions"][0] == seeder.submissions["own"]

    every = runs(app)
    assert [r.state for r in every] == [SimilarityState.DONE] * 3
    with app.app_context():
        latest = latest_run(EXERCISE)
        assert latest is not None and latest.id == every[-1].id
        kept = {r.id: len(db.session.get_one(SimilarityRun, r.id).pairs) for r in every}
    assert kept[every[0].id] == len(first)  # the first run's rows stay
    shown = json.loads(cli_ok(app, "similarity", "show", EXERCISE, "--json"))
    assert shown == third and {p["run"] for p in shown} == {every[-1].id}


# --- refusals and failures -----------------------------------------------------------------------

def test_an_unknown_exercise_is_refused(app):
    result = cli(app, "similarity", "run", "no_such_exercise", "--json")
    assert result.exit_code != 0 and result.stdout == ""
    assert "unknown exercise 'no_such_exercise'" in result.stderr
    assert runs(app) == []
    result = cli(app, "similarity", "show", EXERCISE)
    assert result.exit_code != 0 and "no finished similarity run" in result.stderr


def test_a_failing_comparison_ends_failed_with_its_reason(app, seeder, notebooks, monkeypatch):
    seeder.submit("ref", notebooks["reference"], 100)
    seeder.submit("own", notebooks["honest0"], 90)

    def broken(*args: Any, **kw: Any) -> Any:  # a fake at the seam: the comparison raises
        raise RuntimeError("the comparison broke")

    monkeypatch.setattr(similarity_compare.similarity, "compare_code", broken)
    result = cli(app, "similarity", "run", EXERCISE, "--json")

    assert result.exit_code == 1 and result.stdout == ""
    assert "failed: RuntimeError: the comparison broke" in result.stderr
    (run,) = runs(app)
    assert run.state == SimilarityState.FAILED and run.reason is not None
    assert "the comparison broke" in run.reason and run.finished_at is not None
    assert run.submissions == seeder.submissions  # recorded once chosen, before comparing
    with app.app_context():
        assert latest_run(EXERCISE) is None  # a failed run replaces nothing


# --- the queue ---------------------------------------------------------------------------------

@pytest.mark.processes
def test_an_embedded_worker_takes_a_queued_similarity_run_after_the_grading_runs(
        app, seeder, notebooks):
    seeder.submit("ref", notebooks["reference"], 100)
    seeder.submit("own", notebooks["renamed"], 100, grade=False)  # a grading run waits
    queued = cli_ok(app, "similarity", "run", EXERCISE, "--no-wait", "--json")
    run_id = json.loads(queued)["run"]
    assert runs(app)[0].state == SimilarityState.QUEUED

    workers = EmbeddedWorkers(app, 1, poll_seconds=60)
    app.extensions["grader_workers"] = workers  # stopped by make_app
    workers.start()

    def done() -> SimilarityRun | None:
        run = runs(app)[0]
        return run if run.state == SimilarityState.DONE else None

    run = wait_for(done, timeout=60, what="the worker to finish the similarity run")
    assert run.id == run_id and run.worker is not None and run.worker.startswith("embedded:")
    grading_run = only_run(app, seeder.submissions["own"])
    assert grading_run["state"] == "graded"
    assert grading_run["started_at"] <= run.started_at  # grading first
    # the run compared the copy graded just before it: the worker alive, the CLI follows it
    found, stderr = run_json(app)
    assert "comparing in this process" not in stderr
    assert found[0]["students"] == ["own", "ref"] and found[0]["flagged"]


def test_the_janitor_requeues_an_expired_similarity_run_then_fails_it(app):
    with app.app_context():
        run, is_new = request_run(EXERCISE, "test")
        again, is_new_again = request_run(EXERCISE, "test")
        assert is_new and not is_new_again and again.id == run.id
        run_id = run.id

    def expire(attempts: int) -> None:
        def change(session: Any) -> None:
            session.execute(update(SimilarityRun).where(SimilarityRun.id == run_id).values(
                state=SimilarityState.RUNNING, worker="dead-worker", attempts=attempts,
                lease_expires_at=utcnow() - dt.timedelta(seconds=5)))
            session.commit()

        in_session(app, change)

    expire(1)
    swept = in_session(app, lambda s: janitor.sweep(app, dt.timedelta(seconds=60)))
    assert swept.similarity_requeued == 1
    (row,) = runs(app)
    assert row.state == SimilarityState.QUEUED and row.worker is None

    expire(app.config["MAX_ATTEMPTS"])
    in_session(app, lambda s: janitor.sweep(app, dt.timedelta(seconds=60)))
    (row,) = runs(app)
    assert row.state == SimilarityState.FAILED
    assert row.reason is not None and "stopped 3 times" in row.reason


def test_a_lost_lease_drops_the_pairs(app, seeder, notebooks, monkeypatch):
    """The fence: a worker whose run was taken over stores nothing."""
    from service.queue import similarity

    seeder.submit("ref", notebooks["reference"], 100)
    seeder.submit("own", notebooks["renamed"], 100)
    with app.app_context():
        run_id = request_run(EXERCISE, "test")[0].id
    compare = similarity_compare.compare

    def taken_over(*args: Any, **kw: Any) -> Any:  # meanwhile, another worker took it
        in_session(app, lambda s: (s.execute(update(SimilarityRun).values(
            worker="someone-else")), s.commit()))
        return compare(*args, **kw)

    monkeypatch.setattr(similarity_compare, "compare", taken_over)
    taken = similarity.take_similarity(app, run_id, "slow-worker")
    assert taken.run_id == run_id and taken.result is similarity.SimilarityTakeResult.LOST
    (row,) = runs(app)
    assert row.state == SimilarityState.RUNNING and row.worker == "someone-else"
    assert in_session(app, lambda s: list(s.scalars(select(SimilarityPair)))) == []


# --- fingerprints in the database --------------------------------------------------------------

def test_fingerprints_are_stored_bounded_and_a_bad_row_is_skipped(app, seeder, notebooks,
                                                                  labels):
    model = fingerprint(labels, seed=9)
    seeder.submit("ref", notebooks["reference"], 100, model)
    seeder.submit("own", notebooks["honest0"], 100, fingerprint(labels, seed=10))
    run_ids = [only_run(app, seeder.submissions[s])["id"] for s in ("ref", "own")]

    loaded = in_session(app, lambda s: stored.load(s, run_ids))
    assert loaded[run_ids[0]] == model and set(loaded) == set(run_ids)

    def spoil(session: Any) -> None:
        row = session.get(RunFingerprint, run_ids[1])
        row.images = [["test", 10_000], ["holdout", 99_999]]  # more images than bytes
        longer = session.get(RunFingerprint, run_ids[0])
        longer.predictions = longer.predictions + b"\x07" * 10  # cut to the counts
        session.commit()

    in_session(app, spoil)
    loaded = in_session(app, lambda s: stored.load(s, run_ids))
    assert set(loaded) == {run_ids[0]} and loaded[run_ids[0]] == model


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_celery_worker_takes_a_similarity_run(make_app, seeder, notebooks, redis_broker,
                                                celery_worker, processes):
    """``--no-wait`` with Celery: the task on the ``cpu`` queue, run by a real worker."""
    seeder.submit("ref", notebooks["reference"], 100)  # graded in this process
    seeder.submit("copy", notebooks["renamed"], 100)
    app = make_app(QUEUE="celery", CELERY_BROKER_URL=redis_broker)
    celery_worker(app, WARM_POOL="0")

    queued = json.loads(cli_ok(app, "similarity", "run", EXERCISE, "--no-wait", "--json"))

    def done() -> SimilarityRun | None:
        (run,) = runs(app)
        return run if run.state == SimilarityState.DONE else None

    run = wait_for(done, timeout=90, what="the Celery worker to finish the similarity run",
                   describe=processes.logs)
    assert run.id == queued["run"] and run.task_id
    assert run.worker is not None and run.worker.startswith("celery:")
    shown = json.loads(cli_ok(app, "similarity", "show", EXERCISE, "--json"))
    assert shown[0]["students"] == ["copy", "ref"] and shown[0]["flagged"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_run_asked_for_while_the_broker_was_down_is_sent_by_the_janitor(make_app, redis_broker):
    """The broker unreachable when the run is asked for: it stays queued, unsent; the
    janitor's next pass (the broker back) sends it, once, and not again before its time."""
    import redis

    down = make_app(QUEUE="celery", CELERY_BROKER_URL="redis://127.0.0.1:9/0")
    with down.app_context():
        run, new = request_run(EXERCISE, "cli")
        dispatch.enqueue_similarity(run.id)  # never raises
        assert new and run.state == SimilarityState.QUEUED and run.dispatched_at is None
    up = make_app(QUEUE="celery", CELERY_BROKER_URL=redis_broker)
    broker = redis.Redis.from_url(redis_broker)
    with up.app_context():
        assert janitor.sweep(up, resend_after=dt.timedelta(0)).resent == 1
        assert janitor.sweep(up, resend_after=dt.timedelta(hours=1)).resent == 0
        (sent,) = runs(up)
    assert sent.task_id and sent.dispatched_at is not None
    assert broker.llen("cpu") == 1


@pytest.mark.processes
def test_the_command_takes_up_a_run_whose_worker_died(app, seeder, notebooks, monkeypatch):
    """No worker alive, a run left running by a dead one: once its lease runs out, the
    command computes it itself while it waits."""
    from service import similarity_commands

    monkeypatch.setattr(similarity_commands.Here, "LOOK_SECONDS", 0.5)
    seeder.submit("ref", notebooks["reference"], 100)
    seeder.submit("copy", notebooks["renamed"], 100)
    with app.app_context():
        run_id = request_run(EXERCISE, "test")[0].id

    def left_running(session: Any) -> None:
        session.execute(update(SimilarityRun).values(
            state=SimilarityState.RUNNING, worker="dead-worker", attempts=1,
            lease_expires_at=utcnow() + dt.timedelta(seconds=2)))
        session.commit()

    in_session(app, left_running)
    found, stderr = run_json(app, "--timeout", "60")

    assert "is already running: following it" in stderr
    assert "comparing in this process" in stderr
    (run,) = runs(app)
    assert run.id == run_id and run.state == SimilarityState.DONE and run.attempts == 2
    assert run.worker is not None and run.worker.startswith("cli:")
    assert found[0]["students"] == ["copy", "ref"] and found[0]["run"] == run_id


def test_a_fingerprint_is_stored_bounded(app, seeder, notebooks):
    seeder.submit("ref", notebooks["reference"], 100)
    run_id = only_run(app, seeder.submissions["ref"])["id"]
    big = ModelFingerprint("f" * 80, {
        **{f"set{n}": bytes([n % 10]) * 3 for n in range(stored.MAX_SETS + 3)},
        "a" * (stored.MAX_NAME + 1): b"\x01",
        "huge": b"\x02" * (stored.MAX_IMAGES + 5)})

    def write(session: Any) -> None:
        stored.store(session, run_id, big)
        session.commit()

    in_session(app, write)
    row = in_session(app, lambda s: s.get_one(RunFingerprint, run_id))
    assert len(row.images) <= stored.MAX_SETS and len(row.weights) == 64
    assert all(len(name) <= stored.MAX_NAME and count <= stored.MAX_IMAGES
               for name, count in row.images)
    assert len(row.predictions) == sum(count for _, count in row.images)
    assert ["huge", stored.MAX_IMAGES] in row.images  # sorted first among the sets kept
    loaded = in_session(app, lambda s: stored.load(s, [run_id]))[run_id]
    assert loaded.predictions["huge"] == b"\x02" * stored.MAX_IMAGES
