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
from sqlalchemy import func, select

from grader.notebook import NotebookError, read_notebook
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


def known_exercises() -> list[str]:
    return current_app.config["GRADER"].exercise_ids()


def accept_submission(student: Student, exercise: str, filename: str, data: bytes
                      ) -> tuple[Submission, bool]:
    """Store and queue a submission; returns it and whether it duplicated a recent one."""
    if exercise not in known_exercises():
        raise Rejection(404, "unknown_exercise", f"unknown exercise '{exercise}'",
                        f"課題 '{exercise}' はありません")
    if not data:
        raise Rejection(400, "empty_file", "the file is empty", "ファイルが空です")
    try:
        read_notebook(data)
    except NotebookError as exc:
        raise Rejection(400, "invalid_notebook", f"not a valid notebook: {exc.reason}",
                        f"ノートブックとして読み込めません: {exc.reason_ja}") from None
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
        raise Rejection(429, "rate_limited",
                        f"at most {limit} submissions per {window // 60} minutes; try later",
                        f"提出は {window // 60} 分に {limit} 回までです。しばらくしてから提出してください")


def regrade(submission: Submission) -> GradingRun:
    """A new run for an existing submission; old runs are kept."""
    run = GradingRun(submission=submission, state=RunState.QUEUED)
    db.session.add(run)
    db.session.commit()
    enqueue(run.id)
    return run
