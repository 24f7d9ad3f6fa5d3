"""The service's layout rules, read from the source with ``ast`` (nothing is imported):

- a view module (a page or API area: ``student``, ``api``, the dashboard's modules) never imports
  another view module; what views share lives in the frame (``frame``, ``forms``, ``schemas``,
  ``openapi``, ``plots``, ``language``, ``numbers``) or in ``service.domain``. Inside a view package, the modules may import
  that package's ``blueprint`` module, and the package's ``__init__`` its own modules (to
  register their routes);
- the frame never imports a view module;
- nothing outside ``service.views`` imports from it, but the app factory (``service/__init__.py``)
  that registers the views;
- the wings (docs/architecture.md, "The layers"): the entry points (the views, ``/metrics``, the
  ``flask`` commands, ``python -m service``) may import every wing; the domain imports only the
  domain and the infrastructure (never the queue); the queue imports the queue, the
  infrastructure, the LTI bindings and only the domain modules named in
  :data:`QUEUE_USES_DOMAIN`, each with its reason; the LTI bindings (``service.lti``) import the
  domain and the infrastructure; the infrastructure (every other ``service`` module) imports only
  the infrastructure; nobody but ``python -m service`` and the Celery worker imports the app
  factory; and no module imports another's private (``_``) name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
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


# --- the wings ----------------------------------------------------------------------------------

ENTRY, DOMAIN, QUEUE, LTI, INFRA = "entry point", "domain", "queue", "LTI bindings", "infrastructure"
WINGS = (ENTRY, DOMAIN, QUEUE, LTI, INFRA)
#: Modules outside ``service.views`` that are entry points too: a command line or a process.
ENTRY_POINTS = {"service.__main__", "service.commands", "service.course_commands",
                "service.lti_commands", "service.similarity_commands",
                "service.blob_commands"}
#: The wings each wing may import, besides ``grader`` and the libraries.
MAY_IMPORT = {
    ENTRY: set(WINGS),
    LTI: {LTI, DOMAIN, INFRA},
    QUEUE: {QUEUE, LTI, INFRA},  # and the modules of QUEUE_USES_DOMAIN
    DOMAIN: {DOMAIN, INFRA},
    INFRA: {INFRA},
}
#: The domain's surface the queue may use, each module with its reason: what a job computes or
#: stores is the domain's rule, carried by the queue. Anything else of the domain stays out of it.
QUEUE_USES_DOMAIN = {
    "service.domain.fingerprints": "a graded run's model fingerprint is stored with its result "
                                   "(grading.take), in the store that similarity runs read back",
    "service.domain.similarity_check": "a similarity run's work (which submissions, what is "
                                       "gathered and kept), computed under the queue's claim "
                                       "and fence (similarity.take_similarity)",
    "service.domain.open_exercises": "the exercises open now, which the warm pool keeps kits "
                                     "for (warm_kits)",
    "service.domain.lti_outbox": "grade passback's outbox, which the sender thread claims and "
                                 "records the platform's answers in (lti_sender)",
}
#: Who may import the app factory (``create_app``), and why.
FACTORY_USERS = {
    "service.__main__": "python -m service builds the app it serves",
    "service.queue.celery_worker": "a Celery worker process builds its app when it starts",
}


@dataclass(frozen=True)
class Import:
    """One imported module (a ``from a import b`` of a module ``a.b`` names ``a.b``, else ``a``)
    and the names taken from it, at a line of the importer."""

    target: str
    names: tuple[str, ...]
    line: int


def imports_of(name: str, tree: ast.Module, known: set[str], package: bool = False
               ) -> list[Import]:
    base_package = name if package else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = base_package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = []
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    found.append(Import(f"{base}.{alias.name}", (), node.lineno))
                else:
                    names.append(alias.name)
            if names:
                found.append(Import(base, tuple(names), node.lineno))
    return found


def wing(name: str) -> str:
    if in_views(name) or name in ENTRY_POINTS or name == FACTORY:
        return ENTRY
    for package, its_wing in (("service.domain", DOMAIN), ("service.queue", QUEUE),
                              ("service.lti", LTI)):
        if name == package or name.startswith(package + "."):
            return its_wing
    return INFRA


def broken_rules(name: str, tree: ast.Module, known: set[str], package: bool = False
                 ) -> list[str]:
    """Each import of module ``name`` that breaks a wing's rule, said with its line and the
    rule."""
    where, own = f"{name} (the {wing(name)})", wing(name)
    broken = []
    for imp in imports_of(name, tree, known, package):
        if imp.target.partition(".")[0] != FACTORY or imp.target == name:
            continue
        at = f"{where}, line {imp.line}: imports {imp.target}"
        private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
        if private:
            broken.append(f"{at} {private}: a private name is its module's own")
        if imp.target == FACTORY:  # ``create_app``, or another name of the package itself
            if name not in FACTORY_USERS:
                broken.append(f"{at}: only {sorted(FACTORY_USERS)} build the app")
            continue
        target = wing(imp.target)
        if target in MAY_IMPORT[own]:
            continue
        if own == QUEUE and imp.target in QUEUE_USES_DOMAIN:
            continue
        rule = ("the queue uses only the domain modules of QUEUE_USES_DOMAIN "
                "(tests/test_layout.py), each with its reason" if own == QUEUE and target == DOMAIN
                else f"the {own} may import only {sorted(MAY_IMPORT[own])}")
        broken.append(f"{at} (the {target}): {rule}")
    return broken


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_every_module_has_a_wing_and_every_wing_has_modules():
    known = modules()
    assert ENTRY_POINTS <= set(known)
    assert set(FACTORY_USERS) <= set(known) and set(QUEUE_USES_DOMAIN) <= set(known)
    found = {wing(name) for name in known}
    assert found == set(WINGS)
    assert wing("service.views.student") == ENTRY and wing("service.commands") == ENTRY
    assert wing("service.domain.submissions") == DOMAIN and wing("service.queue.grading") == QUEUE
    assert wing("service.lti.tool_conf") == LTI and wing("service.models") == INFRA
    assert wing("service.notebook_html") == INFRA and wing("service.metrics") == INFRA


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_stays_in_its_wing(name: str):
    known = modules()
    path = known[name]
    broken = broken_rules(name, parsed(path), set(known), is_package(path))
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(("importer", "source", "expected"), [
    ("service.domain.submissions", "from service.queue.dispatch import enqueue",
     "imports service.queue.dispatch (the queue): the domain may import only"),
    ("service.domain.stats", "from service.queue import claims",
     "imports service.queue.claims (the queue)"),
    ("service.domain.stats", "from service.views.frame import PAGE_CSP",
     "imports service.views.frame (the entry point)"),
    ("service.queue.grading", "from service.domain.gradebook import exercise_rows",
     "the queue uses only the domain modules of QUEUE_USES_DOMAIN"),
    ("service.queue.grading", "from service.domain.fingerprints import _bounded",
     "a private name is its module's own"),
    ("service.models", "from service.domain import course_rules",
     "imports service.domain.course_rules (the domain): the infrastructure may import only"),
    ("service.storage", "import service.queue.claims", "(the queue)"),
    ("service.metrics", "from service.lti.passback import ring", "(the LTI bindings)"),
    ("service.lti.passback", "from service.queue.lti_sender import PassbackSender",
     "the LTI bindings may import only"),
    ("service.queue.grading", "from service import create_app", "build the app"),
    ("service.notebook_html", "from .queue import claims", "(the queue)"),
])
def test_the_wing_rules_catch_a_wrong_import(importer: str, source: str, expected: str):
    """The checker itself, on one import line put in a real module's place: each rule can
    fail, and says the file, the import and the rule."""
    broken = broken_rules(importer, ast.parse(source), set(modules()))
    assert len(broken) == 1 and expected in broken[0], broken
    assert broken[0].startswith(f"{importer} (the {wing(importer)}), line 1: imports ")


@pytest.mark.parametrize(("importer", "source"), [
    ("service.views.student", "from service.queue.dispatch import enqueue"),
    ("service.commands", "from service.domain.roster import import_roster"),
    ("service.queue.grading", "from service.domain import fingerprints"),
    ("service.queue.warm_kits", "from service.domain.open_exercises import open_exercises"),
    ("service.lti.tool_conf", "from service.domain.lti_keys import signing_key"),
    ("service.domain.submissions", "from service.queue_channel import notify_queued"),
    ("service.queue.embedded", "from service import notebook_html"),
    ("service.queue.celery_worker", "from service import create_app"),
])
def test_the_wing_rules_let_the_allowed_imports_through(importer: str, source: str):
    assert broken_rules(importer, ast.parse(source), set(modules())) == []
