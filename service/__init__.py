"""The submission service: web form, JSON API, database and queue around the ``grader`` library.

``create_app(test_config)`` builds the app (Flask's tutorial pattern); each area registers itself
here. Workers are not started by the factory: ``python -m service`` starts the embedded ones,
``celery -A service.queue.celery_worker worker`` the Celery ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from grader import GraderConfig, compile_catalogs
from service.catalog import TRANSLATIONS
from service.extensions import babel, csrf, db, login_manager, migrate
from service.settings import load_settings
from service.states import Outcome, RunState
from service.views.language import DEFAULT_LANGUAGE, select_locale

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(load_settings())
    app.config["GRADER"] = GraderConfig.from_env()
    if test_config:
        app.config.update(test_config)
    if app.config["BLOB_STORE"] == "folder":
        Path(app.config["UPLOAD_DIR"]).mkdir(parents=True, exist_ok=True)
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:///:memory:"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "web.login"
    csrf.init_app(app)
    compile_catalogs(TRANSLATIONS, "messages")
    babel.init_app(app, default_locale=DEFAULT_LANGUAGE, locale_selector=select_locale,
                   default_translation_directories=str(TRANSLATIONS))
    # Pages compare states by name (``run.state == RunState.FAILED``), never by string.
    app.jinja_env.globals.update(RunState=RunState, Outcome=Outcome)

    from service import commands
    from service.domain.schedules import check_exercise_schedules
    from service.views import api, dashboard, frame, lti
    from service.views import student as web

    with app.app_context():  # a bad [schedule] in an exercise.toml stops the start, named
        check_exercise_schedules()

    frame.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(web.bp)
    lti.init_app(app)
    dashboard.init_app(app)
    commands.init_app(app)
    if uri.startswith("sqlite"):
        _sqlite_pragmas(app)

    @app.get("/healthz")
    def healthz():
        """The process answers (a load balancer's liveness probe): touches nothing else."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        """Ready to serve (``service.readiness``): 200, or 503 naming what is not ready."""
        from service.readiness import readiness

        problems = readiness(app)
        body = {"status": "fail" if problems else "ok", "problems": problems}
        return body, (503 if problems else 200)

    from service.views import metrics

    metrics.init_app(app)

    return app


def _sqlite_pragmas(app: Flask) -> None:
    """WAL and a busy timeout: the service and its workers write to one SQLite file at once."""
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
