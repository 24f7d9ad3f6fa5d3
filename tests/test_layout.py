"""The service's layout rules, read from the source with ``ast`` (nothing is imported):

- a view module (a page or API area: ``student``, ``api``, the dashboard's modules) never imports
  another view module; what views share lives in the frame (``frame``, ``forms``, ``schemas``,
  ``openapi``, ``plots``, ``language``, ``numbers``) or in ``service.domain``. Inside a view package, the modules may import
  that package's ``blueprint`` module, and the package's ``__init__`` its own modules (to
  register their routes);
- the frame never imports a view module;
- nothing outside ``service.views`` imports from it, but the app factory (``service/__init__.py``)
  that registers the views.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[1] / "service"
VIEWS = "service.views"
#: Modules of ``service.views`` shared by every view (the rest are view modules).
FRAME = {f"{VIEWS}.{name}" for name in ("frame", "forms", "schemas", "openapi", "plots",
                                            "language", "numbers", "notices")} | {VIEWS}
FACTORY = "service"


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path)
    package = name if is_package(path) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SERVICE.rglob("*.py"))}


def in_views(name: str) -> bool:
    return name == VIEWS or name.startswith(VIEWS + ".")


def is_view(name: str) -> bool:
    return in_views(name) and name not in FRAME


def allowed_within_view(importer: str, path: Path, target: str) -> bool:
    """Within one view package: its ``blueprint`` module, and (for the package itself) its own
    modules."""
    package = importer if is_package(path) else importer.rpartition(".")[0]
    if package == VIEWS:
        return False
    if target == f"{package}.blueprint" or target == package:
        return True
    return is_package(path) and target.rpartition(".")[0] == package


def existing(target: str, known: dict[str, Path]) -> bool:
    """Only modules count (``from service.views.frame import PAGE_CSP`` names a constant)."""
    return target in known


def test_the_rules_see_the_views():
    known = modules()
    views = {name for name in known if is_view(name)}
    assert {"service.views.student", "service.views.api", "service.views.dashboard.pages"} <= views
    assert "service.views.frame" in known and not is_view("service.views.frame")


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_respects_the_layout(name: str):
    known = modules()
    path = known[name]
    targets = {target for target in imported(path) if existing(target, known)}
    if is_view(name):
        wrong = {target for target in targets if is_view(target) and target != name
                 and not allowed_within_view(name, path, target)}
        assert not wrong, f"the view module {name} imports view modules {sorted(wrong)}"
    elif in_views(name):
        wrong = {target for target in targets if is_view(target)}
        assert not wrong, f"the frame module {name} imports view modules {sorted(wrong)}"
    elif name != FACTORY:
        wrong = {target for target in targets if in_views(target)}
        assert not wrong, f"{name} (outside the views) imports {sorted(wrong)}"


def test_the_dashboard_package_has_no_import_cycle():
    """Its modules take ``bp`` from ``blueprint``, which imports none of them."""
    known = modules()
    blueprint = imported(known["service.views.dashboard.blueprint"])
    assert not {t for t in blueprint if t.startswith("service.views.dashboard")}
    for name in ("access", "monitor", "pages"):
        targets = imported(known[f"service.views.dashboard.{name}"])
        assert "service.views.dashboard" not in targets, name
