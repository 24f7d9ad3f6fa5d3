"""Similarity runs of an exercise: asked for (the CLI, the dashboard's button), then taken by a
worker (``service.queue.similarity``), which compares the submissions and stores the pairs.

One run at a time per exercise: asking while one is queued or running gives that one back.
"""

from __future__ import annotations

from sqlalchemy import select

from service.extensions import db
from service.models import SimilarityRun
from service.states import SimilarityState

#: The states of a run with no result yet.
LIVE = (SimilarityState.QUEUED, SimilarityState.RUNNING)


def request_run(exercise: str, requested_by: str) -> tuple[SimilarityRun, bool]:
    """A queued run of ``exercise`` (committed), and whether it is new (``False``: one was
    already queued or running, and is given back). The caller hands a new one to the queue
    (``service.queue.dispatch.enqueue_similarity``) after this commit."""
    pending = db.session.execute(
        select(SimilarityRun).where(SimilarityRun.exercise == exercise,
                                    SimilarityRun.state.in_(LIVE))
        .order_by(SimilarityRun.id).limit(1)).scalar_one_or_none()
    if pending is not None:
        return pending, False
    run = SimilarityRun(exercise=exercise, requested_by=requested_by[:64])
    db.session.add(run)
    db.session.commit()
    return run, True


def latest_run(exercise: str, done: bool = True) -> SimilarityRun | None:
    """The newest run of ``exercise`` (only finished ones when ``done``): the one the review
    page and the CSV show."""
    query = select(SimilarityRun).where(SimilarityRun.exercise == exercise)
    if done:
        query = query.where(SimilarityRun.state == SimilarityState.DONE)
    return db.session.execute(query.order_by(SimilarityRun.id.desc()).limit(1)
                              ).scalar_one_or_none()
