"""The dashboard's charts on a page of their own, for tests only (the app has no such route).

:func:`preview_app` is the service on a SQLite file with a made-up class
(:func:`seed_class`) and one extra route, ``/_test/plots/<exercise>``, that renders
``dashboard/_plots.html`` alone under the student pages' stylesheet and Content-Security-Policy,
so a test can check the markup and a browser can show what an instructor would see.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from pathlib import Path

from flask import Flask, Response, render_template_string
from flask_migrate import upgrade

from service import create_app
from service.domain.stats import exercise_stats
from service.extensions import db
from service.models import GradingRun, ItemScore, Student, Submission
from service.views import plots
from service.views.frame import PAGE_CSP
from service.views.language import current_language

EXERCISE = "chap06_cnn"
#: The made-up class's deadline (naive UTC, like the database).
DEADLINE = dt.datetime(2025, 5, 21, 15, 0)

PAGE = """<!doctype html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>plots preview</title>
<link rel="stylesheet" href="{{ url_for('static', filename='style.css') }}">
</head>
<body><main>{% include "dashboard/_plots.html" %}</main></body>
</html>"""

#: Share of the made-up students who get each item right (harder items lower).
ITEM_ODDS = {"conv1": 0.95, "conv2": 0.85, "conv3": 0.7, "pool1": 0.9, "pool2": 0.8,
             "pool3": 0.6, "conv_layer": 0.55, "pooling_layer": 0.75, "dense_layer": 0.6,
             "model": 0.65, "accuracy": 0.5}
POINTS = {"conv1": 6, "conv2": 6, "conv3": 6, "pool1": 6, "pool2": 6, "pool3": 6,
          "conv_layer": 12, "pooling_layer": 6, "dense_layer": 12, "model": 10, "accuracy": 24}


def preview_app(tmp_path: Path, **config: object) -> Flask:
    app = create_app({
        "TESTING": True,
        "SECRET_KEY": "plots-preview-secret-key",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'plots.db'}",
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        **config,
    })
    with app.app_context():
        upgrade()
    return add_plots_preview(app)


def add_plots_preview(app: Flask) -> Flask:
    """``app`` with ``/_test/plots/<exercise_id>``: the partial of the charts in a page of its
    own (added before the app serves its first request)."""
    plots.init_app(app)

    @app.get("/_test/plots/<exercise_id>")
    def plots_preview(exercise_id: str) -> Response:
        stats = exercise_stats(exercise_id, deadline=DEADLINE)
        page = render_template_string(PAGE, stats=stats, lang=current_language())
        return Response(page, headers={"Content-Security-Policy": PAGE_CSP})

    return app


def seed_class(app: Flask, students: int = 36, seed: int = 6) -> None:
    """``students`` made-up students with one to four submissions each over the two and a half
    days before :data:`DEADLINE`, most graded, a few failed or still queued."""
    rng = random.Random(seed)
    start = DEADLINE - dt.timedelta(hours=60)
    with app.app_context():
        for n in range(1, students + 1):
            student = Student(student_id=f"p{n:03d}", name=f"Student {n}",
                              token_hash=hashlib.sha256(f"p{n}".encode()).hexdigest())
            skill = rng.random()
            for k in range(rng.randint(1, 4)):
                # Submissions crowd towards the deadline, a few come late.
                hours = 62 * (1 - rng.random() ** 2.2)
                created = start + dt.timedelta(hours=hours, minutes=rng.randint(0, 59))
                submission = Submission(student=student, exercise=EXERCISE,
                                        filename=f"hw{k}.ipynb", size=1000,
                                        notebook_sha256=hashlib.sha256(
                                            f"{n}-{k}".encode()).hexdigest(),
                                        created_at=created)
                db.session.add(_run(rng, submission, created, skill + 0.1 * k))
        db.session.commit()


def _run(rng: random.Random, submission: Submission, created: dt.datetime,
         skill: float) -> GradingRun:
    roll = rng.random()
    queued = dict(submission=submission, queued_at=created)
    if roll < 0.06:
        return GradingRun(state="queued", **queued)
    if roll < 0.14:
        return GradingRun(state="failed", reason="sandbox_error: no kernel", attempts=3,
                          finished_at=created + dt.timedelta(minutes=9), **queued)
    items, score = [], 0.0
    for position, (item_id, odds) in enumerate(ITEM_ODDS.items()):
        ok = rng.random() < min(0.99, odds * (0.6 + skill))
        status = "correct" if ok else rng.choice(["incorrect", "partial", "error"])
        got = POINTS[item_id] if ok else (POINTS[item_id] / 2 if status == "partial" else 0)
        score += got
        items.append(ItemScore(position=position, item_id=item_id, score=got,
                               max_score=POINTS[item_id], status=status))
    trained = items[-2].status == "correct"
    accuracy = (min(0.995, rng.gauss(0.976, 0.008)) if trained
                else (rng.uniform(0.1, 0.9) if rng.random() < 0.5 else None))
    return GradingRun(state="graded", outcome="graded", score=score, max_score=100.0,
                      measured_accuracy=accuracy, started_at=created + dt.timedelta(minutes=1),
                      finished_at=created + dt.timedelta(minutes=4), items=items, **queued)
