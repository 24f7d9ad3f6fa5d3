"""Who a platform's user is here (``lti_accounts``): a student of the roster or an instructor,
found or made from a launch's claims or a Names and Roles member.

A platform names its users by ``sub``, opaque and stable within the platform; the account row
(platform, sub) is the link, made once and refreshed (name, email) at every launch.

A learner with no account yet is linked, in this order, to:

1. a roster student not linked to another user of this platform whose ``student_id`` is the
   platform's LIS person sourcedid (the university's student number, which Moodle and Canvas
   send when the institution fills it in), or whose email is the launch's email (the same
   address, case aside);
2. else a new student, whose ``student_id`` is the first free of: the LIS person sourcedid,
   the email's local part (``alice`` for ``alice@example.org``), and ``lti-`` with the first
   ten hex digits of SHA-256(issuer, sub) (platform-scoped, stable across re-registrations),
   longer digits if even that is taken. Student ids hold ``[A-Za-z0-9._-]`` only (other
   characters are dropped). The student gets a random token (only its hash is kept, as the
   table requires one; nobody sees it): a learner from the LMS logs in through the LMS.

An instructor (the roles of :func:`is_instructor_roles`) is never linked to an instructor of
the command line: a launch cannot take over a password account whose username it guesses. A
new instructor is ``lti-`` and the email's local part when free, else ``lti-`` and the hash
above; its password hash is :data:`~service.domain.instructors.NO_PASSWORD`, so it logs in only
through the LMS.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from service.domain.instructors import NO_PASSWORD, USERNAME
from service.domain.tokens import hash_token, new_token
from service.extensions import DbSession
from service.models import Instructor, LtiAccount, LtiMembership, Student, utcnow

#: Role URIs (and the short forms LTI 1.3 allows for context roles) that open the dashboard:
#: course instructors, their teaching assistants (any ``membership/Instructor#`` sub-role),
#: and administrators of the course, the institution or the system.
INSTRUCTOR_ROLES = frozenset({
    "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor",
    "http://purl.imsglobal.org/vocab/lis/v2/membership#Administrator",
    "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator",
    "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Instructor",
    "http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator",
    "http://purl.imsglobal.org/vocab/lis/v2/system/person#SysAdmin",
    "Instructor", "Administrator",
})
INSTRUCTOR_SUB_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#"
#: The LIS claim holding the person sourcedid.
LIS_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/lis"
#: Characters a derived student id or username keeps.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STUDENT_ID = 64
MAX_NAME = 200


@dataclass(frozen=True)
class Person:
    """What a platform says of a user: from a launch's claims or a Names and Roles member."""

    sub: str
    name: str = ""
    email: str = ""
    sourcedid: str = ""

    @classmethod
    def from_claims(cls, claims: dict[str, object]) -> Person:
        lis = claims.get(LIS_CLAIM)
        return cls.of(str(claims.get("sub") or ""), claims,
                      str(lis.get("person_sourcedid") or "") if isinstance(lis, dict) else "")

    @classmethod
    def from_member(cls, member: dict[str, object]) -> Person:
        return cls.of(str(member.get("user_id") or ""), member,
                      str(member.get("lis_person_sourcedid") or ""))

    @classmethod
    def of(cls, sub: str, fields: dict[str, object], sourcedid: str) -> Person:
        name = str(fields.get("name") or "").strip() or " ".join(
            str(fields.get(part) or "").strip() for part in ("given_name", "family_name")
        ).strip()
        return cls(sub=sub, name=name[:MAX_NAME], email=str(fields.get("email") or "").strip(),
                   sourcedid=sourcedid.strip())


def is_instructor_roles(roles: Iterable[str]) -> bool:
    """Whether a launch with ``roles`` is course staff (instructor, teaching assistant,
    administrator) rather than a learner."""
    return any(role in INSTRUCTOR_ROLES or role.startswith(INSTRUCTOR_SUB_ROLE)
               for role in roles)


def find_account(session: DbSession, platform_id: int, sub: str) -> LtiAccount | None:
    return session.execute(select(LtiAccount).where(
        LtiAccount.platform_id == platform_id, LtiAccount.sub == sub)).scalar_one_or_none()


def link_student(session: DbSession, platform_id: int, issuer: str, person: Person,
                 *, launched: bool = True) -> tuple[LtiAccount, bool]:
    """The account of ``person`` linked to a student (found or made, see the module's
    docstring), its name and email refreshed; and whether a student was created. ``launched``
    stamps ``last_launch_at`` (a roster sync does not). Does not commit."""
    account = find_account(session, platform_id, person.sub)
    created = False
    if account is None:
        account = LtiAccount(platform_id=platform_id, sub=person.sub)
        session.add(account)
    if account.student is None:
        student = _roster_student(session, platform_id, person)
        if student is None:
            student = Student(student_id=_free_student_id(session, issuer, person),
                              name=person.name or person.email or person.sub[:MAX_NAME],
                              email=person.email[:MAX_NAME],
                              token_hash=hash_token(new_token()))
            session.add(student)
            created = True
        account.student = student
    _refresh(account, person, launched)
    if person.name:
        account.student.name = person.name
    if person.email:
        account.student.email = person.email[:MAX_NAME]
    session.flush()
    return account, created


def link_instructor(session: DbSession, platform_id: int, issuer: str,
                    person: Person) -> LtiAccount:
    """The account of ``person`` linked to an instructor (found, or made without a usable
    password). Does not commit."""
    account = find_account(session, platform_id, person.sub)
    if account is None:
        account = LtiAccount(platform_id=platform_id, sub=person.sub)
        session.add(account)
    if account.instructor is None:
        instructor = Instructor(username=_free_username(session, issuer, person),
                                password_hash=NO_PASSWORD, must_change_password=False)
        session.add(instructor)
        account.instructor = instructor
    _refresh(account, person, True)
    session.flush()
    return account


def join_context(session: DbSession, account: LtiAccount, context_id: str | None) -> None:
    """Record that ``account`` is in the platform's course ``context_id`` (once). Does not
    commit."""
    if not context_id:
        return
    session.flush()  # the account's id
    held = session.execute(select(LtiMembership.id).where(
        LtiMembership.account_id == account.id, LtiMembership.context_id == context_id))
    if held.first() is None:
        session.add(LtiMembership(account_id=account.id, context_id=context_id[:255]))


def student_accounts(session: DbSession, student_pk: int) -> list[LtiAccount]:
    """The platform accounts linked to a student (one per platform user), oldest first."""
    return list(session.scalars(select(LtiAccount).where(LtiAccount.student_pk == student_pk)
                                .order_by(LtiAccount.id)))


def _refresh(account: LtiAccount, person: Person, launched: bool) -> None:
    if person.name:
        account.name = person.name
    if person.email:
        account.email = person.email[:320]
    if launched:
        account.last_launch_at = utcnow()


def _roster_student(session: DbSession, platform_id: int, person: Person) -> Student | None:
    """A roster student this person is, not yet linked to another user of the platform."""
    linked = select(LtiAccount.student_pk).where(LtiAccount.platform_id == platform_id,
                                                 LtiAccount.student_pk.is_not(None))
    free = select(Student).where(Student.id.not_in(linked))
    if person.sourcedid:
        found = session.execute(free.where(Student.student_id == person.sourcedid)).scalar()
        if found is not None:
            return found
    if person.email:
        return session.execute(free.where(
            func.lower(Student.email) == person.email.lower()).order_by(Student.id)).scalar()
    return None


def scoped_hash(issuer: str, sub: str) -> str:
    """SHA-256 of the issuer and sub, hex: the same user of the same platform, always."""
    return hashlib.sha256(f"{issuer}\n{sub}".encode()).hexdigest()


def _candidates(prefix: str, issuer: str, person: Person, named: Iterable[str]) -> list[str]:
    found = [prefix + _UNSAFE.sub("", text)[:MAX_STUDENT_ID - len(prefix)] for text in named]
    digest = scoped_hash(issuer, person.sub)
    found += [f"lti-{digest[:n]}" for n in (10, 16, 32, 56)]
    return [c for c in found if c.strip(".-_") and c != prefix]


def _free_student_id(session: DbSession, issuer: str, person: Person) -> str:
    local = person.email.split("@", 1)[0] if "@" in person.email else ""
    for candidate in _candidates("", issuer, person, (person.sourcedid, local)):
        taken = session.execute(select(Student.id).where(Student.student_id == candidate))
        if taken.first() is None:
            return candidate
    raise RuntimeError(f"no free student id for {person.sub!r}")  # 2**224 hashes taken


def _free_username(session: DbSession, issuer: str, person: Person) -> str:
    local = person.email.split("@", 1)[0].lower() if "@" in person.email else ""
    for candidate in _candidates("lti-", issuer, person, (local,)):
        if not USERNAME.match(candidate):
            continue
        taken = session.execute(select(Instructor.id).where(Instructor.username == candidate))
        if taken.first() is None:
            return candidate
    raise RuntimeError(f"no free username for {person.sub!r}")
