"""The database as the job queue (``service.queue.claims``) on SQLite and PostgreSQL: claims race in
real threads with their own sessions, leases expire by the clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.orm import Session

from service.extensions import db
from service.models import GradingRun, utcnow
from service.queue import claims as jobs
from tests.service.service_support import add_queued_runs, in_session, run_rows, wait_for


def engine_of(app):
    with app.app_context():
        return db.engine


def race(app, contenders: list[Callable[[Session], object]]) -> list[object]:
    """Run each contender in its own thread with its own session, released together."""
    engine = engine_of(app)
    barrier = threading.Barrier(len(contenders))
    results: list[object] = [None] * len(contenders)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            with Session(engine) as session:
                barrier.wait(timeout=10)
                results[k] = contenders[k](session)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(contenders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def expire_lease(app, run_id: int) -> None:
    """Move a lease into the past, as if its worker had stopped renewing it long ago."""

    def move(session: Session) -> None:
        session.execute(update(GradingRun).where(GradingRun.id == run_id)
                        .values(lease_expires_at=utcnow().replace(year=2000)))
        session.commit()

    in_session(app, move)


def test_two_claimers_racing_for_one_run_exactly_one_wins(app):
    for run_id in add_queued_runs(app, 8):
        won = race(app, [lambda s, n=n, r=run_id: jobs.claim(s, r, f"w{n}", 60)
                         for n in range(2)])

        assert sorted(won) == [False, True], (run_id, won)
        (row,) = [r for r in run_rows(app) if r["id"] == run_id]
        assert row["state"] == "running" and row["attempts"] == 1
        assert row["worker"] == f"w{won.index(True)}"


def test_workers_draining_the_queue_take_each_run_once(app):
    run_ids = add_queued_runs(app, 12)

    def drain(name: str) -> Callable[[Session], list[int]]:
        def take(session: Session) -> list[int]:
            taken = []
            while (run_id := jobs.claim_next(session, name, 60)) is not None:
                taken.append(run_id)
            return taken
        return take

    taken = race(app, [drain(f"w{n}") for n in range(3)])

    everything = [run_id for claimed in taken for run_id in claimed]
    assert sorted(everything) == run_ids  # none lost, none twice
    rows = {r["id"]: r for r in run_rows(app)}
    for n, claimed in enumerate(taken):
        for run_id in claimed:
            assert rows[run_id]["worker"] == f"w{n}" and rows[run_id]["attempts"] == 1


def test_a_live_lease_is_left_alone(app):
    (run_id,) = add_queued_runs(app, 1)
    in_session(app, lambda s: jobs.claim(s, run_id, "alive", 60))

    assert in_session(app, lambda s: jobs.requeue_expired(s, max_attempts=3)) == 0
    assert in_session(app, lambda s: jobs.claim(s, run_id, "intruder", 60)) is False
    assert in_session(app, lambda s: jobs.renew(s, run_id, "alive", 60)) is True
    assert run_rows(app)[0]["worker"] == "alive"


def test_an_expired_lease_is_requeued_then_failed_after_max_attempts(app):
    (run_id,) = add_queued_runs(app, 1)

    # Attempt 1 with a real one-second lease that runs out on the clock.
    assert in_session(app, lambda s: jobs.claim_next(s, "w1", 1)) == run_id
    wait_for(lambda: in_session(app, lambda s: jobs.requeue_expired(s, 3)), timeout=5,
             what="the one-second lease to expire", interval=0.25)
    row = run_rows(app)[0]
    assert (row["state"], row["worker"], row["attempts"]) == ("queued", None, 1)
    assert row["lease_expires_at"] is None

    # Attempts 2 and 3: claimable again; the third expiry fails the run.
    for attempt in (2, 3):
        assert in_session(app, lambda s, a=attempt: jobs.claim_next(s, f"w{a}", 60)) == run_id
        assert run_rows(app)[0]["attempts"] == attempt
        expire_lease(app, run_id)
        assert in_session(app, lambda s: jobs.requeue_expired(s, 3)) == 1

    row = run_rows(app)[0]
    assert row["state"] == "failed" and row["finished_at"] is not None
    assert "stopped 3 times" in row["reason"]
    assert in_session(app, lambda s: jobs.claim_next(s, "w4", 60)) is None
    assert in_session(app, lambda s: jobs.claim(s, run_id, "w4", 60)) is False


def test_a_worker_that_lost_its_lease_no_longer_owns_the_run(app):
    (run_id,) = add_queued_runs(app, 1)
    in_session(app, lambda s: jobs.claim(s, run_id, "old", 60))
    expire_lease(app, run_id)

    # Celery's path: a claim of the given run takes over an expired lease directly.
    assert in_session(app, lambda s: jobs.claim(s, run_id, "new", 60)) is True

    assert in_session(app, lambda s: jobs.owned(s, run_id, "old")) is False
    assert in_session(app, lambda s: jobs.renew(s, run_id, "old", 60)) is False
    assert in_session(app, lambda s: jobs.owned(s, run_id, "new")) is True
    row = run_rows(app)[0]
    assert (row["worker"], row["attempts"], row["state"]) == ("new", 2, "running")


def test_queue_position_counts_the_queued_runs_ahead(app):
    first, second, third = add_queued_runs(app, 3)

    def positions() -> list[int | None]:
        return in_session(app, lambda s: [jobs.queue_position(s, r)
                                          for r in (first, second, third)])

    assert positions() == [1, 2, 3]
    in_session(app, lambda s: jobs.claim_next(s, "w", 60))
    assert positions() == [None, 1, 2]
    in_session(app, lambda s: jobs.claim(s, third, "w", 60))
    assert positions() == [None, 1, None]
    assert in_session(app, lambda s: jobs.queue_position(s, 999)) is None


def test_celery_claim_does_not_outlive_max_attempts(app, monkeypatch):
    """A message redelivered after its worker died claims the expired run again; once the run
    used up its attempts it must be failed, not graded a fourth time."""
    from service.queue import celery_worker as tasks

    (run_id,) = add_queued_runs(app, 1)
    for attempt in (1, 2, 3):
        in_session(app, lambda s, a=attempt: jobs.claim(s, run_id, f"celery:dead:{a}", 60))
        expire_lease(app, run_id)
    from service.queue.host import GradingHost

    # the grading host the worker process would open
    with GradingHost(app, spare_renderer=False) as host:
        monkeypatch.setattr(tasks, "_child", tasks.CeleryChild(app, host))
        started = time.monotonic()
        outcome = tasks.grade.apply(args=[run_id], task_id="redelivered").get(timeout=30)

    row = run_rows(app)[0]
    assert (row["state"], row["attempts"]) == ("failed", 3), (outcome, row)
    assert "stopped 3 times" in row["reason"]
    assert outcome == "skipped (failed)"
    assert time.monotonic() - started < 10
