"""A student's submissions a page at a time, for ``GET /api/submissions``.

A student who submits every few minutes for a term has hundreds of submissions; answering all
of them at once, each run loaded by its own query, took seconds and megabytes. A page is one
query for the submissions and one for their runs (``selectinload``), whatever its length.

Pages are keyed by a cursor, the id of the last submission sent (newest first, so the next page
holds the smaller ids): a submission arriving meanwhile shifts nothing, as an offset would.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from service.extensions import DbSession
from service.models import Submission

#: Submissions per page unless ``limit`` says otherwise, and the most one page may hold.
DEFAULT_LIMIT = 50
MAX_LIMIT = 100


def submissions_page(session: DbSession, student_pk: int, limit: int = DEFAULT_LIMIT,
                     cursor: int | None = None) -> tuple[list[Submission], int | None]:
    """Up to ``limit`` of the student's submissions older than ``cursor`` (an id), newest first,
    with their runs loaded; and the cursor of the next page, None on the last one."""
    query = select(Submission).where(Submission.student_pk == student_pk)
    if cursor is not None:
        query = query.where(Submission.id < cursor)
    rows = list(session.execute(
        query.order_by(Submission.id.desc()).limit(limit + 1)
        .options(selectinload(Submission.runs))
    ).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
