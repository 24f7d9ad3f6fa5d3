"""Instructors' adjustments of one student's score: added or set points on one item or the
total, with a required comment, kept across regrades on top of whichever run counts
(``service.domain.final_grade``). A row is never changed: each adjustment records the final
score just before and just after it, so the rows are the audit trail the dashboard shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.domain.course_rules import RulesError
from service.domain.final_grade import AdjustMode
from service.domain.gradebook import course_gradebook
from service.domain.schedules import adjustment_history, check_adjustment, find_student
from service.extensions import DbSession
from service.models import Adjustment

__all__ = ["AdjustMode", "RulesError", "adjust", "adjustment_history", "final_score"]


def final_score(session: DbSession, student_pk: int, exercise_id: str, max_score: float
                ) -> float | None:
    """The student's final score of the exercise under the course's rules, now."""
    book = course_gradebook(session, [(exercise_id, max_score)], student_pk=student_pk)
    return book.rows[0].exercises[exercise_id].final if book.rows else None


def adjust(session: DbSession, student_id: str, exercise_id: str, max_score: float,
           items: Sequence[str], mode: AdjustMode, points: float, comment: str, author: str,
           item_id: str | None = None) -> Adjustment:
    """Record an adjustment (``mode`` add, set or remove; ``item_id`` None for the total) and
    commit it with the final score before and after. :class:`RulesError` for an unknown student
    or item, a missing comment, a negative set; nothing is stored then."""
    student = find_student(session, student_id)
    check_adjustment(mode, points, comment, item_id, items)
    before = final_score(session, student.id, exercise_id, max_score)
    row = Adjustment(student_pk=student.id, exercise=exercise_id, item_id=item_id,
                     mode=mode.value, points=0.0 if mode is AdjustMode.REMOVE else points,
                     comment=comment.strip(), author=author[:64], before=before)
    session.add(row)
    session.flush()
    row.after = final_score(session, student.id, exercise_id, max_score)
    session.commit()
    return row
