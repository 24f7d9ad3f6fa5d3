"""Importing a class roster (CSV: student_id, name, email) and issuing tokens."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sqlalchemy import select

from service.domain.tokens import hash_token, new_token
from service.extensions import db
from service.models import Student

COLUMNS = ("student_id", "name", "email")


class RosterError(ValueError):
    """A roster that cannot be imported; nothing was written."""


@dataclass(frozen=True)
class Issued:
    student_id: str
    name: str
    token: str  # shown once; only its hash is stored


def import_roster(text: str, *, rotate: bool = False) -> tuple[list[Issued], list[str]]:
    """Add the students of a CSV roster. New students get a token; existing ones keep theirs
    unless ``rotate``. Returns (tokens issued, student ids left unchanged)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if reader.fieldnames is None or not set(COLUMNS) <= {f.strip() for f in reader.fieldnames}:
        raise RosterError(f"the roster needs the columns {', '.join(COLUMNS)} "
                          f"(found: {', '.join(reader.fieldnames or [])})")
    rows = []
    for line, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        if not row["student_id"] or not row["name"]:
            raise RosterError(f"line {line}: student_id and name are required")
        rows.append(row)
    ids = [r["student_id"] for r in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise RosterError(f"student_id {duplicates[0]} appears twice")
    issued: list[Issued] = []
    unchanged: list[str] = []
    for row in rows:
        student = db.session.execute(
            select(Student).where(Student.student_id == row["student_id"])
        ).scalar_one_or_none()
        if student is None:
            token = new_token()
            db.session.add(Student(student_id=row["student_id"], name=row["name"],
                                   email=row["email"], token_hash=hash_token(token)))
            issued.append(Issued(row["student_id"], row["name"], token))
            continue
        student.name, student.email = row["name"], row["email"]
        if rotate:
            token = new_token()
            student.token_hash = hash_token(token)
            issued.append(Issued(row["student_id"], row["name"], token))
        else:
            unchanged.append(row["student_id"])
    db.session.commit()
    return issued, unchanged
