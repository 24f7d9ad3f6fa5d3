"""Grades as CSV for a learning management system's gradebook import: one exercise
(:func:`grades_csv`), or the course's gradebook, a column per exercise and the course total
(:func:`gradebook_csv`).

Two shapes (docs/dashboard.md says how to import each):

- ``plain`` (default), for Moodle's "Import > CSV file" and for spreadsheets: a header row, then
  one row per student: ``student_id, name, email, score``, then, for one exercise, how the score
  was reached (``raw, penalty, adjustment, late``: ``raw - penalty + adjustment = score``,
  ``late`` is ``yes`` when the counted submission was late) and one column per item of the
  counted run; for the gradebook, one column per exercise (its final score) and ``total`` (the
  course total in percent). In Moodle the teacher maps ``student_id`` (to "ID number") or
  ``email`` (to "Email address") as the identifier and ``score`` (or an exercise's column) to
  the grade item; the other columns can be ignored or mapped.
- ``canvas``, Canvas's gradebook import: the columns ``Student, ID, SIS User ID, SIS Login ID,
  Section`` in that order, then one column named after the exercise (for the gradebook: one per
  exercise and ``Course total``, out of 100), and a ``Points Possible`` row. Canvas matches
  students by SIS User ID (our student id) or SIS Login ID (the email here). The header carries
  no ``(number)`` suffix: Canvas reads that as the id of an existing assignment; a plain name
  makes a new assignment, or is matched by name.

Scores are each student's final score under the course's rules (the counted submission, its
late penalty and the instructor's adjustments: ``service.domain.gradebook``,
docs/course-rules.md), written with a decimal point and at
most two decimals; a student with no graded submission has an empty score, which both systems
read as "no grade". The file is UTF-8 with a byte-order mark, which Excel needs to show names
in Japanese and which Moodle and Canvas skip.
"""

from __future__ import annotations

import csv
import io

from grader import Exercise
from service.domain.gradebook import Gradebook, GradeRow

FORMATS = ("plain", "canvas")
BOM = "\ufeff"
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
#: The plain exercise CSV's columns after ``score``: how the final score was reached.
BREAKDOWN = ("raw", "penalty", "adjustment", "late")
#: The course total's column: ``total`` (plain), ``Course total`` (Canvas, out of 100).
TOTAL, CANVAS_TOTAL = "total", "Course total"


def format_score(value: float | None) -> str:
    """``value`` with at most two decimals and no trailing zeros; ``""`` for None. A value that
    rounds to zero is ``0`` (never ``-0``)."""
    if value is None:
        return ""
    text = f"{value:.2f}"
    if float(text) == 0:
        return "0"
    return text.rstrip("0").rstrip(".")


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown CSV format {fmt!r} (known: {', '.join(FORMATS)})")


def grades_csv(exercise: Exercise, rows: list[GradeRow], fmt: str = "plain",
               bom: bool = True) -> str:
    """The CSV text of ``rows`` (one per student, in the given order)."""
    _check(fmt)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if fmt == "canvas":
        writer.writerow([*CANVAS_COLUMNS, exercise.id])
        writer.writerow(["Points Possible", "", "", "", "", format_score(exercise.max_score)])
        for row in rows:
            student = row.student
            writer.writerow([spreadsheet_safe(student.name), "", student.student_id,
                             spreadsheet_safe(student.email), "", format_score(row.final)])
    else:
        item_ids = [item.id for item in exercise.items]
        writer.writerow(["student_id", "name", "email", "score", *BREAKDOWN, *item_ids])
        for row in rows:
            student = row.student
            items = [format_score(row.items[i].score) if i in row.items else ""
                     for i in item_ids]
            writer.writerow([student.student_id, spreadsheet_safe(student.name),
                             spreadsheet_safe(student.email), format_score(row.final),
                             *_breakdown(row), *items])
    return (BOM if bom else "") + out.getvalue()


def _breakdown(row: GradeRow) -> list[str]:
    """``raw, penalty, adjustment, late`` of a row; empty when the student has no final."""
    grade = row.grade
    if grade is None or grade.final is None:
        return [format_score(row.raw), "", "", ""]
    return [format_score(grade.raw), format_score(grade.penalty),
            format_score(grade.adjustment), "yes" if grade.late else ""]


def gradebook_csv(book: Gradebook, fmt: str = "plain", bom: bool = True) -> str:
    """The course's gradebook (``gradebook.course_gradebook``) as CSV: a row per student (in
    the book's order), a column per exercise (the final score) and the course total (percent,
    ``final_grade.course_total``)."""
    _check(fmt)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    ids = [column.id for column in book.columns]
    if fmt == "canvas":
        writer.writerow([*CANVAS_COLUMNS, *ids, CANVAS_TOTAL])
        writer.writerow(["Points Possible", "", "", "", "",
                         *(format_score(column.max_score) for column in book.columns), "100"])
        for row in book.rows:
            student = row.student
            writer.writerow([spreadsheet_safe(student.name), "", student.student_id,
                             spreadsheet_safe(student.email), "",
                             *(format_score(row.exercises[i].final) for i in ids),
                             format_score(row.total.percent)])
    else:
        writer.writerow(["student_id", "name", "email", *ids, TOTAL])
        for row in book.rows:
            student = row.student
            writer.writerow([student.student_id, spreadsheet_safe(student.name),
                             spreadsheet_safe(student.email),
                             *(format_score(row.exercises[i].final) for i in ids),
                             format_score(row.total.percent)])
    return (BOM if bom else "") + out.getvalue()


#: What a spreadsheet reads as the start of a formula (or of a DDE command) in a cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def spreadsheet_safe(value: str) -> str:
    """``value`` as a CSV cell a spreadsheet shows as text: a text that Excel, LibreOffice or
    Google Sheets would run as a formula (``=HYPERLINK(...)``, ``+cmd|...``, ``@SUM(...)``) gets
    a leading apostrophe (OWASP's advice for CSV injection). For texts people typed (names,
    comments); numbers written by this module are never negative text."""
    if value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
