"""The service and the grader's host side start without TensorFlow.

TensorFlow, scikit-learn and ipykernel run only inside the sandboxes (the student's kernel, the
clean room): they are the ``runtime`` extra of ``pyproject.toml``. The web service and the
grader's CLI must import, and the app must build, where that extra is not installed; here it is
installed, so the test hides it (``sys.modules[name] = None`` makes any import of it fail) and
checks that nothing even tried.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: Packages of the ``runtime`` extra, as imported.
RUNTIME_ONLY = ("tensorflow", "sklearn", "ipykernel", "keras")


def test_service_and_cli_import_and_build_without_tensorflow(tmp_path):
    code = (
        "import json, sys\n"
        f"for name in {RUNTIME_ONLY!r}:\n"
        "    sys.modules[name] = None\n"
        "import grader, grader.cli, grader.pipeline, grader.reference_build, grader.dryrun\n"
        "import service\n"
        "from service import create_app\n"
        "app = create_app({'TESTING': True, 'SECRET_KEY': 'x',\n"
        f"                  'SQLALCHEMY_DATABASE_URI': 'sqlite:///{tmp_path}/db.sqlite',\n"
        f"                  'UPLOAD_DIR': '{tmp_path}/uploads', 'QUEUE': 'embedded'}})\n"
        "try:\n"
        "    grader.cli.main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert "service" in loaded and "grader.pipeline" in loaded
    # only the hidden placeholders themselves: no submodule of theirs was ever imported
    assert {m for m in loaded if m.split(".")[0] in RUNTIME_ONLY} == set(RUNTIME_ONLY)


def test_the_check_can_fail():
    """Hidden packages really fail to import (so the test above would see a stray import)."""
    code = "import sys\nsys.modules['tensorflow'] = None\nimport tensorflow\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr
