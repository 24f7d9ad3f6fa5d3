"""Throttling logins (instructors' passwords, students' tokens) without letting anyone lock
someone else out.

What is counted
    Failures are rows of ``login_failures`` (account, address, time), not counters in memory,
    so the limits hold across the service's processes and restarts. The key is the pair
    (account, address): five wrong passwords for ``teacher`` from address A slow down A's
    attempts on ``teacher``, and nobody else's. Student tokens have no account until they
    match one, so their failures are counted under the account :data:`TOKEN_ACCOUNT` (a name no
    instructor can have) and the address.

Growing delays, not a lock
    Under ``limit`` failures in the ``window`` a pair may try at once. From then on each further
    attempt waits ``backoff`` seconds after the pair's latest failure, doubled by every failure
    past the limit and capped at the window (30 s, 60 s, 120 s, ... 15 min), and the answer
    says so (``Retry-After``). A refused attempt is not recorded, so knocking while refused does
    not lengthen the wait; failures older than the window are forgotten.

Why a stranger cannot lock the instructor out
    Nothing a client does from address A delays an attempt from address B, whatever the
    account. Two wider counts only tighten what is already a pair's allowance:

    * an address that failed ``address_limit`` times over all accounts (one machine trying many
      usernames, or many tokens) waits as a pair would, on every account, from that address
      only;
    * an account that failed ``account_limit`` times from all addresses together (guesses spread
      over many machines) is under attack: each address then has one failure's allowance on it
      instead of ``limit``, so a botnet of N addresses gets about N more guesses, not N * limit,
      while an address that has not failed on the account (the instructor's own) still logs in
      with the right password at once.

    On a network where everybody shares one public address (a campus NAT) the pair and the
    address are the same for everyone; run the service behind a proxy that passes the client's
    address (werkzeug's ``ProxyFix``) so that the address is the browser's.

No race
    40 concurrent guesses must not all be checked because they all read "4 failures so far"
    before any of them wrote its own. :meth:`Throttle.attempt` therefore writes first: it
    commits the attempt as a failure row, then counts the rows committed before it (its own
    excluded); if that count is over the allowance it deletes its row and refuses, otherwise
    the caller checks the password and either keeps the row (a failure) or clears the pair
    (:meth:`Throttle.succeeded`). Of any set of attempts allowed through, the last to count saw
    every other one's row, so no more than the allowance are ever checked, on SQLite and on
    PostgreSQL alike (a statement reads what was committed before it began), with no lock held.
    The price is on the other side: attempts being decided at the same time count each other's
    rows, so a burst from one pair may be refused sooner than ``limit`` needs (of 40 concurrent
    guesses between 0 and 5 are checked: 0 when every row is written before any count and
    every count made before any refused row is deleted, ``tests/service/test_dashboard.py``);
    the refused ones' rows are deleted, so nothing of the burst is left to wait for but the
    allowed attempts' failures.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select

from service.extensions import DbSession
from service.models import LoginFailure, utcnow

#: The account students' token failures are counted under (``#`` is in no instructor's name).
TOKEN_ACCOUNT = "#token"
#: The longest account and address a row keeps (the columns' width).
KEY_LENGTH = 64


#: Wrong tokens one address may send in ``LOGIN_WINDOW`` before its waits start.
TOKEN_ATTEMPTS = 100


@dataclass(frozen=True)
class LoginAttempt:
    """An attempt let through (``wait == 0``, its row ``row_id`` holds it as a failure until it
    succeeds) or refused (``wait`` seconds to wait, nothing recorded)."""

    account: str
    ip: str
    wait: int
    row_id: int | None = None


@dataclass(frozen=True)
class Throttle:
    #: Failures a pair (account, address) may make in ``window`` seconds before waiting.
    limit: int = 5
    window: int = 15 * 60
    #: The first wait past the limit, in seconds; doubled by every further failure.
    backoff: int = 30
    #: Failures from one address over all accounts before that address waits on every account.
    address_limit: int = 20
    #: Failures on one account over all addresses before each address is allowed one only.
    account_limit: int = 20

    @classmethod
    def for_passwords(cls, config: Mapping[str, Any]) -> Throttle:
        """The instructors' login throttle, from the app's ``LOGIN_*`` settings."""
        return cls(limit=config.get("LOGIN_ATTEMPTS", 5),
                   window=config.get("LOGIN_WINDOW", 15 * 60),
                   backoff=config.get("LOGIN_BACKOFF", 30),
                   address_limit=config.get("LOGIN_ADDRESS_ATTEMPTS", 20),
                   account_limit=config.get("LOGIN_ACCOUNT_ATTEMPTS", 20))

    @classmethod
    def for_tokens(cls, config: Mapping[str, Any]) -> Throttle:
        """The students' token throttle (login form and API bearer), from ``TOKEN_*``.

        The default allowance, 100 wrong tokens per address in the window, is ten times the
        passwords': a token is 192 random bits (``service.domain.tokens``), so no allowance
        makes guessing one thinkable, while a class behind one NAT address shares the
        allowance, and ten typos must not lock a lecture hall out."""
        attempts = config.get("TOKEN_ATTEMPTS", TOKEN_ATTEMPTS)
        return cls(limit=attempts, window=config.get("LOGIN_WINDOW", 15 * 60),
                   backoff=config.get("TOKEN_BACKOFF", 30),
                   address_limit=max(attempts, config.get("LOGIN_ADDRESS_ATTEMPTS", 20)),
                   # one account for every token: counting it over all addresses would let a
                   # stranger's failures tighten everyone's allowance
                   account_limit=2 ** 31)

    # --- the three steps of a login -----------------------------------------------------------

    def attempt(self, session: DbSession, account: str, ip: str,
                now: dt.datetime | None = None) -> LoginAttempt:
        """Record an attempt as a failure, then decide whether it may be checked (see the
        module's docstring: writing before counting is what makes concurrent attempts safe)."""
        now = now or utcnow()
        account, ip = account[:KEY_LENGTH], ip[:KEY_LENGTH]
        session.execute(delete(LoginFailure).where(
            LoginFailure.at <= now - dt.timedelta(seconds=self.window)))
        row = LoginFailure(username=account, ip=ip, at=now)
        session.add(row)
        session.commit()
        row_id = row.id
        wait = self.retry_after(session, account, ip, now=now, exclude=row_id)
        if wait:
            session.execute(delete(LoginFailure).where(LoginFailure.id == row_id))
            session.commit()
            return LoginAttempt(account, ip, wait)
        return LoginAttempt(account, ip, 0, row_id)

    @staticmethod
    def succeeded(session: DbSession, attempt: LoginAttempt) -> None:
        """The secret was right: forget the pair's failures (this attempt's row among them).
        Other addresses' failures on the account stay: they were someone else."""
        session.execute(delete(LoginFailure).where(LoginFailure.username == attempt.account,
                                                   LoginFailure.ip == attempt.ip))
        session.commit()

    def retry_after(self, session: DbSession, account: str, ip: str,
                    now: dt.datetime | None = None, exclude: int | None = None) -> int:
        """Seconds until ``account`` may be tried again from ``ip``; 0 when it may now.
        ``exclude`` leaves out one row (the attempt asking)."""
        now = now or utcnow()
        account, ip = account[:KEY_LENGTH], ip[:KEY_LENGTH]
        recent: ColumnElement[bool] = LoginFailure.at > now - dt.timedelta(seconds=self.window)
        if exclude is not None:
            recent = and_(recent, LoginFailure.id != exclude)

        def failures(*where: ColumnElement[bool]) -> tuple[int, dt.datetime | None]:
            count, latest = session.execute(
                select(func.count(LoginFailure.id), func.max(LoginFailure.at))
                .where(recent, *where)).one()
            return int(count), latest

        on_account, _ = failures(LoginFailure.username == account)
        allowance = 1 if on_account >= self.account_limit else self.limit
        waits = [0.0]
        for (count, latest), allowed in (
                (failures(LoginFailure.username == account, LoginFailure.ip == ip), allowance),
                (failures(LoginFailure.ip == ip), self.address_limit)):
            if count >= allowed and latest is not None:
                unlocks = latest + dt.timedelta(seconds=self.delay(count - allowed))
                waits.append((unlocks - now).total_seconds())
        return max(0, math.ceil(max(waits)))

    def delay(self, past_limit: int) -> int:
        """The wait after the latest failure, ``past_limit`` failures beyond the allowance."""
        return min(self.window, self.backoff * 2 ** min(past_limit, 32))
