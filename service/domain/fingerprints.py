"""Trained models' fingerprints in the database (``RunFingerprint``): written with a graded
run's report (``service.queue.grading``, inside the same fenced transaction), read by a
similarity run (``service.domain.similarity_check``). Never read by a score.

A row holds the sets' predictions one after the other in ``predictions`` and, in ``images``,
how to cut them (``[[set name, count], ...]``). Both sides are bounded: :func:`store` keeps at
most :data:`MAX_SETS` sets of at most :data:`MAX_IMAGES` images each, and :func:`load` cuts
the bytes to the counts (extra bytes are ignored) and skips a row that does not parse (counts
that are not whole numbers, or more images than bytes), so a bad row costs one fingerprint,
never a similarity run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from grader import ModelFingerprint
from service.extensions import DbSession
from service.models import RunFingerprint

log = logging.getLogger(__name__)

#: Image sets kept of one fingerprint (the clean room measures two plain sets, and their
#: moved copies).
MAX_SETS = 8
#: Images kept of one set (MNIST's test set has 10,000; the held-out split 5,000).
MAX_IMAGES = 100_000
#: The longest set name kept (longer ones are dropped with their set).
MAX_NAME = 64


def store(session: DbSession, run_id: int, fingerprint: ModelFingerprint) -> RunFingerprint:
    """Add ``fingerprint`` as run ``run_id``'s (in the caller's transaction, not committed).
    Sets beyond :data:`MAX_SETS`, or named beyond :data:`MAX_NAME` characters, are left out;
    each set is cut to :data:`MAX_IMAGES` images."""
    images: list[list[Any]] = []
    parts: list[bytes] = []
    for name, predictions in sorted(fingerprint.predictions.items())[:MAX_SETS]:
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            continue
        kept = bytes(predictions[:MAX_IMAGES])
        images.append([name, len(kept)])
        parts.append(kept)
    row = session.get(RunFingerprint, run_id)  # none, but for a run stored twice
    if row is None:
        row = RunFingerprint(run_id=run_id)
        session.add(row)
    row.weights, row.images = str(fingerprint.weights)[:64], images
    row.predictions = b"".join(parts)
    return row


def parse(row: RunFingerprint) -> ModelFingerprint | None:
    """The row's :class:`ModelFingerprint`, or ``None`` when it does not parse."""
    images, blob = row.images, bytes(row.predictions or b"")
    if not isinstance(row.weights, str) or not isinstance(images, list):
        return None
    predictions: dict[str, bytes] = {}
    offset = 0
    for entry in images[:MAX_SETS]:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], int) and not isinstance(entry[1], bool)
                and 0 <= entry[1] <= MAX_IMAGES):
            return None
        name, count = entry
        if offset + count > len(blob) or name in predictions:
            return None
        predictions[name] = blob[offset:offset + count]
        offset += count
    return ModelFingerprint(weights=row.weights, predictions=predictions)


def load(session: DbSession, run_ids: Iterable[int]) -> dict[int, ModelFingerprint]:
    """The fingerprints of the runs among ``run_ids`` that have one that parses, by run id."""
    wanted = sorted(set(run_ids))
    found: dict[int, ModelFingerprint] = {}
    for start in range(0, len(wanted), 500):  # an IN list of bounded length
        chunk = wanted[start:start + 500]
        for row in session.execute(select(RunFingerprint)
                                   .where(RunFingerprint.run_id.in_(chunk))).scalars():
            fingerprint = parse(row)
            if fingerprint is None:
                log.warning("run %s: stored model fingerprint does not parse; left out",
                            row.run_id)
                continue
            found[row.run_id] = fingerprint
    return found
