"""Taking one run through the queue: claim it, keep its lease, grade it, store the result under
the fence. :func:`take` is the whole job and the only one: the embedded threads
(``service.queue.embedded``) and the Celery task (``service.queue.celery_worker``) both call it and
nothing else, so both carriers give the same guarantees. It uses ``grader``'s public API only.

Everything a run does after it is claimed, grading, rendering the executed notebook, storing,
happens while its lease is renewed: work done after the lease is let go can outlive it, and a
run whose lease ran out is requeued and its result dropped (a notebook of 60,000 empty cells
took minutes to render and was graded three times so). The rendering is also bounded
(``service.notebook_html.render_bounded``): over its caps the report is stored without
the HTML, with a note saying why. It starts as soon as the notebook has run, beside the clean
room's measurements (``service.queue.rendering``), and the store waits for it.

The stored report's ``timings`` gain the service's phases: ``queue_wait`` (the run's insert to
its claim), ``render`` (the rendering's own seconds), ``render_wait`` (how long the store waited
for it: 0 when it was done before the grading) and ``store`` (the store's own work up to the
commit, the wait left out). The trained model's fingerprint (``report.fingerprint``, when the
clean room measured one) is stored in the same fenced transaction
(``service.domain.fingerprints``), for similarity runs only.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from grader import GradeReport, Outcome, grade_notebook
from service.blobs import BlobMissing
from service.domain import fingerprints
from service.extensions import DbSession
from service.logs import run_context
from service.lti.passback import queue_after_run
from service.metrics import kit_started, run_taken
from service.models import GradingRun, ItemScore, utcnow
from service.queue import claims, gpu_leases
from service.queue.host import GradingHost, Seat
from service.queue.leases import LeaseKeeper
from service.queue.progress import ProgressWriter
from service.queue.rendering import RenderAhead
from service.states import GpuNeed, RunState

log = logging.getLogger(__name__)

class TakeResult(StrEnum):
    """What :func:`take` says of the run it was asked for or claimed: its state when the worker
    let it go (a :class:`~service.states.RunState`'s value), or why this worker did not grade
    it. The values are the strings the logs, ``/metrics`` (``WORKER_RESULTS``) and the Celery
    task's result have always shown."""

    QUEUED = RunState.QUEUED.value
    RUNNING = RunState.RUNNING.value
    GRADED = RunState.GRADED.value
    FAILED = RunState.FAILED.value
    #: The run was taken over (its lease ran out) and this worker's result dropped.
    LOST = "lost"
    #: There is no such run.
    MISSING = "missing"
    #: The run needs a GPU and this worker has none free (a Celery message asks again on the
    #: ``gpu`` queue).
    WAIT_GPU = "waiting for a GPU"

    @classmethod
    def of(cls, state: RunState) -> TakeResult:
        return cls(state.value)


@dataclass(frozen=True)
class Taken:
    """What :func:`take` did."""

    #: The run this worker claimed and graded; ``None`` when it claimed nothing.
    run_id: int | None
    #: Claimed: the run's state when the worker let it go (``graded``, ``failed``, ``queued`` to
    #: be retried), or ``lost``. Not claimed: the asked-for run's state, ``missing``,
    #: ``waiting for a GPU``, or ``None`` when no run was asked for and none was queued.
    result: TakeResult | None
    #: Not claimed because another worker holds the run's lease until then (it may have died:
    #: a Celery message asks again after that).
    leased_until: dt.datetime | None = None
    #: The GPU the run was graded on, if any.
    device: str | None = None


def take(host: GradingHost, run_id: int | None, worker: str,
         on_claim: Callable[[int], None] | None = None) -> Taken:
    """Claim ``run_id`` (a Celery message names it) or the oldest queued run (``None``: the
    embedded workers poll), grade it as ``worker`` on this process's ``host`` and store the
    result if ``worker`` still owns the run. Expired leases are requeued (or failed) first, so
    that a run which used up its attempts is failed rather than claimed once more. ``on_claim``
    hears the run's id once it is ours (the heartbeat shows it). Database errors propagate: the
    caller logs them, and a run claimed meanwhile is queued again once its lease runs out.

    A worker of a host with GPUs (``GPUS``) first leases a free one, then claims any run; one
    without claims only the runs that do without (``claims.takeable_needs``). A run that asks
    for none is graded without the device, which is given back at once; the others are graded
    on it, and it is given back when the run ends (dirty if its memory is not free then:
    ``host.GradingHost.seat``). Once a run is graded or failed, its student's score is queued
    for the LMS (``service.lti.passback.queue_after_run``: never raises, never waits for the
    LMS)."""
    settings = host.settings
    device: str | None = None
    with host.session() as session:
        claims.requeue_expired(session, settings.max_attempts)
        device = host.lend_gpu(session, worker)
        needs = claims.takeable_needs(device is not None)
        if run_id is None:
            claimed = claims.claim_next(session, worker, settings.lease_seconds, needs)
        elif claims.claim(session, run_id, worker, settings.lease_seconds, needs):
            claimed = run_id
        else:
            claimed = None
        asked = claimed if claimed is not None else run_id
        run = session.get(GradingRun, asked) if asked is not None else None
        if device is not None and (claimed is None or run is None or not run.gpu.wants_gpu):
            gpu_leases.release(session, settings.gpu_host, device, worker)
            device = None
        elif device is not None and claimed is not None:
            gpu_leases.attach(session, settings.gpu_host, device, worker, claimed)
        if claimed is None:
            return _not_taken(run_id, run)
    if on_claim is not None:
        on_claim(claimed)
    with run_context(claimed):  # every log record of this run carries its id
        started = time.monotonic()
        result = grade_run(host, claimed, worker, device)
        run_taken(result, time.monotonic() - started)
        if result in (TakeResult.GRADED, TakeResult.FAILED):  # committed: the LMS may hear of it
            queue_after_run(host.passback, claimed)
    return Taken(claimed, result, device=device)


def _not_taken(run_id: int | None, run: GradingRun | None) -> Taken:
    """What :func:`take` says when it claimed nothing (``run_id`` asked for, ``run`` its row)."""
    if run_id is None:
        return Taken(None, None)
    if run is None:
        return Taken(None, TakeResult.MISSING)
    if run.state == RunState.QUEUED and run.gpu is GpuNeed.REQUIRED:
        return Taken(None, TakeResult.WAIT_GPU)
    leased = run.lease_expires_at if run.state == RunState.RUNNING else None
    return Taken(None, TakeResult.of(run.state), leased)


def grade_run(host: GradingHost, run_id: int, worker: str,
              device: str | None = None) -> TakeResult:
    """Grade a run ``worker`` has claimed, on GPU ``device`` when one is lent (given back when
    the run is done, whatever happens): the run's state when done, ``LOST`` or ``MISSING``. A
    grader that raises fails the run with the reason; a sandbox error (a busy machine, maybe)
    queues it again, up to ``MAX_ATTEMPTS`` claims."""
    with host.seat(worker, device) as seat:
        return _grade_seated(host, seat, run_id)


def _grade_seated(host: GradingHost, seat: Seat, run_id: int) -> TakeResult:
    worker, device = seat.worker, seat.device
    with host.session() as session:
        run = session.get(GradingRun, run_id)
        if run is None:
            return TakeResult.MISSING
        submission = run.submission
        exercise_id, sha = submission.exercise, submission.notebook_sha256
    try:
        with host.blobs() as blobs:
            data = blobs.get(sha)
    except (BlobMissing, OSError) as exc:  # another host's folder, a wiped disk: say so, go on
        log.error("run %s: submitted notebook %s not readable: %s", run_id, sha, exc)
        return _finish_failed(host, run_id, worker, "the submitted notebook is missing from "
                              f"the upload store ({type(exc).__name__}: {exc})")
    config = host.settings.grader
    gpu_host = host.settings.gpu_host if device else None
    keeper = LeaseKeeper(host.session, run_id, worker, host.settings.lease_seconds, gpu_host)
    with (keeper as lease,  # until the result is stored
          seat.render_ahead() as render):  # left first: within the lease
        try:
            exercise = config.exercise(exercise_id)
            with seat.pin(exercise_id) as pinned, \
                    ProgressWriter(host.session, run_id, worker) as progress:
                kit_started(pinned.kit is not None)
                report = grade_notebook(data, exercise, config, pinned.sandbox,
                                        on_progress=progress, kit=pinned.kit,
                                        on_executed=render.start)
        except Exception as exc:  # the grader itself failed: record it, never lose the job
            log.exception("run %s failed", run_id)
            return _finish_failed(host, run_id, worker, f"{type(exc).__name__}: {exc}")
        if lease.lost.is_set():
            log.warning("run %s: lease lost while grading; result dropped", run_id)
            return TakeResult.LOST
        if report.outcome is Outcome.SANDBOX_ERROR:
            reason = report.reason.en if report.reason else "sandbox error"
            return _requeue_or_fail(host, run_id, worker, reason)
        return _store_report(host, run_id, worker, report, render)


@contextmanager
def _owned_run(host: GradingHost, run_id: int, worker: str
               ) -> Iterator[tuple[DbSession, GradingRun] | None]:
    """The session and the run, locked, if this worker still owns it (the fence of every
    result write), else ``None``; the caller's changes are committed on a clean exit."""
    with host.session() as session:
        run = session.get(GradingRun, run_id) if claims.owned(session, run_id, worker) else None
        if run is None:
            session.rollback()
            yield None
            return
        yield session, run
        session.commit()


def _store_report(host: GradingHost, run_id: int, worker: str, report: GradeReport,
                  render: RenderAhead | None = None) -> TakeResult:
    """Take the executed notebook's rendering (started ahead by ``render``, or made now) within
    the caps, then store the report under the fence. Called with the lease still kept."""
    caps = host.settings.render
    began = time.monotonic()
    html_sha, omitted = None, None
    timings: dict[str, float] = {}
    if report.executed_notebook:
        timed = (render or RenderAhead(host.settings.render)).result(
            report.executed_notebook)
        rendered = timed.rendered
        timings["render"], timings["render_wait"] = timed.seconds, timed.waited
        if rendered.html is not None:
            with host.blobs() as blobs:
                html_sha = blobs.put(rendered.html.encode("utf-8"))
        else:
            log.warning("run %s: executed notebook not rendered (%s: %d cells, %d bytes)",
                        run_id, rendered.omitted, rendered.cells, rendered.size)
            omitted = {"reason": rendered.omitted, "cells": rendered.cells,
                       "bytes": rendered.size, "max_cells": caps.max_cells,
                       "max_bytes": caps.max_bytes, "seconds": caps.seconds}
    with _owned_run(host, run_id, worker) as owned:
        if owned is None:
            return TakeResult.LOST
        session, run = owned
        payload = storable(report.to_dict())
        if omitted is not None:
            payload["executed_html_omitted"] = omitted
        if run.started_at is not None:
            timings["queue_wait"] = (run.started_at - run.queued_at).total_seconds()
        run.state = RunState.GRADED
        run.outcome = Outcome(report.outcome)
        run.reason = storable(report.reason.en) if report.reason else None
        run.score, run.max_score = report.score, report.max_score
        run.measured_accuracy = report.measured_accuracy
        run.claimed_accuracy = report.claimed_accuracy
        run.executed_html_sha256 = html_sha
        run.finished_at = utcnow()
        run.lease_expires_at = None
        for position, item in enumerate(payload["items"]):
            run.items.append(ItemScore(
                position=position, item_id=item["id"], score=item["score"],
                max_score=item["max_score"], status=item["status"],
                feedback_ja=item["feedback"]["ja"], feedback_en=item["feedback"]["en"],
                details=item["details"],
            ))
        timings["store"] = time.monotonic() - began - timings.get("render_wait", 0.0)
        payload["timings"].update({k: round(v, 3) for k, v in timings.items()})
        run.report = payload
        # what the clean room measured of the trained model, for similarity runs only
        if report.fingerprint is not None:
            fingerprints.store(session, run_id, report.fingerprint)
        return TakeResult.of(run.state)


def storable(value: Any) -> Any:
    """``value`` with every NUL character and every half of a surrogate pair replaced: the
    kernel's words reach the report (an exception's message in feedback, its stderr in the
    diagnostics, a message type the runner dropped), and PostgreSQL stores no NUL in text or
    JSON, no lone surrogate in JSON, and no UTF-8 encoder takes one in text; a store that
    failed would leave the run to be taken again."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _finish_failed(host: GradingHost, run_id: int, worker: str, reason: str) -> TakeResult:
    with _owned_run(host, run_id, worker) as owned:
        if owned is None:
            return TakeResult.LOST
        _, run = owned
        run.state, run.finished_at = RunState.FAILED, utcnow()
        run.reason = storable(reason[:4000])
        run.lease_expires_at = None
        return TakeResult.of(run.state)


def _requeue_or_fail(host: GradingHost, run_id: int, worker: str, reason: str) -> TakeResult:
    """A sandbox error may pass (a busy machine): retry, up to MAX_ATTEMPTS runs in all. One
    that repeats the previous attempt's reason word for word (the same failure in the same
    cell: ``grader/outcome.py``) will not pass: the run fails at once."""
    reason = storable(reason)
    with _owned_run(host, run_id, worker) as owned:
        if owned is None:
            return TakeResult.LOST
        _, run = owned
        if run.attempts >= host.settings.max_attempts or (
                run.attempts > 1 and run.reason == reason):
            run.state, run.finished_at = RunState.FAILED, utcnow()
            run.reason = f"{reason} (after {run.attempts} attempts)"
        else:
            run.state, run.worker, run.reason = RunState.QUEUED, None, reason
        run.lease_expires_at = None
        return TakeResult.of(run.state)
