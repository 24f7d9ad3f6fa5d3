"""The grading host is not a service locator (issue 22): it is made from the app once, taking
what runs need as typed things (sessions, blob store, grade passback's needs, the config its
settings are read from), and keeps no app. Read from the code: nothing a run goes through under
``service/queue`` reaches for an app (``host.app``, ``current_app``, an app context, the
module-global ``db.session`` bound to one), the heartbeat and the warm pool's ``wanted`` take
sessions rather than an app, and a Celery task beats with its process's heartbeat (the host's)
rather than one of its own. At run time: a host made from an app holds no Flask app.

Where the app is still used during a run, behind the sessions only, is said in
``service/queue/host.py`` and ``service/lti/passback.py`` (``RunPassback.sessions``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from flask import Flask

from service.queue.host import GradingHost

ROOT = Path(__file__).resolve().parents[2]
QUEUE = ROOT / "service" / "queue"

#: The modules a grading run goes through once claimed (``grading.take`` and what it calls),
#: and the host's own pieces (its heartbeat, its warm pool's ``wanted``).
RUN_MODULES = ("grading.py", "host.py", "heartbeats.py", "warm_kits.py", "leases.py",
               "progress.py", "rendering.py", "claims.py", "gpu_leases.py")


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _functions_enclosing(tree: ast.Module) -> dict[ast.AST, str]:
    """Each node's innermost enclosing ``Class.function`` (``""`` at module level)."""
    where: dict[ast.AST, str] = {}

    def visit(node: ast.AST, scope: str, cls: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, scope, child.name)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"{cls}.{child.name}" if cls else child.name, cls)
            else:
                where[child] = scope
                visit(child, scope, cls)

    visit(tree, "", "")
    return where


def _app_reaches(path: Path) -> list[str]:
    """What in ``path`` reaches for an app: ``current_app``, ``<x>.app``, ``app_context``,
    the module-global ``db`` (its session needs an app context), and any name ``app``
    outside ``GradingHost.__init__`` (where the host takes what it needs of it)."""
    tree = _tree(path)
    where = _functions_enclosing(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in ("current_app", "db"):
            found.append(f"{path.name}:{node.lineno} {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in ("app", "app_context"):
            found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
        elif (isinstance(node, ast.Name | ast.arg)
              and (node.id if isinstance(node, ast.Name) else node.arg) == "app"
              and where.get(node) != "GradingHost.__init__"):
            found.append(f"{path.name}:{node.lineno} app in {where.get(node) or 'module'}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("flask", "service.extensions"):
            names = {alias.name for alias in node.names}
            if names & {"current_app", "db"}:
                found.append(f"{path.name}:{node.lineno} from {node.module} import {names}")
    return found


def test_nothing_a_run_goes_through_reaches_for_an_app():
    found = [reach for name in RUN_MODULES for reach in _app_reaches(QUEUE / name)]
    assert found == []


def test_no_code_under_service_queue_asks_a_host_for_its_app():
    """``host.app``, ``self.host.app``, ``_host.app``, ``child.host.app``: none, anywhere."""
    found = []
    for path in sorted(QUEUE.glob("*.py")):
        for node in ast.walk(_tree(path)):
            if (isinstance(node, ast.Attribute) and node.attr == "app"
                    and ast.unparse(node.value).lower().endswith("host")):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert found == []


def test_a_heartbeat_is_made_by_the_host_only():
    """A Celery task beats with its process's heartbeat (the host's, opened once), never one
    of its own per task; nothing else under ``service/queue`` makes one either."""
    makers = []
    for path in sorted(QUEUE.glob("*.py")):
        for node in ast.walk(_tree(path)):
            if (isinstance(node, ast.Call)
                    and ast.unparse(node.func).split(".")[-1] == "Heartbeat"):
                makers.append(path.name)
    assert makers == ["host.py"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_host_made_from_an_app_keeps_none(make_app):
    app = make_app()
    host = GradingHost(app, spare_renderer=False)
    assert not hasattr(host, "app")
    held = {name: value for name, value in vars(host).items() if isinstance(value, Flask)}
    assert held == {}
    with host:  # and opening it takes nothing more of the app
        assert not [n for n, v in vars(host).items() if isinstance(v, Flask)]
