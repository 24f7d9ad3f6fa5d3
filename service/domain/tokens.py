"""Students' personal access tokens: bearer auth for the API (read from the request by
``service.views.api``), a login for the browser; and the
session loader shared by students and instructors (``student:<id>``, ``instructor:<id>``).

Wrong tokens are throttled per address (``service.domain.throttle``, account
:data:`~service.domain.throttle.TOKEN_ACCOUNT`) by :func:`check_token`, the one door both the
login form and the API's bearer header go through. A token is 192 random bits, so the throttle
is not what keeps it secret; it keeps one address from hammering the lookup, and makes a stolen
prefix or a script of guesses loud and slow."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from service.domain.throttle import TOKEN_ACCOUNT, Throttle
from service.extensions import db, login_manager
from service.models import Instructor, Student

TOKEN_PREFIX = "gt_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def student_for_token(token: str | None) -> Student | None:
    if not token:
        return None
    return db.session.execute(
        select(Student).where(Student.token_hash == hash_token(token))
    ).scalar_one_or_none()


def check_token(token: str, ip: str, throttle: Throttle) -> tuple[Student | None, int]:
    """The student whose token this is, and 0; or None and the seconds ``ip`` must wait before
    its next token (0 when it may retry now).

    A wrong token is recorded before its address's failures are counted (so concurrent wrong
    tokens cannot all be answered "wrong" past the limit); a right one from an address over the
    limit is refused too, else the refusal would tell right from wrong."""
    student = student_for_token(token)
    if student is None:
        return None, throttle.attempt(db.session, TOKEN_ACCOUNT, ip).wait
    wait = throttle.retry_after(db.session, TOKEN_ACCOUNT, ip)
    return (None, wait) if wait else (student, 0)


@login_manager.user_loader
def load_user(user_id: str) -> Student | Instructor | None:
    kind, _, pk = user_id.partition(":")
    if not pk.isdigit():
        return None
    if kind == "student":
        return db.session.get(Student, int(pk))
    if kind == "instructor":
        return db.session.get(Instructor, int(pk))
    return None
