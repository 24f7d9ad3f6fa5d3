"""Accepting a submission: the rules shared by the web form and the API.

Order matters for "nothing acknowledged is lost": validate (nothing stored for bad input), store
the bytes durably, commit the submission and its first run in one transaction, then hand the run
to the queue. If the queue hand-off fails the run stays ``queued`` in the database and is picked
up by the embedded workers or re-sent by ``flask requeue``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import func, select

from grader.messages import N_
from grader.notebook import NotebookError, read_notebook
from grader.spec import Text
from service.extensions import db
from service.models import GradingRun, Student, Submission, utcnow
from service.queue.dispatch import enqueue
from service.states import RunState
from service.storage import BlobStore


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
        texts = {}
        for lang in ("en", "ja"):
            with force_locale(lang):
                texts[lang] = _(message, **{name: value.get(lang) if isinstance(value, Text)
                                            else value for name, value in params.items()})
        return cls(status, code, texts["en"], texts["ja"])


def known_exercises() -> list[str]:
    return current_app.config["GRADER"].exercise_ids()


def accept_submission(student: Student, exercise: str, filename: str, data: bytes
                      ) -> tuple[Submission, bool]:
    """Store and queue a submission; returns it and whether it duplicated a recent one."""
    if exercise not in known_exercises():
        raise Rejection.of(404, "unknown_exercise", N_("api.unknown_exercise"), exercise=exercise)
    if not data:
        raise Rejection.of(400, "empty_file", N_("api.empty_file"))
    try:
        read_notebook(data)
    except NotebookError as exc:
        raise Rejection.of(400, "invalid_notebook", N_("api.invalid_notebook"),
                           reason=exc.text) from None
    sha = hashlib.sha256(data).hexdigest()
    duplicate = _recent_duplicate(student, exercise, sha)
    if duplicate is not None:
        return duplicate, True
    _check_rate(student)
    BlobStore(current_app.config["UPLOAD_DIR"]).put(data)
    submission = Submission(student=student, exercise=exercise, filename=filename[:255],
                            notebook_sha256=sha, size=len(data))
    run = GradingRun(submission=submission, state=RunState.QUEUED)
    db.session.add_all([submission, run])
    db.session.commit()
    enqueue(run.id)
    return submission, False


def _recent_duplicate(student: Student, exercise: str, sha: str) -> Submission | None:
    since = utcnow() - dt.timedelta(seconds=current_app.config["DUPLICATE_WINDOW"])
    return db.session.execute(
        select(Submission).where(
            Submission.student_pk == student.id, Submission.exercise == exercise,
            Submission.notebook_sha256 == sha, Submission.created_at >= since,
        ).order_by(Submission.id.desc()).limit(1)
    ).scalar_one_or_none()


def _check_rate(student: Student) -> None:
    window = current_app.config["RATE_LIMIT_WINDOW"]
    limit = current_app.config["RATE_LIMIT_COUNT"]
    since = utcnow() - dt.timedelta(seconds=window)
    count = db.session.execute(
        select(func.count(Submission.id)).where(
            Submission.student_pk == student.id, Submission.created_at >= since)
    ).scalar_one()
    if count >= limit:
        raise Rejection.of(429, "rate_limited", N_("api.rate_limited"), limit=limit,
                           minutes=window // 60)


def regrade(submission: Submission) -> GradingRun:
    """A new run for an existing submission; old runs are kept."""
    run = GradingRun(submission=submission, state=RunState.QUEUED)
    db.session.add(run)
    db.session.commit()
    enqueue(run.id)
    return run
