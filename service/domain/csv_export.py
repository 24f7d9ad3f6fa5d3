"""Grades of one exercise as CSV for a learning management system's gradebook import.

Two shapes (docs/dashboard.md says how to import each):

- ``plain`` (default), for Moodle's "Import > CSV file" and for spreadsheets: a header row, then
  one row per student: ``student_id, name, email, score``, then one column per item. In Moodle
  the teacher maps ``student_id`` (to "ID number") or ``email`` (to "Email address") as the
  identifier and ``score`` to the grade item; the item columns can be ignored or mapped.
- ``canvas``, Canvas's gradebook import: the columns ``Student, ID, SIS User ID, SIS Login ID,
  Section`` in that order, then one column named after the exercise, and a ``Points Possible``
  row. Canvas matches students by SIS User ID (our student id) or SIS Login ID (the email here).
  The header carries no ``(number)`` suffix: Canvas reads that as the id of an existing
  assignment; a plain name makes a new assignment, or is matched by name.

Scores are each student's best (``service.domain.gradebook``), written with a decimal point and at
most two decimals; a student with no graded submission has an empty score, which both systems
read as "no grade". The file is UTF-8 with a byte-order mark, which Excel needs to show names
in Japanese and which Moodle and Canvas skip.
"""

from __future__ import annotations

import csv
import io

from grader.spec import Exercise
from service.domain.gradebook import Gradebook, GradeRow

FORMATS = ("plain", "canvas")
BOM = "\ufeff"
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


def format_score(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def grades_csv(exercise: Exercise, rows: list[GradeRow], fmt: str = "plain",
               bom: bool = True) -> str:
    """The CSV text of ``rows`` (one per student, in the given order)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown CSV format {fmt!r} (known: {', '.join(FORMATS)})")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if fmt == "canvas":
        writer.writerow([*CANVAS_COLUMNS, exercise.id])
        writer.writerow(["Points Possible", "", "", "", "", format_score(exercise.max_score)])
        for row in rows:
            student = row.student
            writer.writerow([student.name, "", student.student_id, student.email, "",
                             format_score(row.final)])
    else:
        item_ids = [item.id for item in exercise.items]
        writer.writerow(["student_id", "name", "email", "score", *item_ids])
        for row in rows:
            student = row.student
            items = [format_score(row.items[i].score) if i in row.items else ""
                     for i in item_ids]
            writer.writerow([student.student_id, student.name, student.email,
                             format_score(row.final), *items])
    return (BOM if bom else "") + out.getvalue()


def gradebook_csv(book: Gradebook, fmt: str = "plain", bom: bool = True) -> str:
    """The course's gradebook as CSV: a column per exercise (its final) and the course total.

    A stand-in written for the dashboard's route and tests (issue 18); the real one, with its
    documented columns, comes from another branch and replaces it."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown CSV format {fmt!r} (known: {', '.join(FORMATS)})")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    ids = [column.id for column in book.columns]
    if fmt == "canvas":
        writer.writerow([*CANVAS_COLUMNS, *ids, "total"])
        writer.writerow(["Points Possible", "", "", "", "",
                         *(format_score(c.max_score) for c in book.columns), "100"])
        for row in book.rows:
            writer.writerow([row.student.name, "", row.student.student_id, row.student.email, "",
                             *(format_score(row.exercises[i].final) for i in ids),
                             format_score(row.total.percent)])
    else:
        writer.writerow(["student_id", "name", "email", *ids, "total"])
        for row in book.rows:
            writer.writerow([row.student.student_id, row.student.name, row.student.email,
                             *(format_score(row.exercises[i].final) for i in ids),
                             format_score(row.total.percent)])
    return (BOM if bom else "") + out.getvalue()
