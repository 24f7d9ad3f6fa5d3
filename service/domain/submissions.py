"""Accepting a submission: the rules shared by the web form and the API.

Order matters for "nothing acknowledged is lost" and for what an upload may cost:

1. cheap checks (exercise, empty file, the ``Idempotency-Key``'s form, the notebook's hash,
   the course's dates: before ``opens`` and after the student's ``late_until`` an upload is
   refused, 403 ``not_open`` or ``closed``);
2. without any lock, read only: an answer already given (the same ``Idempotency-Key``, or the
   same notebook within ``DUPLICATE_WINDOW``) is given again, and a student over the rate
   limit or the daily limit is refused, all before the notebook is parsed or stored;
3. the notebook is read within :func:`upload_limits` (``grader.notebook.read_notebook``: bytes,
   nesting, values, cells, sizes, then the schema under a deadline), outside any lock: the
   request thread spends bounded time on it, and other students' uploads do not wait;
4. with the folder blob store (``BLOB_STORE=folder``), a new notebook's bytes are stored
   durably (fsync), still outside any lock: on SQLite the lock of step 5 is the whole
   database's write lock, and a disk flush held under it made every other upload wait (``make
   bench-service``). The store is content-addressed, so a notebook refused in step 5 (a race
   lost to the rate limit) leaves at most one unreferenced file;
5. under the student's lock (:func:`_lock_student`), the answers of step 2, the rate limit,
   the dates and the daily limit (``attempts_per_day``, 429 ``daily_limit``) are checked again
   at one moment, ``now``, which becomes the submission's time (``created_at``: when the
   service acknowledged it, whenever it is graded), and the submission, its first run and the
   key are committed in one transaction that also releases the lock; with the database blob
   store (``BLOB_STORE=database``) the notebook's bytes are inserted in that transaction too,
   so what is acknowledged is stored, or nothing is;
6. the caller hands the new run (:attr:`Accepted.run_id`) to the queue
   (``service.queue.dispatch.enqueue``) after the commit: the domain never imports the queue
   (``tests/test_layout.py``). If that fails, or never happens, the run stays ``queued`` in the
   database and is picked up by the embedded workers or re-sent by the janitor or ``flask
   requeue``; on PostgreSQL, the commit of step 5 already woke the workers of other processes
   (``service.queue_channel.notify_queued``).

Step 5 is why the duplicate window and the rate limit hold under concurrent requests: looking
and inserting happen in one transaction that holds a per-student lock, so the second of two
simultaneous requests looks only after the first committed. A per-student lock rather than a
unique constraint because neither rule is a uniqueness: "at most N in a sliding window" and "the
same bytes within 120 s" have no column to constrain; the idempotency key, which is one, also
has a unique constraint as the last guard.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from grader import LIMIT_KEYS, N_, NotebookError, ReadLimits, SpecError, read_notebook
from service.blobs import BlobStore, blob_store
from service.catalog import MESSAGES
from service.domain.course_rules import Window, day_start, local
from service.domain.schedules import extension_for, load_rules
from service.extensions import db
from service.models import GradingRun, IdempotencyKey, Student, Submission, utcnow
from service.queue_channel import notify_queued
from service.states import GpuNeed, RunState

log = logging.getLogger(__name__)

#: What an ``Idempotency-Key`` may be: 1 to 255 visible ASCII characters (a UUID fits).
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class Rejection(Exception):
    """Why an upload was refused: an HTTP status, a stable code, a message (en and ja)."""

    status: int
    code: str
    message: str
    message_ja: str

    @classmethod
    def of(cls, status: int, code: str, message: str, **params: object) -> Rejection:
        """The refusal with the catalogs' ``message`` in both languages: the API sends both
        (``message``, ``message_ja``) whatever the client prefers, the upload page picks one.
        A parameter that is a :class:`~grader.spec.Text` is filled in each one's language."""
        text = MESSAGES.bilingual(message, **params)
        return cls(status, code, text.en, text.ja)


@dataclass(frozen=True)
class Accepted:
    """What an accepted upload is: a submission, new or not."""

    submission: Submission
    #: The same notebook came from this student within the duplicate window: the earlier
    #: submission, no new job.
    duplicate: bool = False
    #: The same ``Idempotency-Key`` was sent before: the first answer, again.
    replayed: bool = False
    #: The run this upload queued, for the caller to hand to the queue after the commit
    #: (``service.queue.dispatch.enqueue``); ``None`` for a duplicate or a replay.
    run_id: int | None = None


def known_exercises() -> list[str]:
    return current_app.config["GRADER"].exercise_ids()


def upload_limits() -> ReadLimits:
    """The bounds of reading an upload in a request: the service's settings, each capped at the
    grader's (``grader.ReadLimits()``, the bounds it reads a notebook within), so that the
    grader reads again, unchanged, every notebook the service accepted."""
    config, grader = current_app.config, ReadLimits()
    return ReadLimits(
        max_bytes=min(config.get("MAX_CONTENT_LENGTH") or grader.max_bytes, grader.max_bytes),
        max_depth=min(config["UPLOAD_MAX_DEPTH"], grader.max_depth),
        max_values=min(config["UPLOAD_MAX_VALUES"], grader.max_values),
        max_cells=min(config["UPLOAD_MAX_CELLS"], grader.max_cells),
        max_cell_bytes=min(config["UPLOAD_MAX_CELL_BYTES"], grader.max_cell_bytes),
        max_output_bytes=min(config["UPLOAD_MAX_OUTPUT_BYTES"], grader.max_output_bytes),
        validate_seconds=min(config["UPLOAD_CHECK_SECONDS"], grader.validate_seconds),
    )


def accept_submission(student: Student, exercise: str, filename: str, data: bytes,
                      idempotency_key: str | None = None) -> Accepted:
    """Store and queue a submission, or give an answer already given (see the module's
    docstring for the order); raises :class:`Rejection`. A new run is committed as queued; the
    caller hands :attr:`Accepted.run_id` to the queue."""
    if exercise not in known_exercises():
        raise Rejection.of(404, "unknown_exercise", N_("api.unknown_exercise"), exercise=exercise)
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise Rejection.of(400, "invalid_idempotency_key", N_("api.invalid_idempotency_key"))
    if not data:
        raise Rejection.of(400, "empty_file", N_("api.empty_file"))
    request = _Request(student.id, exercise, filename, hashlib.sha256(data).hexdigest(),
                       idempotency_key)
    earlier = _earlier_answer(request)
    if earlier is not None and (earlier.replayed or idempotency_key is None):
        return earlier
    if earlier is None:
        _check_rate(request.student_pk)
        _check_rules(request, utcnow(), daily=True)  # a refused upload leaves no file
    _check_notebook(data)  # a duplicate sent with a new key too: its key is stored below
    blobs = blob_store(current_app)
    if earlier is None and not blobs.in_transaction:
        _put_blob(blobs, data)
    _lock_student(request.student_pk)
    try:
        return _store(request, data, blobs)
    except BaseException:
        db.session.rollback()
        raise


@dataclass(frozen=True)
class _Request:
    student_pk: int
    exercise: str
    filename: str
    sha256: str
    key: str | None

    @property
    def fingerprint(self) -> str:
        """What an idempotency key promises stays the same: exercise, filename, notebook."""
        body = "\0".join((self.exercise, self.filename, self.sha256))
        return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def _earlier_answer(request: _Request) -> Accepted | None:
    """The answer this request already has: the submission its idempotency key was answered
    with (422 if the key came with another request), or a recent submission of the same
    notebook."""
    if request.key is not None:
        row = db.session.execute(select(IdempotencyKey).where(
            IdempotencyKey.student_pk == request.student_pk, IdempotencyKey.key == request.key,
        )).scalar_one_or_none()
        if row is not None:
            if row.request_sha256 != request.fingerprint:
                raise Rejection.of(422, "idempotency_key_reused",
                                   N_("api.idempotency_key_reused"))
            return Accepted(row.submission, duplicate=row.duplicate, replayed=True)
    duplicate = _recent_duplicate(request)
    return None if duplicate is None else Accepted(duplicate, duplicate=True)


def _check_notebook(data: bytes) -> None:
    """The notebook within :func:`upload_limits`: 413 for a bound passed, 400 for a file that
    is not a valid notebook; either way nothing is stored."""
    try:
        read_notebook(data, upload_limits())
    except NotebookError as exc:
        if exc.key in LIMIT_KEYS:
            raise Rejection.of(413, "notebook_too_large", N_("api.notebook_too_large"),
                               reason=exc.text) from None
        raise Rejection.of(400, "invalid_notebook", N_("api.invalid_notebook"),
                           reason=exc.text) from None


def _lock_student(student_pk: int) -> None:
    """Begin the transaction that serialises this student's uploads, until its commit or
    rollback. PostgreSQL: ``SELECT ... FOR UPDATE`` on the student's row (other students are
    not held up). SQLite has no row locks: ``BEGIN IMMEDIATE`` takes the database's write lock
    first, so the reads that follow see every upload committed before (other writers wait,
    under the busy timeout, for one short transaction). Whatever transaction the request's
    earlier reads opened is ended first: the lock must come before the reads it protects."""
    db.session.commit()
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(text("BEGIN IMMEDIATE"))
    else:
        db.session.execute(select(Student.id).where(Student.id == student_pk).with_for_update())


def _store(request: _Request, data: bytes, blobs: BlobStore) -> Accepted:
    """Under the student's lock: the earlier answer, or the rate limit and then the rows and
    the key, committed together (with the bytes, in the database store; the folder store has
    them already)."""
    earlier = _earlier_answer(request)
    if earlier is not None and earlier.replayed:
        db.session.commit()
        return earlier
    run = None
    if earlier is None:
        _check_rate(request.student_pk)
        now = utcnow()
        _check_rules(request, now, daily=True)
        _put_blob(blobs, data)  # a folder's: stored before the lock, found (a stat), no flush
        submission = Submission(student_pk=request.student_pk, exercise=request.exercise,
                                filename=request.filename[:255],
                                notebook_sha256=request.sha256, size=len(data),
                                created_at=now)
        run = new_run(submission)
        db.session.add_all([submission, run])
        notify_queued(db.session)  # delivered at the commit, to workers of other processes
        accepted = Accepted(submission)
    else:
        accepted = earlier
    if request.key is not None:
        db.session.add(IdempotencyKey(student_pk=request.student_pk, key=request.key,
                                      request_sha256=request.fingerprint,
                                      submission=accepted.submission,
                                      duplicate=accepted.duplicate))
    try:
        db.session.commit()
    except IntegrityError:  # the key's unique constraint: only if the lock was bypassed
        db.session.rollback()
        replay = _earlier_answer(request)
        if replay is None:
            raise
        return replay
    return accepted if run is None else Accepted(accepted.submission, run_id=run.id)


def _put_blob(blobs: BlobStore, data: bytes) -> None:
    """The notebook's bytes into the blob store. A folder that cannot take them (a full disk,
    a read-only or unreachable volume) refuses the upload with 507 and nothing recorded: the
    caller rolls back, and the store leaves no partial file (``FolderBlobStore.put``)."""
    try:
        blobs.put(data)
    except OSError as exc:
        log.error("upload store refused %d bytes: %s", len(data), exc)
        raise Rejection.of(507, "storage_full", N_("api.storage_full")) from None


def _recent_duplicate(request: _Request) -> Submission | None:
    since = utcnow() - dt.timedelta(seconds=current_app.config["DUPLICATE_WINDOW"])
    return db.session.execute(
        select(Submission).where(
            Submission.student_pk == request.student_pk, Submission.exercise == request.exercise,
            Submission.notebook_sha256 == request.sha256, Submission.created_at >= since,
        ).order_by(Submission.id.desc()).limit(1)
    ).scalar_one_or_none()


def _check_rate(student_pk: int) -> None:
    window = current_app.config["RATE_LIMIT_WINDOW"]
    limit = current_app.config["RATE_LIMIT_COUNT"]
    since = utcnow() - dt.timedelta(seconds=window)
    count = db.session.execute(
        select(func.count(Submission.id)).where(
            Submission.student_pk == student_pk, Submission.created_at >= since)
    ).scalar_one()
    if count >= limit:
        raise Rejection.of(429, "rate_limited", N_("api.rate_limited"), limit=limit,
                           minutes=window // 60)


def _check_rules(request: _Request, now: dt.datetime, daily: bool = False) -> None:
    """The course's rules for this student and exercise at ``now``: the dates (their own, with
    an extension) and, with ``daily``, the daily limit in the course's time zone."""
    rules = load_rules(db.session, request.exercise)
    extension = extension_for(db.session, request.student_pk, request.exercise)
    dates = rules.dates_for(extension)
    window = dates.window(now)
    if window is Window.NOT_OPEN:
        raise Rejection.of(403, "not_open", N_("api.not_open"),
                           opens=_shown(dates.opens, rules.timezone))
    if window is Window.CLOSED:
        raise Rejection.of(403, "closed", N_("api.closed"),
                           closes=_shown(dates.closes, rules.timezone))
    limit = rules.daily_limit(extension)
    if daily and limit is not None:
        since = day_start(now, rules.timezone)
        count = db.session.execute(select(func.count(Submission.id)).where(
            Submission.student_pk == request.student_pk,
            Submission.exercise == request.exercise, Submission.created_at >= since)
        ).scalar_one()
        if count >= limit:
            raise Rejection.of(429, "daily_limit", N_("api.daily_limit"), limit=limit,
                               timezone=rules.timezone)


def _shown(moment: dt.datetime | None, timezone: str) -> str:
    return "" if moment is None else f"{local(moment, timezone):%Y-%m-%d %H:%M %Z}"


def new_run(submission: Submission) -> GradingRun:
    """A queued run of ``submission``, asking of the GPUs what its exercise says."""
    return GradingRun(submission=submission, state=RunState.QUEUED,
                      gpu=gpu_need(submission.exercise))


def gpu_need(exercise_id: str) -> GpuNeed:
    """The exercise's ``[runtime] gpu`` (``none`` for an exercise no longer there: its runs
    fail when graded, whoever takes them)."""
    try:
        return current_app.config["GRADER"].exercise(exercise_id).runtime.gpu
    except SpecError:
        return GpuNeed.NONE


def regrade(submission: Submission) -> GradingRun:
    """A new run for an existing submission, committed as queued (old runs are kept); the
    caller hands it to the queue (``service.queue.dispatch.enqueue``)."""
    run = new_run(submission)
    db.session.add(run)
    notify_queued(db.session)
    db.session.commit()
    return run
