"""The grading library must stay free of web, database and queue code (STYLE.md)."""

from __future__ import annotations

import json
import subprocess
import sys

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
