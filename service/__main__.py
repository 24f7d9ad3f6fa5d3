"""`python -m service`: migrate the database, start the workers, serve with waitress.

``HOST`` and ``PORT`` (default 127.0.0.1:8000) choose where to listen. With ``QUEUE=embedded``
(the default) grading workers run as threads of this process; with ``QUEUE=celery`` they are
separate ``celery -A service.queue.celery_worker worker`` processes. Either way this process runs
the queue's janitor (``service.queue.janitor``), and a grade passback sender
(``service.queue.lti_sender``: the embedded workers' own, or one of its own under Celery).
"""

from __future__ import annotations

import logging
import os
import signal

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import func, select
from waitress import serve

from service import create_app
from service.extensions import db
from service.heap import settle
from service.logs import configure
from service.models import Student
from service.queue.embedded import EmbeddedWorkers
from service.queue.janitor import Janitor
from service.queue.lti_sender import PassbackSender
from service.states import WorkerKind

log = logging.getLogger("service")


def first_student(app: Flask) -> None:
    """On an empty roster in development, make a demo student and print its token once."""
    from service.domain.roster import import_roster

    with app.app_context():
        if db.session.execute(select(func.count(Student.id))).scalar_one() or app.config[
            "PRODUCTION"
        ]:
            return
        issued, _ = import_roster("student_id,name,email\ndemo,Demo Student,\n")
        print(f"\n  No roster yet: created student 'demo'. Its access token (shown once):\n"
              f"    {issued[0].token}\n"
              f"  Import the class with: .venv/bin/flask --app service roster import roster.csv\n")


def first_instructor(app: Flask) -> None:
    """With no instructor yet, in development, make ``admin`` with a one-time password printed
    once; it has to be changed at the first login."""
    from service.domain.instructors import count_instructors, create_instructor

    with app.app_context():
        if count_instructors() or app.config["PRODUCTION"]:
            return
        _, password = create_instructor("admin")
        print(f"  No instructor yet: created 'admin'. Its one-time password (shown once; you "
              f"choose a new one at the first login):\n"
              f"    {password}\n"
              f"  Dashboard: /dashboard/  More accounts: .venv/bin/flask --app service "
              f"instructor create NAME\n")


def main() -> None:
    configure()  # text lines, or JSON with LOG_FORMAT=json (service.logs)
    app = create_app()
    with app.app_context():
        upgrade()
    first_student(app)
    first_instructor(app)
    janitor = Janitor(app)
    janitor.start()
    sender = None
    if app.config["QUEUE"] == WorkerKind.EMBEDDED:
        workers = EmbeddedWorkers(app, app.config["WORKERS"])  # with their passback sender
        app.extensions["grader_workers"] = workers
        workers.start()
    else:  # retries of grade passback even while no Celery worker grades
        sender = PassbackSender(app).start()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    settle()  # the loaded app out of the garbage collector's walks (service.heap)
    print(f"serving on http://{host}:{port} (queue: {app.config['QUEUE']})", flush=True)
    signal.signal(signal.SIGTERM, _stop)  # a clean stop, as Ctrl-C (docker stop, systemd)
    try:
        serve(app, host=host, port=port, threads=8, max_request_body_size=
              app.config["MAX_CONTENT_LENGTH"] + 1024 * 1024)
    finally:
        janitor.stop()
        if sender is not None:
            sender.stop()
        if "grader_workers" in app.extensions:  # a clean stop: not a death for the dashboard;
            app.extensions["grader_workers"].stop()  # the warm kits are closed, none left


def _stop(signum: int, frame: object) -> None:
    """SIGTERM ends the service as Ctrl-C does: through ``main``'s clean-up."""
    raise SystemExit(0)


if __name__ == "__main__":
    main()
