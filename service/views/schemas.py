"""The JSON API's answers as pydantic models: the handlers build their bodies from these, and
``service.views.openapi`` derives the document's component schemas from the same classes, so
the published schema and what is sent cannot drift apart.

A model here describes the wire format, not the database: times are naive UTC ``datetime``
values written as ISO 8601 with a ``Z``; an item is the grader's report item as stored (keys a
newer grader adds pass through untouched).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from flask import current_app, url_for
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, computed_field
from pydantic.json_schema import SkipJsonSchema

from grader import Exercise as ExerciseSpec
from service import models
from service.domain.student_gradebook import student_gradebook
from service.domain.submissions import known_exercises
from service.extensions import db
from service.queue import claims
from service.states import ItemStatus, Outcome, RunState
from service.views import notices

#: The largest row id every supported database holds (PostgreSQL's ``INTEGER``): routes take
#: ids with ``<int(max=MAX_ID):...>``, so a larger one is an unknown address (404), never a
#: query the driver cannot even send (a 500), and the OpenAPI document says the same bound.
MAX_ID = 2**31 - 1
#: The URL rule of a submission id.
SUBMISSION_ID = f"<int(max={MAX_ID}):submission_id>"


def _utc(value: dt.datetime) -> str:
    return value.isoformat() + "Z"


#: A naive UTC time from the database, sent as ``2024-05-01T09:30:00Z``.
UtcTime = Annotated[dt.datetime, PlainSerializer(_utc, return_type=str),
                    WithJsonSchema({"type": "string", "format": "date-time"})]

class LocalizedText(BaseModel):
    """A text in both languages of the course."""

    ja: str = ""
    en: str = ""


class Error(BaseModel):
    """Every refusal: a code to branch on, a message to show; ``message_ja`` when the reason is
    one the student should read (an upload refused by the rules)."""

    model_config = ConfigDict(title="Error")

    error: str
    message: str
    message_ja: Annotated[str | None, WithJsonSchema({"type": "string"})] = None

    def body(self) -> dict[str, Any]:
        """The JSON object sent (no ``message_ja`` key when there is none)."""
        return self.model_dump(mode="json", exclude_none=True)


class Item(BaseModel):
    """One graded item of a run, as the grader's report holds it."""

    model_config = ConfigDict(extra="allow")

    id: str
    #: None while the release rules withhold the score (``Submission.withheld``).
    score: float | None
    max_score: float
    #: None with ``score``: ``correct``, ``partial`` and ``incorrect`` judge the score.
    status: ItemStatus | None
    feedback: LocalizedText
    title: LocalizedText | None = None
    details: dict[str, Any] | None = None
    cell_index: int | None = None


class ExecutedOmitted(BaseModel):
    """Why a finished run has no executed notebook to show; its score is not affected."""

    #: ``too_large`` (over the display caps), ``too_slow`` (rendering ran past its deadline),
    #: ``render_error``.
    reason: Literal["too_large", "too_slow", "render_error"]
    message: LocalizedText

    @classmethod
    def of(cls, omitted: dict[str, Any]) -> ExecutedOmitted:
        reason = omitted.get("reason")
        return cls(reason=reason if reason in ("too_large", "too_slow") else "render_error",
                   message=LocalizedText(**notices.executed_omitted_both(omitted)))


class Withheld(BaseModel):
    """A part of a result the course's release rules keep from the student for now."""

    #: ``score`` (total and items: null), ``feedback`` (items' feedback empty, details gone),
    #: ``test_accuracy`` (the test sets' figures gone), ``holdout_accuracy`` (the held-out
    #: figures gone; accuracy and score counted on the public test images, provisional).
    part: Literal["score", "feedback", "test_accuracy", "holdout_accuracy"]
    #: When it is shown (ISO 8601, UTC); null: when the instructor publishes the results, or
    #: never.
    until: UtcTime | None = None


#: How the OpenAPI document marks a field kept for older clients.
_DEPRECATED: dict[str, Any] = {"deprecated": True}


class Submission(BaseModel):
    """A submission with its latest grading run: state, outcome, score, feedback, queue
    position; as the release rules let the student see it (``withheld`` says what is not shown
    yet).

    ``status`` and ``run_status`` are the names ``state`` and ``outcome`` had before the API
    used the service's words (``service/states.py``); they are sent still, with the same
    values, and marked deprecated in the OpenAPI document."""

    id: int
    exercise: str
    filename: str | None = None
    state: RunState = Field(description="where the grading run is in the queue (the run row's "
                                        "``state``): queued, running, graded or failed")
    outcome: Outcome | None = Field(
        default=None, description="how the grading run ended, the grader's verdict (the run "
                                  "row's ``outcome``); set only on a ``graded`` run")
    reason: str | None = None
    score: float | None = None
    max_score: float | None = None
    items: list[Item] = []
    measured_accuracy: float | None = None
    claimed_accuracy: float | None = None
    notes: list[LocalizedText] = []
    created_at: UtcTime
    started_at: UtcTime | None = None
    finished_at: UtcTime | None = None
    attempt: int = 0
    runs: int = 0
    queue_position: int | None = None
    progress: dict[str, Any] | None = None
    #: Set only once the run has an executed notebook to show.
    executed_notebook_url: Annotated[str | None, WithJsonSchema({"type": "string"})] = None
    #: Set only when the run finished without one: why (the score is not affected).
    executed_notebook_omitted: ExecutedOmitted | SkipJsonSchema[None] = None
    #: What the release rules hide from the student for now (``service.domain.release``).
    withheld: list[Withheld] = []

    @classmethod
    def of(cls, submission: models.Submission) -> Submission:
        """A submission row as the API shows it, with its latest run (none yet: queued)."""
        run = submission.latest_run
        if run is None:
            return cls(id=submission.id, exercise=submission.exercise,
                       filename=submission.filename, state=RunState.QUEUED, outcome=None,
                       reason=None, score=None, max_score=None, items=[],
                       measured_accuracy=None, claimed_accuracy=None, notes=[],
                       created_at=submission.created_at, started_at=None, finished_at=None,
                       attempt=0, runs=len(submission.runs), queue_position=None,
                       progress=None)
        report = run.report or {}
        extra: dict[str, Any] = {}
        if run.executed_html_sha256:
            extra["executed_notebook_url"] = url_for(
                "web.executed_notebook", submission_id=submission.id, _external=True)
        elif isinstance(report.get("executed_html_omitted"), dict):
            extra["executed_notebook_omitted"] = ExecutedOmitted.of(
                report["executed_html_omitted"])
        return cls(
            id=submission.id, exercise=submission.exercise, filename=submission.filename,
            state=run.state, outcome=run.outcome, reason=run.reason, score=run.score,
            max_score=run.max_score, items=report.get("items", []),
            measured_accuracy=run.measured_accuracy, claimed_accuracy=run.claimed_accuracy,
            notes=report.get("notes", []), created_at=submission.created_at,
            started_at=run.started_at, finished_at=run.finished_at, attempt=run.attempts,
            runs=len(submission.runs), queue_position=claims.queue_position(db.session, run.id),
            progress=run.progress if run.state == RunState.RUNNING else None, **extra,
        )

    # Computed from the fields they alias, so they cannot disagree; always sent. Marked
    # deprecated in the schema only (pydantic's ``deprecated=`` would warn on every answer).
    @computed_field(description="deprecated alias of ``state`` (same value)",
                    json_schema_extra=_DEPRECATED)
    def status(self) -> RunState:
        return self.state

    @computed_field(description="deprecated alias of ``outcome`` (same value)",
                    json_schema_extra=_DEPRECATED)
    def run_status(self) -> Outcome | None:
        return self.outcome

    def body(self) -> dict[str, Any]:
        """The JSON object sent. Fields never set are left out: ``executed_notebook_url``
        before there is a notebook, and an item's keys its report does not hold."""
        return self.model_dump(mode="json", exclude_unset=True)


class Accepted(BaseModel):
    """The answer to an upload: where to follow it, and whether it repeated a recent one."""

    id: int
    status_url: str
    duplicate: bool = False


class ExerciseItem(BaseModel):
    """A graded item of an exercise and the points it is worth."""

    id: str
    points: float
    title: LocalizedText


class Exercise(BaseModel):
    """An exercise open for submission, with its items and their points."""

    id: str
    title: LocalizedText
    max_score: float
    items: list[ExerciseItem]

    @classmethod
    def of(cls, exercise: ExerciseSpec) -> Exercise:
        return cls(
            id=exercise.id, title=LocalizedText(ja=exercise.title.ja, en=exercise.title.en),
            max_score=exercise.max_score,
            items=[ExerciseItem(id=item.id, points=item.points,
                                title=LocalizedText(ja=item.title.ja, en=item.title.en))
                   for item in exercise.items])


class StudentDates(BaseModel):
    """When the student may hand an exercise in: their own dates (an extension) or the
    class's; null: no such date."""

    opens: UtcTime | None = None
    due: UtcTime | None = None
    late_until: UtcTime | None = None
    #: The course's time zone the pages show these dates in (IANA name).
    timezone: str
    #: The student has an extension: ``due`` and ``late_until`` are their own.
    extended: bool = False


class AdjustmentNote(BaseModel):
    """An instructor's change to the student's score, with its comment (not its author)."""

    #: The item changed; null: the exercise's total.
    item: str | None = None
    mode: Literal["add", "set", "remove"]
    #: Null while the exercise's score is withheld.
    points: float | None = None
    comment: str
    at: UtcTime


class GradebookExercise(BaseModel):
    """One exercise of the student's gradebook, by the course's rules. While the score is
    withheld, ``raw``, ``penalty``, ``adjustment``, ``final`` and ``submission_id`` are null;
    while the held-out accuracy is withheld they are ``provisional`` (counted on the public
    test images) and ``submission_id`` is null."""

    exercise: str
    title: LocalizedText
    max_score: float
    weight: float
    dates: StudentDates
    counts: Literal["best", "last"]
    #: ``0``, ``N%``, ``N%/day`` or ``N%/hour`` (docs/course-rules.md).
    late_penalty: str
    #: The counted submission.
    submission_id: int | None = None
    raw: float | None = None
    penalty: float | None = None
    adjustment: float | None = None
    final: float | None = None
    #: The counted submission was late.
    late: bool = False
    provisional: bool = False
    score_hidden: bool = False
    withheld: list[Withheld] = []
    adjustments: list[AdjustmentNote] = []


class Gradebook(BaseModel):
    """The student's own gradebook and course total (``GET /api/gradebook``)."""

    student_id: str
    exercises: list[GradebookExercise]
    #: The weighted course total in percent over the exercises whose score is shown (an
    #: exercise without a final counts 0); null when none is shown.
    total: float | None = None
    #: Some exercise in the total is provisional.
    provisional: bool = False
    #: Exercises whose score is withheld, left out of ``total``.
    hidden_from_total: list[str] = []


#: The models published as ``#/components/schemas/<name>``.
COMPONENTS: tuple[type[BaseModel], ...] = (Error, Item, ExecutedOmitted, Withheld, Submission,
                                           Accepted, Exercise, StudentDates, AdjustmentNote,
                                           GradebookExercise, Gradebook)


def gradebook_of(student: models.Student, now: dt.datetime | None = None) -> Gradebook:
    """The student's gradebook over the exercises the service knows, as they may see it."""
    config = current_app.config["GRADER"]
    exercises = {exercise_id: config.exercise(exercise_id) for exercise_id in known_exercises()}
    book = student_gradebook(db.session, [(e.id, e.max_score) for e in exercises.values()],
                             student.id, now or models.utcnow())
    return Gradebook(
        student_id=student.student_id,
        exercises=[GradebookExercise(
            exercise=row.exercise,
            title=LocalizedText(ja=exercises[row.exercise].title.ja,
                                en=exercises[row.exercise].title.en),
            max_score=row.max_score, weight=row.weight,
            dates=StudentDates(opens=row.dates.opens, due=row.dates.due,
                               late_until=row.dates.late_until, timezone=row.timezone,
                               extended=row.extended),
            counts=row.counts.value, late_penalty=str(row.penalty_rule),
            submission_id=row.submission_id, raw=row.raw, penalty=row.penalty,
            adjustment=row.adjustment, final=row.final, late=row.late,
            provisional=row.provisional, score_hidden=row.score_hidden,
            withheld=[Withheld(part=w.part.value, until=w.until) for w in row.withheld],
            adjustments=[AdjustmentNote(item=note.item_id, mode=note.mode.value,
                                        points=note.points, comment=note.comment, at=note.at)
                         for note in row.notes])
            for row in book.exercises],
        total=book.total, provisional=book.provisional,
        hidden_from_total=book.hidden_from_total)
