"""Throttling instructor logins: too many failures for a username, or from an address, lock both
out for the rest of a window.

Failures are rows of ``login_failures`` rather than counters in memory, so the limit holds across
the service's processes and restarts. A refused attempt is not recorded (the lock does not grow
while someone keeps knocking), and a successful login forgets its username's failures (not its
address's: one good password must not reopen an address that was guessing others).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import delete, select

from service.extensions import DbSession
from service.models import LoginFailure, utcnow


@dataclass(frozen=True)
class Throttle:
    #: Failures allowed within ``window`` seconds, per username and per address.
    limit: int = 5
    window: int = 15 * 60

    def retry_after(self, session: DbSession, username: str, ip: str,
                    now: dt.datetime | None = None) -> int:
        """Seconds until ``username`` may try again from ``ip``; 0 when it may now."""
        now = now or utcnow()
        since = now - dt.timedelta(seconds=self.window)
        waits = [0.0]
        for column, value in ((LoginFailure.username, username), (LoginFailure.ip, ip)):
            times = session.execute(
                select(LoginFailure.at).where(column == value, LoginFailure.at > since)
                .order_by(LoginFailure.at)
            ).scalars().all()
            if len(times) >= self.limit:
                # Locked until enough failures age out of the window to leave limit - 1.
                unlocks = times[len(times) - self.limit] + dt.timedelta(seconds=self.window)
                waits.append((unlocks - now).total_seconds())
        return max(0, math.ceil(max(waits)))

    def record_failure(self, session: DbSession, username: str, ip: str,
                       now: dt.datetime | None = None) -> None:
        """Note a failed attempt, and drop the failures that left the window (anyone's)."""
        now = now or utcnow()
        session.execute(delete(LoginFailure).where(
            LoginFailure.at <= now - dt.timedelta(seconds=self.window)))
        session.add(LoginFailure(username=username[:64], ip=ip[:64], at=now))
        session.commit()

    @staticmethod
    def forget(session: DbSession, username: str) -> None:
        session.execute(delete(LoginFailure).where(LoginFailure.username == username))
        session.commit()

