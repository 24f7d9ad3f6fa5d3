"""The grading library must stay free of web, database and queue code (STYLE.md), and the
service uses it only through its public names: those of ``__all__`` in ``grader`` and in the
two subpackages with an API of their own, ``grader.sandbox`` and ``grader.similarity``
(``grader/__init__.py`` says why)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = ("flask", "sqlalchemy", "celery", "service", "werkzeug", "redis")


def test_grader_imports_no_web_modules():
    code = (
        "import json, sys\n"
        "import grader, grader.cli, grader.pipeline, grader.reference, grader.reference_build, grader.dryrun\n"
        "import grader.sandbox, grader.comparators, grader.data, grader.similarity\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert bad == []
    # the check can fail: importing the service would load flask
    assert "grader.pipeline" in loaded


def test_sandboxed_code_imports_nothing_from_grader():
    """The runner, the code sent into the kernel and the clean room see only their own
    folder (each is mounted alone)."""
    from grader.clean_room import CLEANROOM_DIR
    from grader.function_room import ROOM_DIR
    from grader.kit import KERNEL_DIR

    files = [*KERNEL_DIR.glob("*.py"), *CLEANROOM_DIR.glob("*.py"), *ROOM_DIR.glob("*.py")]
    assert len(list(ROOM_DIR.glob("*.py"))) == 1  # the function room's main.py
    assert {p.name for p in files} >= {"runner.py", "exporter.py", "main.py", "graphs.py"}
    for path in files:
        text = path.read_text()
        assert "from grader" not in text and "import grader" not in text, path.name


ROOT = Path(__file__).resolve().parents[1]
#: The packages whose ``__all__`` is the grading library's public surface.
PUBLIC = ("grader", "grader.sandbox", "grader.similarity")


def public_names(package: str) -> set[str]:
    """``__all__`` of ``package``, read from its source (nothing is imported)."""
    path = ROOT.joinpath(*package.split("."), "__init__.py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{package} has no __all__")


def private_uses(source: str, public: dict[str, set[str]]) -> list[str]:
    """Each import of ``source`` that reaches past ``grader``'s public names, with its line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {alias.name}" for alias in node.names
                      if alias.name.split(".")[0] == "grader" and alias.name not in public]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "grader":
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if module not in public:
                found.append(f"line {node.lineno}: from {module} import {sorted(names)}")
                continue
            # a public subpackage named as a module (``from grader import similarity``) is public
            wrong = names - public[module] - {n for n in names if f"{module}.{n}" in public}
            if wrong:
                found.append(f"line {node.lineno}: from {module} import {sorted(wrong)}, not in "
                             f"{module}.__all__")
    return found


def service_files() -> list[Path]:
    return sorted((ROOT / "service").rglob("*.py"))


def test_the_public_names_are_what_the_packages_export():
    import grader
    import grader.sandbox
    import grader.similarity

    for package in (grader, grader.sandbox, grader.similarity):
        assert public_names(package.__name__) == set(package.__all__)
        assert all(hasattr(package, name) for name in package.__all__), package.__name__


@pytest.mark.parametrize("path", service_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_service_imports_only_graders_public_names(path: Path):
    public = {package: public_names(package) for package in PUBLIC}
    wrong = private_uses(path.read_text(encoding="utf-8"), public)
    assert not wrong, (f"{path.relative_to(ROOT)} reaches past grader's public names "
                       f"(export the name from grader/__init__.py's __all__): {wrong}")


@pytest.mark.parametrize(("source", "expected"), [
    ("from grader.spec import Exercise", "from grader.spec import ['Exercise']"),
    ("from grader import pipeline", "from grader import ['pipeline'], not in grader.__all__"),
    ("from grader import _private", "not in grader.__all__"),
    ("import grader.kit", "import grader.kit"),
    ("from grader.sandbox.gpus import is_free", "from grader.sandbox.gpus"),
    ("from grader.similarity import kgrams", "not in grader.similarity.__all__"),
    ("def f():\n    from grader.data.evaluation import evaluation_labels", "line 2"),
])
def test_the_check_catches_a_private_use(source: str, expected: str):
    public = {package: public_names(package) for package in PUBLIC}
    wrong = private_uses(source, public)
    assert len(wrong) == 1 and expected in wrong[0], wrong


def test_the_check_lets_the_public_names_through():
    public = {package: public_names(package) for package in PUBLIC}
    source = ("import grader\nfrom grader import GraderConfig, similarity\n"
              "from grader.sandbox import CpuSlots\nfrom grader.similarity import compare_code\n"
              "import grader.sandbox\n")
    assert private_uses(source, public) == []
