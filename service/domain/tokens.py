"""Students' personal access tokens: bearer auth for the API (read from the request by
``service.views.api``), a login for the browser; and the
session loader shared by students and instructors (``student:<id>``, ``instructor:<id>``)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

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
