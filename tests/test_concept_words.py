"""One word for each of a grading run's two "statuses" (``service/states.py``):

- its **state**, where the run is in the queue (``service.states.RunState``, ``GradingRun.state``);
- its **outcome**, what the grader said of the notebook (``grader.Outcome``,
  ``GradeReport.outcome``, ``RunOutcome.outcome``, ``GradingRun.outcome``).

The older words are read from the source (nothing is imported for the scan), so a new module or
template cannot bring them back: ``RunStatus`` and ``run_status`` appear only in the JSON API's
deprecated alias (``service/views/schemas.py``) and in the alembic migrations (history, which
names the columns as they were), and no code or template reads a grading run's ``.status``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("grader", "service")
#: The files a scan reads: code, templates, scripts and catalogs.
SUFFIXES = {".py", ".html", ".js", ".po", ".pot", ".cfg", ".txt", ".toml"}
#: History: a migration names the columns and classes of its day.
MIGRATIONS = ROOT / "service" / "migrations"
#: The JSON API's deprecated alias of ``outcome`` (kept for clients written before it).
API_ALIAS = ROOT / "service" / "views" / "schemas.py"

OLD_ENUM = re.compile(r"\bRunStatus\b")
OLD_FIELD = re.compile(r"\brun_status\b")
#: A grading run's status read as an attribute: ``run.status``, ``latest_run.status``,
#: ``grading_run.status``, ``GradingRun.status`` (a template would render it as nothing).
RUN_STATUS_ATTRIBUTE = re.compile(r"\b(?:\w*_run|run|GradingRun)\.status\b")


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if (path.is_file() and path.suffix in SUFFIXES and MIGRATIONS not in path.parents
                    and "__pycache__" not in path.parts):
                yield path


def occurrences(pattern: re.Pattern[str], skip: frozenset[Path] = frozenset()) -> list[str]:
    found = []
    for path in source_files():
        if path in skip:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_the_scan_reads_code_templates_and_catalogs():
    files = {path.relative_to(ROOT).as_posix() for path in source_files()}
    assert {"grader/report.py", "service/states.py", "service/templates/history.html",
            "service/translations/ja/LC_MESSAGES/messages.po"} <= files
    assert not any(name.startswith("service/migrations/") for name in files)


def test_the_outcome_enum_has_one_name():
    assert occurrences(OLD_ENUM) == []


def test_run_status_is_only_the_api_alias():
    assert occurrences(OLD_FIELD, skip=frozenset({API_ALIAS})) == []
    alias = [line for line in API_ALIAS.read_text(encoding="utf-8").splitlines()
             if OLD_FIELD.search(line)]
    assert alias and all("deprecated" in line or "outcome" in line.lower() for line in alias), alias


def test_no_code_reads_a_runs_status():
    assert occurrences(RUN_STATUS_ATTRIBUTE) == []


def test_the_values_carry_the_words():
    from grader.outcome import RunOutcome
    from grader.report import GradeReport
    from service.models import GradingRun

    assert "outcome" in {f.name for f in dataclasses.fields(GradeReport)}
    assert "outcome" in {f.name for f in dataclasses.fields(RunOutcome)}
    for holder in (GradeReport, RunOutcome, GradingRun):
        assert not hasattr(holder, "status"), holder
        assert "status" not in getattr(holder, "__dataclass_fields__", {}), holder
