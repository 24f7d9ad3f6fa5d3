"""Instructor accounts: made and reset from the command line, with a generated one-time password
that has to be replaced at the first login.

Passwords are stored as werkzeug hashes (scrypt, werkzeug's parameters). Checking a login costs
one hash whether or not the username exists, so the time taken does not tell which usernames
are real. The app's ``PASSWORD_HASH_METHOD`` (not an environment setting; the tests set a
cheaper scrypt) names werkzeug's method for new hashes; a stored hash names its own.
"""

from __future__ import annotations

import re
import secrets
from functools import cache

from flask import current_app
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from service.extensions import db
from service.models import Instructor, utcnow

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 10
#: Longer inputs are refused before hashing: scrypt over megabytes is a cheap denial of service.
MAX_PASSWORD = 256
#: The password hash of an instructor made by an LTI launch (``service.domain.lti_accounts``):
#: not a werkzeug hash, so no password matches it; such an instructor logs in through the LMS.
NO_PASSWORD = "!lti-no-password"
#: werkzeug's method of new password hashes unless the app's ``PASSWORD_HASH_METHOD`` says
#: otherwise: scrypt with werkzeug's parameters (``scrypt:32768:8:1``).
PASSWORD_HASH_METHOD = "scrypt"


class AccountError(ValueError):
    """An instructor account that cannot be made or changed; the message says why (English,
    for the command line). ``code`` names the reason for the web form's translated message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def normalize_username(username: str) -> str:
    return username.strip().lower()


def one_time_password() -> str:
    return secrets.token_urlsafe(12)


def create_instructor(username: str) -> tuple[Instructor, str]:
    """A new account with a generated password (returned once, never stored in clear)."""
    name = normalize_username(username)
    if not USERNAME.match(name):
        raise AccountError("bad_username", "a username is 1-64 characters: lower-case letters, "
                           "digits, '.', '_' or '-', starting with a letter or digit")
    if find_instructor(name) is not None:
        raise AccountError("exists", f"instructor '{name}' already exists")
    password = one_time_password()
    instructor = Instructor(username=name, password_hash=_hash(password),
                            must_change_password=True)
    db.session.add(instructor)
    db.session.commit()
    return instructor, password


def reset_password(username: str) -> str:
    """A new one-time password for an existing account (the old one stops working)."""
    instructor = find_instructor(username)
    if instructor is None:
        raise AccountError("unknown", f"no instructor '{normalize_username(username)}'")
    password = one_time_password()
    instructor.password_hash = _hash(password)
    instructor.must_change_password = True
    db.session.commit()
    return password


def find_instructor(username: str) -> Instructor | None:
    return db.session.execute(
        select(Instructor).where(Instructor.username == normalize_username(username))
    ).scalar_one_or_none()


def count_instructors() -> int:
    return db.session.execute(select(func.count(Instructor.id))).scalar_one()


def authenticate(username: str, password: str) -> Instructor | None:
    """The instructor whose password this is, or None (unknown name or wrong password alike)."""
    if len(password) > MAX_PASSWORD:
        return None
    instructor = find_instructor(username)
    if instructor is None or instructor.password_hash == NO_PASSWORD:
        check_password_hash(_no_user_hash(), password)
        return None
    if not check_password_hash(instructor.password_hash, password):
        return None
    instructor.last_login_at = utcnow()
    db.session.commit()
    return instructor


def _hash(password: str) -> str:
    return generate_password_hash(password, method=_method())


def _method() -> str:
    return str(current_app.config.get("PASSWORD_HASH_METHOD", PASSWORD_HASH_METHOD))


def _no_user_hash() -> str:
    """A hash that matches nothing, checked for unknown usernames (the same cost as a real one)."""
    return _no_user_hash_of(_method())


@cache
def _no_user_hash_of(method: str) -> str:
    return generate_password_hash(secrets.token_hex(16), method=method)


def change_password(instructor: Instructor, current: str, new: str, repeated: str) -> None:
    """Replace the password after checking the current one; clears ``must_change_password``.
    An instructor made by an LTI launch has no current password, so never gets one here."""
    if len(current) > MAX_PASSWORD or not check_password_hash(instructor.password_hash, current):
        raise AccountError("wrong_current", "the current password is wrong")
    if new != repeated:
        raise AccountError("mismatch", "the two new passwords differ")
    if not MIN_PASSWORD <= len(new) <= MAX_PASSWORD:
        raise AccountError("length", f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} "
                           "characters")
    if new == current:
        raise AccountError("unchanged", "the new password is the current one")
    instructor.password_hash = _hash(new)
    instructor.must_change_password = False
    db.session.commit()
