"""What a similarity run compares, and what it keeps: the database and storage side of
``flask similarity run`` (``service.queue.similarity`` carries it, claimed and fenced like a
grading run; ``service.domain.similarity_compare`` compares).

1. **Over which submissions** (:func:`choose`): each student's counted submission of the
   exercise under the course's rules (``service.domain.gradebook``: best or last, dates,
   extensions), else their latest (nothing graded yet, or nothing allowed); its model
   fingerprint is that of the submission's latest graded run, if it has one.
2. **Gathered** (:func:`gather`): each notebook's code from the upload store, the template's
   code (the boilerplate everyone starts from) and the reference solution's (what a correct
   answer is expected to contain), the fingerprints, the evaluation labels. A notebook that
   cannot be read is left out and named in the summary, never fails the run; labels that cannot
   be read (no data directory) leave the model signal out, said in the summary.
3. **Recorded**: ``submissions`` (``{student_id: submission_id}``) as soon as they are chosen,
   then (:func:`record`) the ranked pairs as ``SimilarityPair`` rows and the run's ``summary``
   (students, pairs compared, fingerprints found, thresholds, seconds per phase), state
   ``done``. The caller holds the fence; an older run's rows are never touched (a newer run
   replaces it on the pages only).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from grader import GraderConfig, ModelFingerprint, evaluation_labels
from service.blobs import BlobStore
from service.domain import fingerprints as stored_fingerprints
from service.domain import similarity_compare
from service.domain.gradebook import exercise_rows
from service.extensions import DbSession
from service.models import SimilarityPair, SimilarityRun, Submission, utcnow
from service.states import SimilarityState

#: Pairs stored of one run at most: every flagged pair, then the strongest others.
MAX_PAIRS = 5000


@dataclass(frozen=True)
class Chosen:
    """One student's submission a run compares."""

    student_pk: int
    student_id: str
    submission_id: int
    notebook_sha256: str
    #: The submission's latest graded run (its fingerprint's), if any.
    graded_run_id: int | None


@dataclass
class Gathered:
    chosen: list[Chosen]
    #: student id -> the notebook's code.
    codes: dict[str, str]
    template: str
    expected: list[str]
    #: student id -> the model's fingerprint.
    fingerprints: dict[str, ModelFingerprint]
    labels: Mapping[str, np.ndarray] | None
    #: student id -> why their notebook was left out.
    skipped: dict[str, str] = field(default_factory=dict)
    #: Why the model signal is missing altogether, if it is.
    models_skipped: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def choose(session: DbSession, exercise: str) -> list[Chosen]:
    """Each student's submission to compare (see the module's docstring), by student id."""
    picked: dict[int, tuple[int, str, int, int | None]] = {}
    for row in exercise_rows(session, exercise, items=False):
        grade = row.counted or row.latest
        if grade is None:
            continue
        run = grade.counted
        picked[grade.submission.id] = (row.student.id, row.student.student_id,
                                       grade.submission.id, run.id if run else None)
    hashes: dict[int, str] = {}
    ids = sorted(picked)
    for start in range(0, len(ids), 500):
        hashes.update(session.execute(
            select(Submission.id, Submission.notebook_sha256)
            .where(Submission.id.in_(ids[start:start + 500]))).tuples().all())
    return sorted((Chosen(pk, sid, sub, hashes[sub], run)
                   for pk, sid, sub, run in picked.values()), key=lambda c: c.student_id)


def _file_code(path: Path) -> str:
    """A notebook file's code, or empty when it is not there (an exercise without reference)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    return similarity_compare.code_text(data)


def gather(session: DbSession, exercise_id: str, config: GraderConfig, blobs: BlobStore
           ) -> Gathered:
    """Everything a comparison of ``exercise_id`` needs (see the module's docstring)."""
    began = time.monotonic()
    exercise = config.exercise(exercise_id)
    chosen = choose(session, exercise_id)
    found = stored_fingerprints.load(
        session, [c.graded_run_id for c in chosen if c.graded_run_id is not None])
    session.rollback()  # nothing is held while notebooks are read
    chose = time.monotonic() - began

    began = time.monotonic()
    codes: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for c in chosen:
        try:
            codes[c.student_id] = similarity_compare.code_text(blobs.get(c.notebook_sha256))
        except Exception as exc:  # gone from the store, or not a notebook: this one only
            skipped[c.student_id] = f"{type(exc).__name__}: {exc}"[:300]
    template = _file_code(exercise.template)
    reference = _file_code(exercise.reference_dir / "solution.ipynb")
    prints = {c.student_id: found[c.graded_run_id] for c in chosen
              if c.graded_run_id in found and c.student_id in codes}
    labels: Mapping[str, np.ndarray] | None = None
    models_skipped = None
    if len(prints) >= 2:
        try:
            labels = evaluation_labels(config.data_dir)
        except Exception as exc:  # no data directory here: the code signal alone
            models_skipped = f"evaluation labels not readable: {type(exc).__name__}: {exc}"
    return Gathered(chosen, codes, template, [reference] if reference else [], prints, labels,
                    skipped, models_skipped,
                    {"choose": round(chose, 3), "read": round(time.monotonic() - began, 3)})


def submissions_of(gathered: Gathered) -> dict[str, int]:
    """Over which submissions: ``{student_id: submission_id}`` (the run's ``submissions``)."""
    return {c.student_id: c.submission_id for c in gathered.chosen}


def compare(gathered: Gathered) -> similarity_compare.Comparison:
    """The comparison of what was gathered (no database: may take a while)."""
    return similarity_compare.compare(gathered.codes, gathered.template, gathered.expected,
                                      gathered.fingerprints, gathered.labels)


def record(session: DbSession, run: SimilarityRun, gathered: Gathered,
           comparison: similarity_compare.Comparison, began: float) -> None:
    """Write the run's pairs, submissions and summary, state ``done`` (in the caller's
    transaction, under its fence). ``began``: ``time.monotonic()`` when the store started."""
    by_id = {c.student_id: c for c in gathered.chosen}
    flagged = [p for p in comparison.pairs if p.flagged]
    kept = flagged + [p for p in comparison.pairs if not p.flagged][
        :max(0, MAX_PAIRS - len(flagged))]
    for rank, pair in enumerate(kept):
        a, b = by_id[pair.a], by_id[pair.b]
        run.pairs.append(SimilarityPair(
            rank=rank, student_a_pk=a.student_pk, student_b_pk=b.student_pk,
            submission_a_id=a.submission_id, submission_b_id=b.submission_id,
            code=pair.code, distinctive=pair.distinctive, model=pair.model,
            identical_weights=pair.identical_weights, code_flagged=pair.code_flagged,
            model_flagged=pair.model_flagged, flagged=pair.flagged,
            spans={"a": [list(s) for s in pair.spans_a], "b": [list(s) for s in pair.spans_b]}))
    run.submissions = submissions_of(gathered)
    summary: dict[str, Any] = {
        "students": len(gathered.chosen),
        "compared": len(gathered.codes),
        "pairs_compared": comparison.code_pairs,
        "model_pairs_compared": comparison.model_pairs,
        "pairs_listed": len(comparison.pairs),
        "pairs_stored": len(kept),
        "flagged": len(flagged),
        "fingerprints": len(gathered.fingerprints),
        "skipped": gathered.skipped,
        "models_skipped": gathered.models_skipped,
        "thresholds": similarity_compare.thresholds(),
        "seconds": {**gathered.seconds, **comparison.seconds},
    }
    summary["seconds"]["store"] = round(time.monotonic() - began, 3)
    run.summary = summary
    run.state = SimilarityState.DONE
    run.finished_at = utcnow()
    run.lease_expires_at = None
    run.reason = None
