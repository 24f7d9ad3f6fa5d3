"""The web service. For now a status page listing the exercises the grader knows; the
submission form, API, database and queue come with the next issue (see docs/roadmap.md)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template

from grader.config import GraderConfig
from grader.spec import list_exercises, load_exercise


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(GRADER=GraderConfig.from_env())
    if test_config:
        app.config.update(test_config)

    def exercises() -> list[dict[str, Any]]:
        config: GraderConfig = app.config["GRADER"]
        rows = []
        for exercise_id in list_exercises(config.exercises_root):
            exercise = load_exercise(config.exercises_root / exercise_id, config.reference_root)
            rows.append({
                "id": exercise.id,
                "title": {"ja": exercise.title.ja, "en": exercise.title.en},
                "max_score": exercise.max_score,
                "items": [{"id": i.id, "points": i.points, "title": i.title.en}
                          for i in exercise.items],
                "reference_built": (exercise.reference_dir / "expected.json").exists(),
            })
        return rows

    @app.get("/")
    def index() -> str:
        return render_template("index.html", exercises=exercises())

    @app.get("/api/exercises")
    def api_exercises():
        return jsonify(exercises())

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app
