"""Grade passback against the tests' own LTI 1.3 platform (``tests.lti``), on SQLite and
PostgreSQL: the service is served over HTTP on a free port (the platform fetches the tool's
``/lti/jwks`` to check every token request), registered with ``lti register``, and its launch
rows (``lti_accounts``, ``lti_line_items``: what a launch makes) are written directly, the seam
between launch and passback. Runs are graded by the real worker path (``grading.take``, the
embedded workers, a ``flask worker`` process, a Celery worker process on Redis and PostgreSQL),
the grader stubbed to answer a chosen score at once.

A graded run's score reaches the line item (every field checked as the platform received it)
with a token the tool asked for with a JWT the platform checked against ``/lti/jwks``; the
newest score wins and an unchanged one is not sent again; an adjustment and a publish send
again; the token or scores endpoint answering 503, or the platform offline, loses nothing,
delivers once when it is back and delays no grading; an expired token is replaced; a 422 is
``failed`` with the reason on the queue page, and "retry now" sends it; two senders never send
a row twice; a Celery worker's pool process sends what it grades, once, and a warm shutdown
stops its sender without hanging.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.serving import WSGIRequestHandler, make_server

from grader import Outcome
from grader.report import GradeReport, ItemResult, ItemStatus
from grader.spec import Text
from service.domain.instructors import change_password, create_instructor
from service.domain.lti_outbox import Retry, claim_due
from service.domain.lti_passback import Passback, queue_scores
from service.extensions import db
from service.lti import ags
from service.lti.ags import Sender
from service.lti.lms_settings import AGS_LINEITEM, AGS_RESULT, AGS_SCORE
from service.models import LtiAccount, LtiLineItem, LtiPlatform, LtiScore, Student, utcnow
from service.queue import grading
from service.queue.embedded import EmbeddedWorkers
from service.queue.lti_sender import PassbackSender
from tests.lti import LineItem, Platform, Role, ToolRegistration, User
from tests.lti.serving import serve_in_thread
from tests.service.service_support import (
    EXERCISE,
    STUB_CELERY_APP,
    VENV_BIN,
    Processes,
    child_pids,
    in_session,
    service_env,
    take,
    tiny_notebook,
    wait_for,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.processes]  # its workers send

PASSWORD = "a-long-enough-password"
#: Retries of the tests: a second, not half a minute.
QUICK = Retry(first=dt.timedelta(seconds=0.3), longest=dt.timedelta(seconds=1), jitter=0.0)
_markers = iter(range(10**6))


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


@dataclass
class World:
    """The service on ``base``, the platform ``lms`` with the exercise's line item ``item``,
    and the LMS users (``sub``) of the roster's students."""

    app: Flask
    base: str
    lms: Platform
    item: LineItem
    subs: dict[str, str]
    tokens: dict[str, str]
    senders: list[PassbackSender] = field(default_factory=list)

    def sender(self, **options: Any) -> PassbackSender:
        """A sender thread as a grading process runs, quick to poll and to retry."""
        options.setdefault("poll_seconds", 0.2)
        options.setdefault("retry", QUICK)
        sender = PassbackSender(self.app, **options).start()
        self.senders.append(sender)
        return sender

    def submit(self, student: str = "alice") -> int:
        response = self.app.test_client().post(
            "/api/submissions", headers={"Authorization": f"Bearer {self.tokens[student]}"},
            data={"exercise": EXERCISE, "notebook": (_notebook(), "student.ipynb")},
            content_type="multipart/form-data")
        assert response.status_code == 202, response.get_json()
        return int(response.get_json()["id"])

    def grade(self, student: str = "alice") -> tuple[int, float]:
        """Submit and grade one notebook by ``grading.take``: the submission and the seconds
        the take lasted."""
        submission = self.submit(student)
        began = time.monotonic()
        taken = take(self.app, None, "test-worker")
        assert taken.run_id is not None
        return submission, time.monotonic() - began

    def received(self, student: str) -> list[Any]:
        return [r for r in self.lms.gradebook.received if r.user_id == self.subs[student]]

    def cli(self, *args: str) -> str:
        result = self.app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, result.output
        return result.output


def _notebook() -> Any:
    import io

    return io.BytesIO(tiny_notebook(next(_markers)))


@pytest.fixture
def grader(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The stub grader's answer: ``score`` points (on item conv1), or an error (``fail``)."""
    answer: dict[str, Any] = {"score": 50.0, "fail": False}

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> GradeReport:
        if answer["fail"]:
            raise RuntimeError("the stub grader was told to fail")
        item = ItemResult("conv1", Text("conv1", "conv1"), answer["score"], 100.0,
                          ItemStatus.CORRECT)
        return GradeReport(exercise.id, Outcome.GRADED, [item], exercise.max_score)

    monkeypatch.setattr(grading, "grade_notebook", grade)
    return answer


def link(app: Flask, lms: Platform, item: LineItem, accounts: dict[str, str],
         lineitem_url: bool = True) -> None:
    """What a launch of each student from the line item's resource link leaves: the line item
    row and the students' accounts."""

    def write(session: Session) -> None:
        platform = session.execute(select(LtiPlatform)).scalar_one()
        session.add(LtiLineItem(
            platform_id=platform.id, deployment_id="1", context_id=lms.context.id,
            resource_link_id=item.resource_link_id, exercise=EXERCISE,
            lineitem_url=item.url if lineitem_url else None, lineitems_url=lms.lineitems_url,
            scopes=[AGS_LINEITEM, AGS_RESULT, AGS_SCORE]))
        for student_id, sub in accounts.items():
            student = session.execute(select(Student).where(
                Student.student_id == student_id)).scalar_one()
            session.add(LtiAccount(platform_id=platform.id, sub=sub, student_pk=student.id))
        session.commit()

    in_session(app, write)


@pytest.fixture
def make_world(make_app: Callable[..., Flask], tokens: dict[str, str],
               grader: dict[str, Any]) -> Iterator[Callable[..., World]]:
    """``make_world(**config)``: the world, its app made with ``config`` (CSRF off); all
    stopped afterwards, and the platform's list of protocol errors found empty."""
    made: list[tuple[World, Callable[[], None]]] = []

    def build(**config: Any) -> World:
        app = make_app(WTF_CSRF_ENABLED=False, **config)
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
        thread = serve_in_thread(server, name="lti-passback-service")
        base = f"http://127.0.0.1:{server.server_port}"
        app.config["PUBLIC_URL"] = base
        lms = Platform()
        lms.start()
        world = World(app, base, lms, None, {}, tokens)  # type: ignore[arg-type]

        def stop() -> None:
            for sender in world.senders:
                sender.stop()
            lms.stop()
            server.shutdown()
            thread.join(timeout=10)

        made.append((world, stop))
        lms.register_tool(ToolRegistration.at(base))
        world.cli("lti", "register", *lms.registration_options())
        world.item = lms.add_line_item("CNN", 100, resource_link="rl-cnn")
        world.subs = {"alice": "lms-alice", "bob": "lms-bob"}
        for sub in world.subs.values():
            lms.enrol(User(sub), [Role.LEARNER])
        link(app, lms, world.item, world.subs)
        return world

    try:
        yield build
    finally:
        for _, stop in made:
            stop()
    for world, _ in made:
        assert not world.lms.errors, world.lms.errors


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


def score_rows(app: Flask) -> list[dict[str, Any]]:
    def read(session: Session) -> list[dict[str, Any]]:
        return [{"id": r.id, "sub": r.account.sub, "state": r.state, "attempts": r.attempts,
                 "score_given": r.score_given, "grading_progress": r.grading_progress,
                 "last_status": r.last_status, "last_error": r.last_error,
                 "scored_at": r.scored_at}
                for r in session.execute(select(LtiScore).order_by(LtiScore.id)).scalars()]

    return in_session(app, read)


def row_of(app: Flask, sub: str) -> dict[str, Any]:
    (row,) = [r for r in score_rows(app) if r["sub"] == sub]
    return row


# --- the score at the line item ---------------------------------------------------------------


def test_a_graded_run_reaches_the_line_item_through_the_embedded_workers(world: World):
    workers = EmbeddedWorkers(world.app, 1, poll_seconds=0.2)
    world.app.extensions["grader_workers"] = workers  # stopped by make_app
    workers.start()
    submission = world.submit("alice")

    result = world.lms.wait_for_result(world.item, "lms-alice", timeout=60, given=50.0)

    body = result.body
    assert body["scoreGiven"] == 50.0 and body["scoreMaximum"] == 100.0
    assert body["userId"] == "lms-alice"
    assert body["gradingProgress"] == "FullyGraded"
    assert body["activityProgress"] == "Submitted"  # no due date: the student may go on
    assert result.timestamp.utcoffset() == dt.timedelta(0)
    assert abs((result.timestamp - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    assert f"{world.base}/submissions/{submission}" in body["comment"]
    # the token was asked for with a JWT signed by a key of the tool's /lti/jwks
    (token,) = world.lms.requests_to("token")
    assert token.status == 200
    assertion = token.body["client_assertion"]  # type: ignore[index]
    published = requests.get(f"{world.base}/lti/jwks", timeout=10).json()["keys"]
    kid = jwt.get_unverified_header(assertion)["kid"]
    key = next(k for k in published if k["kid"] == kid)
    claims = jwt.decode(assertion, jwt.PyJWK(key).key, algorithms=["RS256"],
                        audience=world.lms.token_url)
    assert claims["iss"] == claims["sub"] == "grader"
    # the sender notes the platform's answer after reading it: the LMS may hold the score first
    row = wait_for(lambda: (r := row_of(world.app, "lms-alice"))["state"] == "sent" and r, 30,
                   "the outbox row marked sent")
    assert (row["state"], row["last_status"], row["attempts"]) == ("sent", 200, 1)


def test_a_flask_worker_process_grades_and_sends(world: World, processes: Processes):
    """``flask worker`` beside the web (its grader a stub answering 0 points at once): the
    worker process queues the score and its own sender delivers it."""
    argv = [str(VENV_BIN / "python"), "-m", "tests.service.stub_worker", "--app", "service",
            "worker", "--poll-seconds", "0.2"]
    processes.start("worker", argv, service_env(world.app, PUBLIC_URL=world.base,
                                                WARM_POOL="0"))
    submission = world.submit("alice")
    result = wait_for(lambda: world.lms.gradebook.result(world.item.url, "lms-alice"), 60,
                      "the worker process's score at the line item", describe=processes.logs)
    assert result.body["scoreGiven"] == 0.0 and result.body["gradingProgress"] == "FullyGraded"
    assert f"/submissions/{submission}" in result.body["comment"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_celery_worker_process_grades_and_sends_once(make_world: Callable[..., World],
                                                       redis_broker: str,
                                                       celery_worker: Callable[..., Any],
                                                       processes: Processes):
    """A real Celery worker on Redis (prefork, its grader a stub answering 0 points at once):
    its pool process grades the run and its own sender delivers the score, once; this test's
    process runs no sender. Stopped by SIGTERM, the worker exits at once and cleanly (the
    pool process's sender is stopped, not waited for)."""
    world = make_world(QUEUE="celery", CELERY_BROKER_URL=redis_broker, LEASE_SECONDS=6)
    worker = celery_worker(world.app, STUB_CELERY_APP, PUBLIC_URL=world.base, WARM_POOL="0")
    submission = world.submit("alice")

    result = wait_for(lambda: world.lms.gradebook.result(world.item.url, "lms-alice"), 60,
                      "the Celery worker's score at the line item", describe=processes.logs)
    body = result.body
    assert (body["scoreGiven"], body["userId"], body["gradingProgress"]) == (
        0.0, "lms-alice", "FullyGraded")
    assert f"{world.base}/submissions/{submission}" in body["comment"]
    time.sleep(1.5)  # a second send, if there were one, would be in by now
    assert len(world.received("alice")) == 1 and world.received("bob") == []
    row = row_of(world.app, "lms-alice")
    assert (row["state"], row["last_status"], row["attempts"]) == ("sent", 200, 1)

    (pool_process,) = child_pids(worker.pid)
    began = time.monotonic()
    worker.send_signal(signal.SIGTERM)  # a warm shutdown, as ``docker stop`` asks
    assert worker.wait(timeout=30) == 0, processes.logs()
    assert time.monotonic() - began < 10, processes.logs()  # about 4 s; a stuck sender: 30
    assert not Path(f"/proc/{pool_process}").exists(), processes.logs()
    assert "Traceback" not in processes.log("celery-1"), processes.logs()


def retry_now(session: Session) -> None:
    """Every pending score due at once."""
    session.execute(update(LtiScore).values(next_attempt_at=utcnow()))
    session.commit()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_celery_worker_stopped_mid_send_exits_and_the_next_one_sends_once(
        make_world: Callable[..., World], redis_broker: str, celery_worker: Callable[..., Any],
        processes: Processes):
    """SIGTERM while the pool process's sender waits on a platform that does not answer: the
    worker exits once that call times out (never later), the score is left pending, and the
    next worker sends it, once."""
    world = make_world(QUEUE="celery", CELERY_BROKER_URL=redis_broker, LEASE_SECONDS=6)
    world.lms.set_outage("scores", delay=3 * ags.TIMEOUT)  # slower than the sender waits
    first = celery_worker(world.app, STUB_CELERY_APP, PUBLIC_URL=world.base, WARM_POOL="0")
    world.submit("alice")
    wait_for(lambda: world.lms.requests_to("token"), 60, "the sender's token request",
             describe=processes.logs)
    time.sleep(0.5)  # the score is on its way, and hangs

    began = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=3 * ags.TIMEOUT) == 0, processes.logs()
    assert time.monotonic() - began < ags.TIMEOUT + 5, processes.logs()
    row = row_of(world.app, "lms-alice")
    assert (row["state"], row["attempts"], row["last_status"]) == ("pending", 1, None), row
    assert "Timeout" in (row["last_error"] or ""), row  # the sender ended its send, not cut off
    assert world.received("alice") == []

    world.lms.clear_outage()
    in_session(world.app, retry_now)  # its retry due now, not in a minute
    celery_worker(world.app, STUB_CELERY_APP, PUBLIC_URL=world.base, WARM_POOL="0")
    world.lms.wait_for_result(world.item, "lms-alice", given=0.0, timeout=60)
    time.sleep(1.5)
    assert len(world.received("alice")) == 1
    row = row_of(world.app, "lms-alice")
    assert (row["state"], row["attempts"], row["last_status"]) == ("sent", 2, 200), row


def test_newest_wins_unchanged_is_not_sent_again_and_an_adjustment_sends(world: World,
                                                                         grader: dict):
    world.sender()
    world.grade("alice")
    world.lms.wait_for_result(world.item, "lms-alice", given=50.0)

    grader["score"] = 80.0
    world.grade("alice")
    world.lms.wait_for_result(world.item, "lms-alice", given=80.0)

    grader["score"] = 30.0  # best counts: still 80, nothing new to say
    world.grade("alice")
    time.sleep(1.5)
    assert [r.score_given for r in world.received("alice")] == [50.0, 80.0]

    out = world.cli("adjust", "alice", EXERCISE, "--points", "5", "--comment", "bonus")
    assert "1 scores queued for the LMS" in out
    world.lms.wait_for_result(world.item, "lms-alice", given=85.0)
    assert [r.score_given for r in world.received("alice")] == [50.0, 80.0, 85.0]
    assert all(r.applied for r in world.received("alice"))  # each newer than the last
    assert world.received("bob") == []  # bob handed nothing in: nothing sent


def test_a_newer_score_replaces_a_pending_one_and_starts_its_attempts_anew(world: World):
    world.lms.set_outage("scores")
    world.sender()
    world.grade("alice")
    wait_for(lambda: row_of(world.app, "lms-alice")["attempts"] >= 2, 20, "two failed sends")
    first = row_of(world.app, "lms-alice")
    assert (first["state"], first["last_status"]) == ("pending", 503)

    passback = Passback(max_score=100.0, public_url=world.base)

    def requeue(score: float) -> int:
        def work(session: Session) -> int:
            pk = session.execute(select(Student.id).where(Student.student_id == "alice")
                                 ).scalar_one()
            session.execute(update(LtiScore).values(score_given=score))  # as if it changed
            session.commit()
            return queue_scores(session, pk, EXERCISE, passback)
        return in_session(world.app, work)

    assert requeue(12.0) == 1
    replaced = row_of(world.app, "lms-alice")
    assert replaced["score_given"] == 50.0 and replaced["attempts"] == 0
    assert replaced["scored_at"] > first["scored_at"] and replaced["last_error"] is None
    world.lms.clear_outage()
    world.lms.wait_for_result(world.item, "lms-alice", given=50.0)
    wait_for(lambda: row_of(world.app, "lms-alice")["state"] == "sent", 10, "sent")
    assert queue_scores_again(world, passback) == 0  # sent and unchanged: not again


def queue_scores_again(world: World, passback: Passback) -> int:
    def work(session: Session) -> int:
        pk = session.execute(select(Student.id).where(Student.student_id == "alice")
                             ).scalar_one()
        return queue_scores(session, pk, EXERCISE, passback)
    return in_session(world.app, work)


def test_a_failed_run_says_failed_without_a_score(world: World, grader: dict):
    world.sender()
    grader["fail"] = True
    world.grade("alice")
    result = world.lms.wait_for_result(world.item, "lms-alice")
    assert result.body["gradingProgress"] == "Failed" and "scoreGiven" not in result.body


def test_an_exam_sends_pending_manual_until_published(world: World):
    world.sender()
    world.cli("schedule", "set", EXERCISE, "--release", "exam")
    world.grade("alice")
    held = world.lms.wait_for_result(world.item, "lms-alice")
    assert held.body["gradingProgress"] == "PendingManual" and "scoreGiven" not in held.body
    assert "publish" in held.body["comment"]

    world.cli("schedule", "publish", EXERCISE)
    shown = world.lms.wait_for_result(world.item, "lms-alice", given=50.0)
    assert shown.body["gradingProgress"] == "FullyGraded"


def test_a_score_released_by_date_is_sent_when_the_date_passes(world: World):
    due = (utcnow() + dt.timedelta(seconds=4)).replace(microsecond=0)
    world.cli("schedule", "set", EXERCISE, "--due", due.isoformat() + "+00:00",
              "--release", "score=after_due")
    world.sender(sweep_seconds=0.3)
    world.grade("alice")  # on time
    held = world.lms.wait_for_result(world.item, "lms-alice")
    assert held.body["gradingProgress"] == "Pending" and "scoreGiven" not in held.body
    assert held.body["activityProgress"] == "Submitted"
    assert f"{due:%Y-%m-%d %H:%M}" in held.body["comment"]

    shown = world.lms.wait_for_result(world.item, "lms-alice", given=50.0, timeout=30)
    assert shown.body["gradingProgress"] == "FullyGraded"
    assert shown.body["activityProgress"] == "Completed"  # no late window: closed at due


def test_no_line_item_url_finds_or_makes_one_by_resource_id(make_app, tokens, grader):
    """A link launched without a line item (only the container): the score goes to the line
    item whose resourceId is the exercise, made at the first send, and its URL is kept."""
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    serve_in_thread(server, name="lti-passback-service")
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with Platform() as lms:
            lms.register_tool(ToolRegistration.at(base))
            world = World(app, base, lms, LineItem("", "", 1, resource_link_id="rl-x"),
                          {"alice": "lms-alice"}, tokens)
            world.cli("lti", "register", *lms.registration_options())
            lms.enrol(User("lms-alice"), [Role.LEARNER])
            link(app, lms, world.item, world.subs, lineitem_url=False)
            world.sender()
            world.grade("alice")
            made = wait_for(lambda: list(lms.gradebook.line_items.values()), 20, "a line item")
            assert made[0].resource_id == EXERCISE and made[0].score_maximum == 100.0
            lms.wait_for_result(made[0].url, "lms-alice", given=50.0)
            # the sender records the platform's answer (and the URL) after the reply, which the
            # platform has stored before it sends: wait for that commit, not just the score
            kept = wait_for(lambda: in_session(app, lambda s: s.execute(
                select(LtiLineItem.lineitem_url)).scalar_one()), 10, "the line item's URL kept")
            assert kept == made[0].url
            for sender in world.senders:
                sender.stop()
    finally:
        server.shutdown()


# --- the platform down, slow, or refusing -------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["token", "scores"])
def test_an_endpoint_down_loses_nothing_delays_nothing_and_delivers_once(world: World,
                                                                          endpoint: str):
    world.sender()
    world.lms.set_outage(endpoint, status=503, delay=2.0)  # down, and slow to say so
    _, took = world.grade("alice")
    seconds = [took] + [world.grade("bob")[1] for _ in range(2)]
    assert max(seconds) < 2.0, seconds  # grading never waits for the platform
    wait_for(lambda: row_of(world.app, "lms-alice")["attempts"] >= 2, 30, "retries")
    row = row_of(world.app, "lms-alice")
    assert (row["state"], row["last_status"]) == ("pending", 503), row
    assert "503" in row["last_error"]

    world.lms.go_offline()  # and then not even reachable
    wait_for(lambda: row_of(world.app, "lms-alice")["last_status"] is None, 30,
             "an attempt that reached nobody")
    assert row_of(world.app, "lms-alice")["state"] == "pending"
    assert world.received("alice") == []

    world.lms.clear_outage()
    world.lms.go_online()
    world.lms.wait_for_result(world.item, "lms-alice", given=50.0)
    world.lms.wait_for_result(world.item, "lms-bob", given=50.0)
    time.sleep(1.5)
    assert len(world.received("alice")) == 1 and len(world.received("bob")) == 1
    assert {r["state"] for r in score_rows(world.app)} == {"sent"}


def test_once_the_platform_takes_a_score_the_others_waiting_are_sent_at_once(world: World):
    world.lms.set_outage("scores")
    world.sender(retry=Retry(first=dt.timedelta(minutes=10), jitter=0.0))
    world.grade("alice")
    world.grade("bob")
    wait_for(lambda: all(r["attempts"] == 1 and r["last_status"] == 503
                         for r in score_rows(world.app)) and len(score_rows(world.app)) == 2,
             20, "both scores refused once")
    world.lms.clear_outage()

    def due_now(session: Session) -> None:  # alice's wait is over; bob's has ten minutes left
        alice = row_of(world.app, "lms-alice")["id"]
        session.execute(update(LtiScore).where(LtiScore.id == alice)
                        .values(next_attempt_at=utcnow()))
        session.commit()

    in_session(world.app, due_now)
    world.lms.wait_for_result(world.item, "lms-alice", given=50.0, timeout=10)
    world.lms.wait_for_result(world.item, "lms-bob", given=50.0, timeout=10)


def test_an_expired_token_is_replaced(world: World, grader: dict):
    world.sender()
    world.grade("alice")
    world.lms.wait_for_result(world.item, "lms-alice", given=50.0)
    world.lms.tokens.expire_all()

    grader["score"] = 70.0
    world.grade("alice")
    world.lms.wait_for_result(world.item, "lms-alice", given=70.0)
    assert [r.status for r in world.lms.requests_to("scores")] == [200, 401, 200]
    assert [r.status for r in world.lms.requests_to("token")] == [200, 200]


def test_a_refused_score_is_failed_with_the_reason_on_the_queue_page(world: World):
    world.lms.gradebook.members.pop("lms-bob")  # bob left the course in the LMS
    world.sender()
    world.grade("bob")
    wait_for(lambda: row_of(world.app, "lms-bob")["state"] == "failed", 20, "failed")
    row = row_of(world.app, "lms-bob")
    assert row["last_status"] == 422 and "not a member" in row["last_error"]
    assert row["attempts"] == 1  # a 422 is not tried again by itself

    with world.app.app_context():
        instructor, once = create_instructor("teacher")
        change_password(instructor, once, PASSWORD, PASSWORD)
    staff = world.app.test_client()
    staff.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert staff.post("/dashboard/login", data={"username": "teacher",
                                                "password": PASSWORD}).status_code == 303
    page = staff.get("/dashboard/queue").get_data(as_text=True)
    assert "Grades sent to the LMS" in page and "not a member" in page and "Retry now" in page

    world.lms.enrol(User("lms-bob"), [Role.LEARNER])  # the cause fixed
    again = staff.post("/dashboard/queue/lti-retry", data={"score": str(row["id"])})
    assert again.status_code == 303
    world.lms.wait_for_result(world.item, "lms-bob", given=50.0)
    wait_for(lambda: row_of(world.app, "lms-bob")["state"] == "sent", 10, "sent")
    metrics = staff.get("/metrics").get_data(as_text=True)
    assert 'grader_lti_scores{state="sent"} 1.0' in metrics
    assert 'grader_lti_scores_sent_total{outcome="failed"}' in metrics


# --- two senders --------------------------------------------------------------------------------


def many_pending(world: World, count: int) -> list[str]:
    """``count`` students, each with an account and a pending score: their subs."""
    subs = [f"lms-many-{n}" for n in range(count)]

    def write(session: Session) -> None:
        item = session.execute(select(LtiLineItem)).scalar_one()
        for n, sub in enumerate(subs):
            student = Student(student_id=f"many{n}", name=f"Many {n}",
                              token_hash=f"{n:064x}")
            account = LtiAccount(platform_id=item.platform_id, sub=sub, student=student)
            session.add(LtiScore(line_item_id=item.id, account=account, score_given=float(n),
                                 score_maximum=100.0, activity_progress="Submitted",
                                 grading_progress="FullyGraded", scored_at=utcnow(),
                                 next_attempt_at=utcnow()))
        session.commit()

    for sub in subs:
        world.lms.enrol(User(sub), [Role.LEARNER])
    in_session(world.app, write)
    return subs


def test_racing_claims_take_each_row_once(world: World):
    many_pending(world, 24)
    with world.app.app_context():
        engine = db.engine
    barrier = threading.Barrier(3)
    taken: list[list[int]] = [[], [], []]

    def claim(k: int) -> None:
        with Session(engine) as session:
            barrier.wait(timeout=10)
            while batch := claim_due(session, limit=3):
                taken[k] += [c.id for c in batch]

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = [row for part in taken for row in part]
    assert len(everything) == len(set(everything)) == 24, taken


def test_two_senders_never_send_a_row_twice(world: World):
    subs = many_pending(world, 30)
    world.lms.set_outage("scores", status=0, delay=0.05)  # slow enough to overlap
    counts = [0, 0]

    def counting(k: int) -> Sender:
        class Counting(Sender):
            def send(self, session: Any, claimed: Any) -> Any:
                counts[k] += 1
                return super().send(session, claimed)
        return Counting()

    world.sender(sender=counting(0))
    world.sender(sender=counting(1))
    for sub in subs:
        world.lms.wait_for_result(world.item, sub, timeout=60)
    time.sleep(1.0)
    per_user: dict[str, int] = {}
    for received in world.lms.gradebook.received:
        per_user[received.user_id] = per_user.get(received.user_id, 0) + 1
    assert per_user == {sub: 1 for sub in subs}
    rows = score_rows(world.app)
    assert {(r["state"], r["attempts"]) for r in rows} == {("sent", 1)}
    assert sum(counts) == 30 and all(counts), counts  # both sent, none twice


def test_an_error_while_queueing_never_fails_the_grading_and_the_sweep_queues(
        world: World, monkeypatch: pytest.MonkeyPatch):
    from service.lti import passback

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("the outbox is unreachable")

    with monkeypatch.context() as patched:
        patched.setattr(passback, "queue_scores", broken)
        submission = world.submit("alice")
        taken = take(world.app, None, "test-worker")
    assert taken.result == "graded", taken
    assert score_rows(world.app) == []

    sender = world.sender(sweep_seconds=0.0)  # sweeps at its first pass
    world.lms.wait_for_result(world.item, "lms-alice", given=50.0)
    assert f"/submissions/{submission}" in world.received("alice")[0].body["comment"]
    assert sender.sweep() == 0  # queued once; unchanged since
