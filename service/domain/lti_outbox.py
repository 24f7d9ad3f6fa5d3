"""Grade passback's outbox (``lti_scores``) as its senders and the instructor see it: rows due
are claimed, sent (``service.lti.ags``), and their answer recorded; failures back off; the
queue page counts them.

**Claimed so that no row is sent twice at once.** A claim moves the row's ``next_attempt_at``
:data:`HOLD` ahead and counts the attempt, in one transaction: on PostgreSQL the candidates are
read ``FOR UPDATE SKIP LOCKED`` (two senders take different rows, neither waits); on SQLite
each candidate is claimed by a conditional ``UPDATE … WHERE state = 'pending' AND
next_attempt_at <= now`` whose row count says who won. A sender that dies holding rows
leaves them to be taken again when the hold runs out.

**The answer is recorded for the score that was sent.** A newer score may replace the row
while its send is under way (``service.domain.lti_passback``: newest wins, the row is pending
again); the answer to the older send then changes nothing but the row's last answer, and the
newer score goes out on its own.

**Backoff**: a failed attempt is tried again after 30 s, doubling up to 30 min, with a
random 20 % either way (senders of many processes do not knock at once); once a platform takes
a score again, its other scores waiting out a backoff are due at once. Tried for
seven days (:class:`Retry`); then, or at once for an answer that can never succeed (400, 404, 405,
410, 413, 415, 422: the score or the line item is refused), the row is ``failed`` with the
reason, until the instructor asks for a retry.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from sqlalchemy import func, select, update

from service.domain.lti_passback import STATE_FAILED, STATE_PENDING, STATE_SENT
from service.extensions import DbSession, rowcount
from service.models import LtiAccount, LtiLineItem, LtiPlatform, LtiScore, Student, utcnow

#: How long a claim keeps a row from the other senders (more than a send can take: three HTTP
#: calls of at most 10 s each).
HOLD = dt.timedelta(minutes=2)
#: HTTP statuses after which sending the same score again cannot succeed.
PERMANENT = frozenset({400, 404, 405, 410, 413, 415, 422})
#: The longest text kept of a platform's answer.
MAX_ERROR = 2000


@dataclass(frozen=True)
class Claimed:
    """A row claimed for one send, with everything the send needs (no ORM object leaves the
    session that read it)."""

    id: int
    #: The row's ``updated_at`` at the claim: the answer is recorded for this score only.
    version: dt.datetime
    attempts: int
    issuer: str
    client_id: str
    sub: str
    line_item_id: int
    exercise: str
    resource_link_id: str
    lineitem_url: str | None
    lineitems_url: str | None
    scopes: tuple[str, ...]
    score_given: float | None
    score_maximum: float
    activity_progress: str
    grading_progress: str
    comment: str | None
    scored_at: dt.datetime


@dataclass(frozen=True)
class Answer:
    """What became of one send: ``status`` is the platform's HTTP status (None: not reached,
    or no answer in time), ``error`` what went wrong (None: the score was accepted),
    ``lineitem_url`` the line item found or made when the row had none."""

    status: int | None
    error: str | None = None
    lineitem_url: str | None = None
    #: The error can never pass by trying again (a missing scope, a refused score).
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def _is_postgresql(session: DbSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def claim_due(session: DbSession, limit: int = 20, now: dt.datetime | None = None
              ) -> list[Claimed]:
    """Claim up to ``limit`` pending rows whose time has come, oldest due first (see the
    module's docstring); committed."""
    now = now or utcnow()
    due = (LtiScore.state == STATE_PENDING) & (LtiScore.next_attempt_at <= now)
    query = select(LtiScore.id).where(due).order_by(LtiScore.next_attempt_at,
                                                    LtiScore.id).limit(limit)
    ids: list[int] = []
    if _is_postgresql(session):
        ids = list(session.execute(query.with_for_update(skip_locked=True)).scalars())
        if ids:
            session.execute(update(LtiScore).where(LtiScore.id.in_(ids)).values(
                next_attempt_at=now + HOLD, attempts=LtiScore.attempts + 1))
        session.commit()
    else:
        candidates = list(session.execute(query).scalars())
        session.rollback()  # no read snapshot held into the writes
        for row_id in candidates:
            won = rowcount(session.execute(update(LtiScore).where(LtiScore.id == row_id, due)
                                           .values(next_attempt_at=now + HOLD,
                                                   attempts=LtiScore.attempts + 1)))
            session.commit()
            if won == 1:
                ids.append(row_id)
    claimed = [_claimed(session, row_id) for row_id in ids]
    session.rollback()
    return [c for c in claimed if c is not None]


def _claimed(session: DbSession, row_id: int) -> Claimed | None:
    found = session.execute(
        select(LtiScore, LtiLineItem, LtiAccount, LtiPlatform)
        .join(LtiLineItem, LtiLineItem.id == LtiScore.line_item_id)
        .join(LtiAccount, LtiAccount.id == LtiScore.account_id)
        .join(LtiPlatform, LtiPlatform.id == LtiLineItem.platform_id)
        .where(LtiScore.id == row_id)).first()
    if found is None:
        return None
    score, item, account, platform = found
    return Claimed(
        id=score.id, version=score.updated_at, attempts=score.attempts, issuer=platform.issuer,
        client_id=platform.client_id, sub=account.sub, line_item_id=item.id,
        exercise=item.exercise, resource_link_id=item.resource_link_id,
        lineitem_url=item.lineitem_url, lineitems_url=item.lineitems_url,
        scopes=tuple(item.scopes or ()), score_given=score.score_given,
        score_maximum=score.score_maximum, activity_progress=score.activity_progress,
        grading_progress=score.grading_progress, comment=score.comment,
        scored_at=score.scored_at)


@dataclass(frozen=True)
class Retry:
    """How failed sends are tried again: after ``first``, doubling up to ``longest``, each
    wait times a random factor within ``jitter`` either way, for ``give_up_after`` counted
    from when the score was made."""

    first: dt.timedelta = dt.timedelta(seconds=30)
    longest: dt.timedelta = dt.timedelta(minutes=30)
    jitter: float = 0.2
    give_up_after: dt.timedelta = dt.timedelta(days=7)

    def backoff(self, attempts: int) -> dt.timedelta:
        """The wait after the ``attempts``-th failed attempt."""
        base = min(self.first * 2 ** max(0, min(attempts - 1, 20)), self.longest)
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


#: The service's retries (the tests make theirs shorter).
DEFAULT_RETRY = Retry()


def record(session: DbSession, claimed: Claimed, answer: Answer, retry: Retry = DEFAULT_RETRY,
           now: dt.datetime | None = None) -> str:
    """Record ``answer`` to the send of ``claimed``; committed. The row's state afterwards
    (``sent``, ``pending`` to be tried again, ``failed``), or ``replaced`` when a newer score
    took the row meanwhile (only its last answer is recorded then)."""
    now = now or utcnow()
    error = None if answer.error is None else answer.error[:MAX_ERROR]
    if answer.lineitem_url:
        session.execute(update(LtiLineItem).where(LtiLineItem.id == claimed.line_item_id,
                                                  LtiLineItem.lineitem_url.is_(None))
                        .values(lineitem_url=answer.lineitem_url[:2000]))
    same = (LtiScore.id == claimed.id) & (LtiScore.updated_at == claimed.version)
    values: dict[str, object] = {"last_status": answer.status, "last_error": error}
    state: str
    if answer.ok:
        state = STATE_SENT
        values.update(state=STATE_SENT, sent_at=now)
    elif answer.permanent or now - claimed.scored_at >= retry.give_up_after:
        state = STATE_FAILED
        if not answer.permanent:
            values["last_error"] = f"gave up after {claimed.attempts} attempts: {error}"
        values.update(state=STATE_FAILED)
    else:
        state = STATE_PENDING
        values.update(next_attempt_at=now + retry.backoff(claimed.attempts))
    changed = rowcount(session.execute(
        update(LtiScore).where(same, LtiScore.state == STATE_PENDING).values(**values)))
    if not changed:
        session.execute(update(LtiScore).where(LtiScore.id == claimed.id).values(
            last_status=answer.status, last_error=error))
        state = "replaced"
    if answer.ok:
        _platform_is_back(session, claimed, now)
    session.commit()
    return state


def _platform_is_back(session: DbSession, claimed: Claimed, now: dt.datetime) -> None:
    """The platform took a score: its other scores waiting out a backoff are due now, not
    after the rest of their wait (up to 30 minutes after an outage). Only waits longer than
    twice :data:`HOLD` are cut short: a row held by a sender (due at its claim plus ``HOLD``)
    is left alone, even with the hosts' clocks a little apart, so no row is taken twice."""
    platform = select(LtiLineItem.id).where(LtiLineItem.platform_id == select(
        LtiLineItem.platform_id).where(LtiLineItem.id == claimed.line_item_id)
        .scalar_subquery())
    session.execute(update(LtiScore).where(
        LtiScore.state == STATE_PENDING, LtiScore.next_attempt_at > now + 2 * HOLD,
        LtiScore.line_item_id.in_(platform)).values(next_attempt_at=now))


def retry_failed(session: DbSession, row_id: int | None = None) -> int:
    """Make failed rows (one, or all) pending again, due now, attempts from 0: the
    instructor's "retry now". Committed; how many."""
    query = update(LtiScore).where(LtiScore.state == STATE_FAILED)
    if row_id is not None:
        query = query.where(LtiScore.id == row_id)
    changed = rowcount(session.execute(query.values(
        state=STATE_PENDING, attempts=0, next_attempt_at=utcnow())))
    session.commit()
    return changed


@dataclass(frozen=True)
class FailedRow:
    """A row the queue page lists: whose score, where, and the platform's last answer."""

    id: int
    student_id: str | None
    sub: str
    exercise: str
    issuer: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    updated_at: dt.datetime

    @property
    def failed(self) -> bool:
        return self.state == STATE_FAILED


@dataclass(frozen=True)
class OutboxState:
    """The outbox on the queue page and in the metrics."""

    counts: dict[str, int]
    oldest_pending: dt.datetime | None
    #: Failed rows, and pending rows whose last attempt failed: newest first.
    troubled: list[FailedRow]


def outbox_counts(session: DbSession) -> dict[str, int]:
    found = {str(STATE_PENDING): 0, str(STATE_SENT): 0, str(STATE_FAILED): 0}
    for state, count in session.execute(select(LtiScore.state, func.count(LtiScore.id))
                                        .group_by(LtiScore.state)):
        found[state] = count
    return found


def outbox_state(session: DbSession, limit: int = 20) -> OutboxState:
    oldest = session.execute(select(func.min(LtiScore.scored_at))
                             .where(LtiScore.state == STATE_PENDING)).scalar_one()
    rows = session.execute(
        select(LtiScore, LtiAccount.sub, Student.student_id, LtiLineItem.exercise,
               LtiPlatform.issuer)
        .join(LtiAccount, LtiAccount.id == LtiScore.account_id)
        .outerjoin(Student, Student.id == LtiAccount.student_pk)
        .join(LtiLineItem, LtiLineItem.id == LtiScore.line_item_id)
        .join(LtiPlatform, LtiPlatform.id == LtiLineItem.platform_id)
        .where((LtiScore.state == STATE_FAILED)
               | ((LtiScore.state == STATE_PENDING) & LtiScore.last_error.is_not(None)))
        .order_by(LtiScore.updated_at.desc(), LtiScore.id.desc()).limit(limit))
    troubled = [FailedRow(score.id, student_id, sub, exercise, issuer, score.state,
                          score.attempts, score.last_status, score.last_error, score.updated_at)
                for score, sub, student_id, exercise, issuer in rows]
    return OutboxState(outbox_counts(session), oldest, troubled)
