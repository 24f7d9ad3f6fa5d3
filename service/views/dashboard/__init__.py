"""The instructors' dashboard: who handed in, how the class did per item, who is stuck, whether
the queue keeps up; regrades and the gradebook export.

One blueprint under ``/dashboard`` (``blueprint``: the blueprint and its access rule), its views
in this package's modules: ``access`` (login, logout, password), ``pages`` (exercises,
submissions, regrades, CSV), ``rules`` (an exercise's schedule, publishing, extensions),
``students`` (one student's grades and adjustments), ``similarity`` (an exercise's
similarity review: pairs, decisions, CSV), ``course`` (the course's gradebook and its
CSV), ``monitor`` (the queue) and ``lti`` (the settings to paste into Moodle or Canvas).
Pages are server-rendered and work without JavaScript (sorting and filtering are query
parameters); texts come from the gettext catalogs (``service/translations``) as on the
student pages.
"""

from __future__ import annotations

from flask import Flask

from service.views import plots
from service.views.dashboard import (  # noqa: F401  (their routes join ``bp``)
    access,
    course,
    lti,
    monitor,
    pages,
    rules,
    similarity,
    students,
)
from service.views.dashboard.blueprint import bp


def init_app(app: Flask) -> None:
    """Register the dashboard and the charts its exercise page draws."""
    app.register_blueprint(bp)
    plots.init_app(app)
