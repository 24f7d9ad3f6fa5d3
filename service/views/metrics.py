"""``/metrics`` for Prometheus: this process's counters (``service.metrics``; every process's
under prometheus-client's multiprocess mode) and what the database knows, read at each scrape by
:class:`DatabaseCollector` (queue depth by state, finished runs by outcome, grade passback's
outbox), so every process answers the same, however many gunicorn workers or grading processes
run. An endpoint, like the views: it reads the domain and the queue's numbers, and nothing but
the app factory imports it.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

from service.domain.lti_outbox import outbox_counts
from service.extensions import db
from service.metrics import COUNTERS
from service.queue.state import outcome_counts, queue_counts


class DatabaseCollector:
    """Queue depth by state and finished runs by outcome, read at scrape time."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        with self.app.app_context():
            try:
                depth = queue_counts(db.session)
                outcomes = outcome_counts(db.session)
                outbox = outbox_counts(db.session)
            finally:
                db.session.remove()
        queue = GaugeMetricFamily("grader_queue_runs", "Grading runs by state", labels=["state"])
        for state, count in depth.items():
            queue.add_metric([str(state)], count)
        yield queue
        runs = GaugeMetricFamily("grader_runs_finished", "Finished runs by outcome (graded, "
                                 "timeout, ..., failed), from the database", labels=["outcome"])
        for outcome, count in sorted(outcomes.items()):
            runs.add_metric([outcome], count)
        yield runs
        scores = GaugeMetricFamily("grader_lti_scores", "Grade passback's outbox: scores "
                                   "pending, sent and failed, from the database",
                                   labels=["state"])
        for outbox_state, number in sorted(outbox.items()):
            scores.add_metric([outbox_state], number)
        yield scores


def registry_for(app: Flask) -> CollectorRegistry:
    """The registry ``/metrics`` answers from: this process's counters, or every process's
    under multiprocess mode, plus the database's numbers."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in COUNTERS:
            registry.register(collector)
    registry.register(DatabaseCollector(app))
    return registry


def scraper_allowed(app: Flask, authorization: str | None) -> bool:
    """Whether a scrape may read the metrics: always without ``METRICS_TOKEN``, else only with
    ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time). Each scrape queries
    the database, so a public ``/metrics`` is also work anyone can make the service do."""
    token = app.config.get("METRICS_TOKEN")
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def init_app(app: Flask) -> None:
    registry = registry_for(app)

    @app.get("/metrics")
    def metrics() -> Response:
        if not scraper_allowed(app, request.headers.get("Authorization")):
            return Response("metrics need Authorization: Bearer <METRICS_TOKEN>\n", status=401,
                            mimetype="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
