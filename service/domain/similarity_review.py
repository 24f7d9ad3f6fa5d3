"""The review of an exercise's similarity run on the dashboard: the pairs of the latest finished
run (flagged first, as ranked) with both signals, both students' scores and submission times,
and the instructors' decisions on each pair with their audit trail; the pairs as CSV.

A decision (``SimilarityReview``) is about two students of an exercise, not about one run's
pair: it stays in force across runs, and rows are only ever added, so the earlier ones are the
audit trail. A decision never changes a score: the scores shown are the gradebook's
(``service.domain.gradebook``), and changing one is an adjustment's job
(``service.domain.adjustments``). The code shown beside a pair is ``similarity_code``'s.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from service.domain.course_rules import RulesError
from service.domain.csv_export import BOM, format_score, spreadsheet_safe
from service.domain.gradebook import exercise_rows
from service.domain.similarity_runs import latest_run
from service.extensions import db
from service.models import SimilarityPair, SimilarityReview, SimilarityRun, Student
from service.states import ReviewDecision, SimilarityState

#: The longest comment kept with a decision (characters).
MAX_COMMENT = 2000
#: Decisions that need a comment: whoever reads the trail later must see why.
NEEDS_COMMENT = (ReviewDecision.DISMISSED, ReviewDecision.CONFIRMED)
#: The CSV's columns.
CSV_COLUMNS = ("run_id", "run_finished_at", "rank", "student_a", "name_a", "student_b",
               "name_b", "code", "distinctive", "model", "identical_weights", "flagged",
               "score_a", "score_b", "decision", "comment", "decided_by", "decided_at")


@dataclass(frozen=True)
class Side:
    """One student of a pair: who, which submission was compared, and their score."""

    pk: int
    student_id: str
    name: str
    submission_id: int
    #: When the compared submission was handed in.
    submitted_at: dt.datetime
    #: The student's final score of the exercise under the course's rules (the gradebook's).
    final: float | None


@dataclass(frozen=True)
class Decision:
    """One row of a pair's audit trail."""

    id: int
    decision: ReviewDecision
    comment: str
    author: str
    created_at: dt.datetime


@dataclass(frozen=True)
class PairView:
    """A pair as the review page shows it."""

    id: int
    run_id: int
    rank: int
    a: Side
    b: Side
    code: float | None
    distinctive: int | None
    model: float | None
    identical_weights: bool
    code_flagged: bool
    model_flagged: bool
    flagged: bool
    spans: dict[str, Any]
    #: The decisions on these two students of this exercise, oldest first.
    history: tuple[Decision, ...]

    @property
    def in_force(self) -> Decision | None:
        return self.history[-1] if self.history else None

    @property
    def decision(self) -> ReviewDecision:
        return self.history[-1].decision if self.history else ReviewDecision.OPEN


@dataclass(frozen=True)
class Review:
    """An exercise's review: the run shown (the latest finished one), a newer run not finished
    (queued, running, or failed: the page says so), and the pairs."""

    exercise: str
    run: SimilarityRun | None
    newer: SimilarityRun | None
    pairs: list[PairView]

    @property
    def newer_failed(self) -> bool:
        return self.newer is not None and self.newer.state == SimilarityState.FAILED

    @property
    def thresholds(self) -> dict[str, Any]:
        summary = (self.run.summary if self.run else None) or {}
        found = summary.get("thresholds")
        return dict(found) if isinstance(found, dict) else {}

    @property
    def compared(self) -> int:
        """How many submissions (one per student) the run compared."""
        return len(self.run.submissions or {}) if self.run else 0


# --- reading ------------------------------------------------------------------------------------


def load_review(exercise: str) -> Review:
    """The review of ``exercise``: its latest finished run's pairs, flagged first, as ranked."""
    run = latest_run(exercise)
    newest = latest_run(exercise, done=False)
    newer = newest if newest is not None and newest.state != SimilarityState.DONE and (
        run is None or newest.id > run.id) else None
    if run is None:
        return Review(exercise, None, newer, [])
    pairs = db.session.execute(
        select(SimilarityPair).where(SimilarityPair.run_id == run.id)
        .options(selectinload(SimilarityPair.student_a), selectinload(SimilarityPair.student_b),
                 selectinload(SimilarityPair.submission_a),
                 selectinload(SimilarityPair.submission_b))
        .order_by(SimilarityPair.rank, SimilarityPair.id)).scalars().all()
    views = _views(exercise, list(pairs))
    views.sort(key=lambda view: (not view.flagged, view.rank, view.id))
    return Review(exercise, run, newer, views)


def load_pair(exercise: str, pair_id: int) -> PairView | None:
    """One pair of any run of ``exercise`` (None: no such pair there)."""
    pair = find_pair(exercise, pair_id)
    return None if pair is None else _views(exercise, [pair])[0]


def find_pair(exercise: str, pair_id: int) -> SimilarityPair | None:
    """The stored row of :func:`load_pair` (the code view reads its submissions)."""
    pair = db.session.get(SimilarityPair, pair_id)
    return pair if pair is not None and pair.run.exercise == exercise else None


def _views(exercise: str, pairs: list[SimilarityPair]) -> list[PairView]:
    if not pairs:
        return []
    finals = {row.student.id: row.final
              for row in exercise_rows(db.session, exercise, items=False)}
    trails = decision_history(exercise)
    views = []
    for pair in pairs:
        key = _key(pair.student_a_pk, pair.student_b_pk)
        views.append(PairView(
            id=pair.id, run_id=pair.run_id, rank=pair.rank,
            a=_side(pair.student_a, pair.submission_a.id, pair.submission_a.created_at, finals),
            b=_side(pair.student_b, pair.submission_b.id, pair.submission_b.created_at, finals),
            code=pair.code, distinctive=pair.distinctive, model=pair.model,
            identical_weights=pair.identical_weights, code_flagged=pair.code_flagged,
            model_flagged=pair.model_flagged, flagged=pair.flagged,
            spans=dict(pair.spans) if isinstance(pair.spans, dict) else {},
            history=tuple(trails.get(key, ()))))
    return views


def _side(student: Student, submission_id: int, submitted_at: dt.datetime,
          finals: dict[int, float | None]) -> Side:
    return Side(student.id, student.student_id, student.name, submission_id, submitted_at,
                finals.get(student.id))


def _key(pk_a: int, pk_b: int) -> tuple[int, int]:
    """A pair's key whichever way round it is given."""
    return (pk_a, pk_b) if pk_a <= pk_b else (pk_b, pk_a)


def decision_history(exercise: str) -> dict[tuple[int, int], list[Decision]]:
    """Every decision on ``exercise``'s pairs, by pair (student pks, smaller first), oldest
    first: the last of each is the one in force."""
    trails: dict[tuple[int, int], list[Decision]] = {}
    for row in db.session.execute(
            select(SimilarityReview).where(SimilarityReview.exercise == exercise)
            .order_by(SimilarityReview.id)).scalars():
        trails.setdefault(_key(row.student_a_pk, row.student_b_pk), []).append(Decision(
            row.id, ReviewDecision(row.decision), row.comment, row.author, row.created_at))
    return trails


# --- deciding -----------------------------------------------------------------------------------


def record_decision(exercise: str, student_a_pk: int, student_b_pk: int,
                    decision: ReviewDecision | str, comment: str, author: str
                    ) -> SimilarityReview:
    """Add (and commit) an instructor's decision on two students of ``exercise``, the pair a
    similarity run of it reported. :class:`RulesError` (nothing stored) for an unknown decision,
    a dismissal or confirmation without a comment, a comment too long, or two students no run
    paired. Scores are left alone."""
    try:
        chosen = ReviewDecision(decision)
    except ValueError:
        raise RulesError("rules.review_unknown_decision", value=repr(str(decision))) from None
    text = (comment or "").strip()
    if chosen in NEEDS_COMMENT and not text:
        raise RulesError("rules.review_comment_required")
    if len(text) > MAX_COMMENT:
        raise RulesError("rules.review_comment_too_long", max=MAX_COMMENT)
    paired = db.session.execute(
        select(SimilarityPair).join(SimilarityRun, SimilarityPair.run_id == SimilarityRun.id)
        .where(SimilarityRun.exercise == exercise, or_(
            (SimilarityPair.student_a_pk == student_a_pk)
            & (SimilarityPair.student_b_pk == student_b_pk),
            (SimilarityPair.student_a_pk == student_b_pk)
            & (SimilarityPair.student_b_pk == student_a_pk)))
        .order_by(SimilarityPair.id.desc()).limit(1)).scalar_one_or_none()
    if paired is None or student_a_pk == student_b_pk:
        raise RulesError("rules.review_unknown_pair")
    row = SimilarityReview(exercise=exercise, student_a_pk=paired.student_a_pk,
                           student_b_pk=paired.student_b_pk, decision=chosen, comment=text,
                           author=author[:64])
    db.session.add(row)
    db.session.commit()
    return row


# --- the CSV ------------------------------------------------------------------------------------


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _time(value: dt.datetime | None) -> str:
    return "" if value is None else value.replace(microsecond=0).isoformat() + "Z"


def review_csv(review: Review, bom: bool = True) -> str:
    """The review's pairs as CSV (UTF-8, a byte-order mark for Excel): signals as fractions
    (``0.8125``), the decision in force with its comment, author and time. Names and comments
    are people's texts: written so a spreadsheet never runs them as formulas."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    run = review.run
    for pair in review.pairs:
        last = pair.in_force
        writer.writerow([
            pair.run_id, _time(run.finished_at if run else None), pair.rank + 1,
            spreadsheet_safe(pair.a.student_id), spreadsheet_safe(pair.a.name),
            spreadsheet_safe(pair.b.student_id), spreadsheet_safe(pair.b.name),
            _fraction(pair.code), "" if pair.distinctive is None else pair.distinctive,
            _fraction(pair.model), "yes" if pair.identical_weights else "",
            "yes" if pair.flagged else "", format_score(pair.a.final),
            format_score(pair.b.final), pair.decision.value,
            spreadsheet_safe(last.comment) if last else "",
            spreadsheet_safe(last.author) if last else "",
            _time(last.created_at) if last else ""])
    return (BOM if bom else "") + out.getvalue()
