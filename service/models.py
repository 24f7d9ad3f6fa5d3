"""Database models: students, submissions, grading runs, item scores; instructors, their failed
logins, and the heartbeats of grading workers; the API's idempotency keys; the LTI 1.3
platforms the tool is registered with, their deployments, the tool's signing keys and the launch
nonces already used, the platforms' users and the courses they were seen in, the resource links
launched (``service.domain.lti_registrations``, ``lti_keys``, ``lti_nonces``, ``lti_accounts``,
``lti_links``); the trained models' fingerprints of graded runs, the similarity runs over an
exercise's submissions, their pairs and the instructors' decisions on them
(``service.domain.similarity``); the blobs of the database blob store (``service.blobs``).

A submission is the notebook a student handed in; each time it is graded (the first time, or a
regrade) a new :class:`GradingRun` is made and old runs are kept. The run is also the queue's job
row: its ``state``, ``lease_expires_at`` and ``worker`` are how workers claim it
(``service.queue``), and ``task_id`` is the Celery task id when Celery carries it.

States are stored as their strings but read back as the enums of ``service.states`` (a run's
``state`` is a :class:`~service.states.RunState`, its ``outcome`` a ``grader.Outcome``), so
code compares members, never bare strings.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Enum,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.extensions import Model
from service.states import (
    GpuNeed,
    ItemStatus,
    Outcome,
    ReviewDecision,
    RunState,
    SimilarityState,
    WorkerKind,
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def enum_column(enum: type[StrEnum], length: int) -> Enum:
    """A ``VARCHAR(length)`` holding the members' values (not their names), read back as
    members. No database enum type and no CHECK constraint: adding a member needs no migration,
    and the column is the plain string column it always was."""
    return Enum(enum, native_enum=False, create_constraint=False, length=length,
                values_callable=lambda members: [member.value for member in members])


class Student(UserMixin, Model):
    __tablename__ = "students"

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(200), default="")
    #: sha256 of the personal access token (the token itself is shown once, at import).
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    submissions: Mapped[list[Submission]] = relationship(back_populates="student")

    #: Role checks read this on ``current_user`` (students and instructors share the session).
    is_instructor = False

    def get_id(self) -> str:
        return f"student:{self.id}"


class Submission(Model):
    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_student_created", "student_pk", "created_at"),
        # the gradebook, the statistics and "regrade all" read an exercise's submissions
        Index("ix_submissions_exercise_created", "exercise", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_pk: Mapped[int] = mapped_column(ForeignKey("students.id"))
    exercise: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    #: Content address of the uploaded bytes in the upload store.
    notebook_sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    student: Mapped[Student] = relationship(back_populates="submissions")
    runs: Mapped[list[GradingRun]] = relationship(
        back_populates="submission", order_by="GradingRun.id"
    )

    @property
    def latest_run(self) -> GradingRun | None:
        return self.runs[-1] if self.runs else None


class IdempotencyKey(Model):
    """A client's ``Idempotency-Key`` on ``POST /api/submissions``, and the answer it got: a
    retry with the same key (same student) gets the same submission back, never a second one.
    ``request_sha256`` fingerprints what was sent (exercise, filename, notebook), so a key
    reused for something else is refused. Kept as long as the submission (a key is a
    client's promise of "this request", not a cache entry); the unique constraint is the last
    guard if two requests with one key ever raced past the student's lock."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("student_pk", "key", name="uq_idempotency_keys_student_key"),
        Index("ix_idempotency_keys_submission", "submission_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_pk: Mapped[int] = mapped_column(ForeignKey("students.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_sha256: Mapped[str] = mapped_column(String(64))
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))
    #: Whether the first answer was "a duplicate of an earlier submission" (said again).
    duplicate: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    submission: Mapped[Submission] = relationship()


class GradingRun(Model):
    __tablename__ = "grading_runs"
    __table_args__ = (
        Index("ix_grading_runs_state", "state", "id"),
        # a submission's runs, oldest first (``Submission.runs``, its latest run): every page
        # and API answer about a submission asks for them
        Index("ix_grading_runs_submission", "submission_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))
    #: Where the run is in the queue: queued -> running -> graded | failed.
    state: Mapped[RunState] = mapped_column(enum_column(RunState, 16), default=RunState.QUEUED)
    #: Why the run failed, or why grading stopped early (timeout...), for people.
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None]
    task_id: Mapped[str | None] = mapped_column(String(200))
    queued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: When the run was last handed to the broker (Celery); re-sent if it sits queued too long.
    dispatched_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    #: Live progress while running: cell, count, elapsed, last printed line.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: What the grader said (graded, timeout, out_of_memory, ...), set on a graded run, with its
    #: report and scores.
    outcome: Mapped[Outcome | None] = mapped_column(enum_column(Outcome, 32))
    score: Mapped[float | None]
    max_score: Mapped[float | None]
    measured_accuracy: Mapped[float | None]
    claimed_accuracy: Mapped[float | None]
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Content address of the executed notebook rendered to HTML.
    executed_html_sha256: Mapped[str | None] = mapped_column(String(64))
    #: What the run asks of the GPUs (its exercise's ``[runtime] gpu`` when it was made): the
    #: claims route it by this (``service.queue.claims``, ``service.queue.gpu_leases``).
    gpu: Mapped[GpuNeed] = mapped_column(enum_column(GpuNeed, 16), default=GpuNeed.NONE,
                                         server_default=GpuNeed.NONE.value)

    submission: Mapped[Submission] = relationship(back_populates="runs")
    items: Mapped[list[ItemScore]] = relationship(
        back_populates="run", order_by="ItemScore.position", cascade="all, delete-orphan"
    )

    @property
    def is_live(self) -> bool:
        """Queued or running: no result yet."""
        return self.state.is_live


class GpuLease(Model):
    """One GPU (or MIG instance) of one grading host, and the run it is lent to, if any
    (``service.queue.gpu_leases``). A device is lent to one run at a time: taken by
    compare-and-set, renewed with the run's lease, given back when the run ends; the lease of
    a worker that died runs out and the device can be taken again. ``dirty``: its memory was
    not free after a run, so it is not lent again until a check finds it free."""

    __tablename__ = "gpu_leases"
    __table_args__ = (UniqueConstraint("host", "device", name="uq_gpu_leases_host_device"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The grading host (``GPU_HOST``, default its hostname): UUIDs are per machine.
    host: Mapped[str] = mapped_column(String(255))
    #: ``GPU-…`` or ``MIG-…`` UUID, as ``nvidia-smi -L`` prints it.
    device: Mapped[str] = mapped_column(String(128))
    #: The worker holding the device, the run it grades on it (``None`` while choosing one).
    worker: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[int | None]
    expires_at: Mapped[dt.datetime | None]
    dirty: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: MiB in use at the last check (after a run, or while dirty), for the people looking.
    used_mib: Mapped[int | None]
    checked_at: Mapped[dt.datetime | None]


class ItemScore(Model):
    __tablename__ = "item_scores"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("grading_runs.id"), index=True)
    position: Mapped[int]
    item_id: Mapped[str] = mapped_column(String(64))
    score: Mapped[float]
    max_score: Mapped[float]
    status: Mapped[ItemStatus] = mapped_column(enum_column(ItemStatus, 16))
    feedback_ja: Mapped[str] = mapped_column(Text, default="")
    feedback_en: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    run: Mapped[GradingRun] = relationship(back_populates="items")


class Instructor(UserMixin, Model):
    """Course staff: a username and a password hash (werkzeug's scrypt), made by the CLI."""

    __tablename__ = "instructors"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    #: Set for a password the CLI generated (and printed): it must be replaced at first login.
    must_change_password: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]

    is_instructor = True

    @property
    def name(self) -> str:
        return self.username

    def get_id(self) -> str:
        return f"instructor:{self.id}"


class LoginFailure(Model):
    """One failed instructor login, kept for the throttle window (``service.domain.throttle``).
    In the database rather than in memory so that every service process sees the same count."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Worker(Model):
    """A grading worker's heartbeat (``service.queue.heartbeats``): embedded threads beat every few
    seconds, Celery tasks while they run. A worker is alive when seen recently."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[WorkerKind] = mapped_column(enum_column(WorkerKind, 16))
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    #: The run it is grading at its last beat, if any.
    run_id: Mapped[int | None]


class Schedule(Model):
    """The course's rules for one exercise (``service.domain.course_rules.Rules`` as a row):
    dates, late penalty, which submission counts, the daily limit, its time zone, its weight in
    the course total and when each part of a result is released. An exercise without a row has
    the defaults: always open, nothing late, best counts, weight 1."""

    __tablename__ = "schedules"

    exercise: Mapped[str] = mapped_column(String(64), primary_key=True)
    opens_at: Mapped[dt.datetime | None]
    due_at: Mapped[dt.datetime | None]
    late_until: Mapped[dt.datetime | None]
    #: ``0``, ``N%``, ``N%/day``, ``N%/hour`` (``course_rules.LatePenalty``).
    late_penalty: Mapped[str] = mapped_column(String(32), default="0")
    counts: Mapped[str] = mapped_column(String(16), default="best")
    attempts_per_day: Mapped[int | None]
    #: IANA name; where a day starts and how dates are shown.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    weight: Mapped[float] = mapped_column(default=1.0)
    #: Part -> when (``course_rules.Part``, ``course_rules.Shown``).
    release: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: When the instructor published the results (the ``on_publish`` release rule).
    published_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="")


class ExtensionGrant(Model):
    """One student's own dates for one exercise (and attempts beyond the daily limit)."""

    __tablename__ = "extension_grants"
    __table_args__ = (
        UniqueConstraint("student_pk", "exercise", name="uq_extension_grants_student_exercise"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_pk: Mapped[int] = mapped_column(ForeignKey("students.id"))
    exercise: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[dt.datetime]
    late_until: Mapped[dt.datetime | None]
    extra_attempts: Mapped[int] = mapped_column(default=0)
    comment: Mapped[str] = mapped_column(Text, default="")
    granted_by: Mapped[str] = mapped_column(String(64), default="")
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    student: Mapped[Student] = relationship()


class Adjustment(Model):
    """One change of an instructor to one student's score of one exercise: points added to, or
    a value set for, one item (``item_id``) or the total (``item_id`` None), or the removal of
    such a change (``mode`` ``remove``). Rows are never updated or deleted: the latest row of a
    (student, exercise, item) is the one in force, the earlier ones are the audit trail, each
    with its author, time, comment and the final score before and after it."""

    __tablename__ = "adjustments"
    __table_args__ = (Index("ix_adjustments_student_exercise", "student_pk", "exercise", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    student_pk: Mapped[int] = mapped_column(ForeignKey("students.id"))
    exercise: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str | None] = mapped_column(String(64))
    #: ``add``, ``set`` or ``remove`` (``course_rules.AdjustMode``).
    mode: Mapped[str] = mapped_column(String(8))
    points: Mapped[float] = mapped_column(default=0.0)
    comment: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: The final score of the exercise just before and just after this change.
    before: Mapped[float | None]
    after: Mapped[float | None]

    student: Mapped[Student] = relationship()


class LtiPlatform(Model):
    """One registration of the tool in an LTI 1.3 platform (a Moodle site, a Canvas instance):
    the platform's issuer and the client id it gave the tool, and where its login, token and
    key set endpoints are. One issuer may hold several client ids (two Canvas developer keys)."""

    __tablename__ = "lti_platforms"
    __table_args__ = (UniqueConstraint("issuer", "client_id",
                                       name="uq_lti_platforms_issuer_client"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    #: The platform's OIDC authorization endpoint (where /lti/login sends the browser).
    auth_login_url: Mapped[str] = mapped_column(String(2000))
    #: The platform's OAuth2 token endpoint (client credentials for grades and rosters).
    auth_token_url: Mapped[str] = mapped_column(String(2000))
    #: The platform's public keys (JWKS), which sign its launches.
    key_set_url: Mapped[str] = mapped_column(String(2000))
    #: The ``aud`` of the tool's token request when it is not the token URL (some platforms).
    audience: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    deployments: Mapped[list[LtiDeployment]] = relationship(
        back_populates="platform", cascade="all, delete-orphan",
        order_by="LtiDeployment.deployment_id")


class LtiDeployment(Model):
    """A deployment of the tool in a platform (a site-wide tool, or one course's): a launch
    naming a deployment id not listed here is refused."""

    __tablename__ = "lti_deployments"
    __table_args__ = (UniqueConstraint("platform_id", "deployment_id",
                                       name="uq_lti_deployments_platform_deployment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platforms.id", ondelete="CASCADE"))
    deployment_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    platform: Mapped[LtiPlatform] = relationship(back_populates="deployments")


class LtiKey(Model):
    """An RSA key of the tool: it signs the tool's JWTs (token requests, deep-linking answers)
    and its public half is served at ``/lti/jwks``. The newest key not retired signs; older
    ones stay published until retired, so that platforms holding a cached key set still check
    what was signed before a rotation. Kept in the database so that every process of the
    service signs with the same key, and never in the repository; a retired key's private half
    is erased."""

    __tablename__ = "lti_keys"
    __table_args__ = (UniqueConstraint("kid", name="uq_lti_keys_kid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64))
    #: PKCS#8 PEM; None once the key is retired.
    private_pem: Mapped[str | None] = mapped_column(Text)
    #: The public JWK as served (kty, n, e, kid, alg, use), so serving the set parses no PEM.
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[dt.datetime | None]


class LtiNonce(Model):
    """A nonce of a platform's launch already accepted, kept until the launch's token expires:
    the same launch posted again is refused (pylti1p3 checks a nonce against the browser's
    session, not against launches already made)."""

    __tablename__ = "lti_nonces"
    __table_args__ = (UniqueConstraint("issuer", "nonce", name="uq_lti_nonces_issuer_nonce"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    nonce: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class LtiLaunchData(Model):
    """One value pylti1p3 keeps between the steps of a launch (the login's state and nonce,
    the launch's claims for a later deep-linking answer or grade), under its key's SHA-256, until
    it expires. In the database rather than in the session cookie: the platform's cross-site
    POST does not bring a ``SameSite=Lax`` cookie, and the claims outgrow a cookie."""

    __tablename__ = "lti_launch_data"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class LtiAccount(Model):
    """A platform's user (the launch's ``sub``) and who they are here: a student of the roster
    or an instructor. Made or updated at each launch (name and email when the platform gives
    them); the key of a student's scores sent back to that platform (``userId``)."""

    __tablename__ = "lti_accounts"
    __table_args__ = (UniqueConstraint("platform_id", "sub", name="uq_lti_accounts_platform_sub"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platforms.id", ondelete="CASCADE"))
    sub: Mapped[str] = mapped_column(String(255))
    student_pk: Mapped[int | None] = mapped_column(ForeignKey("students.id"), index=True)
    instructor_id: Mapped[int | None] = mapped_column(ForeignKey("instructors.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_launch_at: Mapped[dt.datetime | None]

    platform: Mapped[LtiPlatform] = relationship()
    student: Mapped[Student | None] = relationship()
    instructor: Mapped[Instructor | None] = relationship()


class LtiMembership(Model):
    """A platform's user seen in one of its courses (the launch's ``context``, or the course's
    Names and Roles list): grade passback sends a student's score only to the line items of
    the courses they are in (``service.domain.lti_links.score_targets``)."""

    __tablename__ = "lti_memberships"
    __table_args__ = (UniqueConstraint("account_id", "context_id",
                                       name="uq_lti_memberships_account_context"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("lti_accounts.id", ondelete="CASCADE"))
    context_id: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    account: Mapped[LtiAccount] = relationship()


class LtiLineItem(Model):
    """Where the scores of one exercise go in one platform: a resource link (the exercise placed
    in a course of the LMS) and the Assignment and Grade Services claim of its launches: the
    line item's URL when the platform made one for the link, the context's line items
    container otherwise, and the scopes granted. Updated at each launch of the link."""

    __tablename__ = "lti_line_items"
    __table_args__ = (UniqueConstraint("platform_id", "deployment_id", "resource_link_id",
                                       name="uq_lti_line_items_link"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platforms.id", ondelete="CASCADE"))
    deployment_id: Mapped[str] = mapped_column(String(255))
    context_id: Mapped[str | None] = mapped_column(String(255))
    resource_link_id: Mapped[str] = mapped_column(String(255))
    exercise: Mapped[str] = mapped_column(String(64), index=True)
    #: The AGS claim's ``lineitem`` (one line item for this link), when given.
    lineitem_url: Mapped[str | None] = mapped_column(String(2000))
    #: The AGS claim's ``lineitems`` (the context's container), when given.
    lineitems_url: Mapped[str | None] = mapped_column(String(2000))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: The Names and Roles claim's ``context_memberships_url``, when given.
    memberships_url: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    platform: Mapped[LtiPlatform] = relationship()


class LtiScore(Model):
    """The outbox of grade passback: the newest score of one student for one line item, kept
    until the platform has acknowledged it. A newer score replaces the one not yet sent (the
    newest wins) and starts its attempts anew; a send that fails is tried again later
    (``next_attempt_at``, backing off), so a platform that is down loses nothing and delays
    no grading."""

    __tablename__ = "lti_scores"
    __table_args__ = (UniqueConstraint("line_item_id", "account_id",
                                       name="uq_lti_scores_line_item_account"),
                      Index("ix_lti_scores_due", "state", "next_attempt_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    line_item_id: Mapped[int] = mapped_column(ForeignKey("lti_line_items.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("lti_accounts.id", ondelete="CASCADE"),
                                            index=True)
    #: None for a submission that failed or has no counted score yet.
    score_given: Mapped[float | None]
    score_maximum: Mapped[float]
    activity_progress: Mapped[str] = mapped_column(String(32))
    grading_progress: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    #: When the score was made (the AGS ``timestamp``): a platform keeps the newest it got.
    scored_at: Mapped[dt.datetime]
    #: ``pending`` (to send), ``sent`` (acknowledged) or ``failed`` (given up, with a reason).
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: The platform's last answer: HTTP status (None when it could not be reached) and text.
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    line_item: Mapped[LtiLineItem] = relationship()
    account: Mapped[LtiAccount] = relationship()


class RunFingerprint(Model):
    """The trained model's fingerprint of one graded run (``grader.ModelFingerprint``): the
    hash of its trained values and the class it predicted for each image of each plain image
    set, one byte an image, the sets' bytes one after the other in ``images``' order. Kept as
    long as the run; read only by similarity runs, never by a score."""

    __tablename__ = "run_fingerprints"

    run_id: Mapped[int] = mapped_column(ForeignKey("grading_runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    weights: Mapped[str] = mapped_column(String(64), index=True)
    #: ``[[image set, count], ...]``: how to cut ``predictions``.
    images: Mapped[list[Any]] = mapped_column(JSON)
    predictions: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SimilarityRun(Model):
    """One comparison of an exercise's submissions, student by student (``flask similarity
    run``, the dashboard's button): a job on the queue like a grading run, then its pairs. A
    newer run replaces an older one on the review page; the older one's rows are kept."""

    __tablename__ = "similarity_runs"
    __table_args__ = (Index("ix_similarity_runs_exercise", "exercise", "id"),
                      Index("ix_similarity_runs_state", "state", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    exercise: Mapped[str] = mapped_column(String(64))
    state: Mapped[SimilarityState] = mapped_column(enum_column(SimilarityState, 16),
                                                   default=SimilarityState.QUEUED)
    #: Who asked for it (an instructor's username, or ``cli``).
    requested_by: Mapped[str] = mapped_column(String(64), default="")
    queued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    task_id: Mapped[str | None] = mapped_column(String(200))
    #: When it was last handed to the broker (Celery); sent again if it sits queued too long.
    dispatched_at: Mapped[dt.datetime | None]
    #: Why it failed, for people.
    reason: Mapped[str | None] = mapped_column(Text)
    #: Over which submissions: ``{student_id: submission_id}`` (each student's counted one,
    #: else their latest), written when the run starts.
    submissions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: What was compared and how long it took: students, pairs, models, thresholds, seconds.
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    pairs: Mapped[list[SimilarityPair]] = relationship(
        back_populates="run", order_by="SimilarityPair.rank", cascade="all, delete-orphan")


class SimilarityPair(Model):
    """Two students of a similarity run whose code or model look alike, with both signals
    (``None`` where one is missing: no model fingerprint, say) and the marked matching parts
    of their code. ``student_a`` sorts before ``student_b`` (by ``student_id``)."""

    __tablename__ = "similarity_pairs"
    __table_args__ = (Index("ix_similarity_pairs_run_rank", "run_id", "rank"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("similarity_runs.id", ondelete="CASCADE"))
    #: 0 for the pair shown first (flagged first, then the highest signal).
    rank: Mapped[int]
    student_a_pk: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    student_b_pk: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    submission_a_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    submission_b_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    #: Shared code beyond the template, over the larger side's (0..1); None: no code compared.
    code: Mapped[float | None]
    #: Shared k-grams that are neither the template's nor expected (the solution's, the class's).
    distinctive: Mapped[int | None]
    #: The models' error agreement (0..1); None: a side has no (usable) fingerprint.
    model: Mapped[float | None]
    identical_weights: Mapped[bool] = mapped_column(default=False)
    code_flagged: Mapped[bool] = mapped_column(default=False)
    model_flagged: Mapped[bool] = mapped_column(default=False)
    flagged: Mapped[bool] = mapped_column(default=False)
    #: ``{"a": [[start, end], ...], "b": [...]}``: the matching parts of each side's code.
    spans: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    run: Mapped[SimilarityRun] = relationship(back_populates="pairs")
    student_a: Mapped[Student] = relationship(foreign_keys=[student_a_pk])
    student_b: Mapped[Student] = relationship(foreign_keys=[student_b_pk])
    submission_a: Mapped[Submission] = relationship(foreign_keys=[submission_a_id])
    submission_b: Mapped[Submission] = relationship(foreign_keys=[submission_b_id])


class SimilarityReview(Model):
    """An instructor's decision on a pair of students of an exercise, kept across similarity
    runs. Rows are never updated or deleted: the latest row of a (exercise, pair) is the one in
    force, the earlier ones are the audit trail, each with its author, time and comment."""

    __tablename__ = "similarity_reviews"
    __table_args__ = (Index("ix_similarity_reviews_pair", "exercise", "student_a_pk",
                            "student_b_pk", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    exercise: Mapped[str] = mapped_column(String(64))
    student_a_pk: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    student_b_pk: Mapped[int] = mapped_column(ForeignKey("students.id"), index=True)
    decision: Mapped[ReviewDecision] = mapped_column(enum_column(ReviewDecision, 16))
    comment: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Blob(Model):
    """Bytes by their sha256: an uploaded notebook, an executed notebook's HTML. The database
    blob store's one table (``service.blobs.database``, ``BLOB_STORE=database``): rows are
    only ever inserted, and a row that references a hash is committed with or after it."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
