"""The JSON API keeps its published contract: schemathesis reads ``/api/openapi.json`` from a
real server (werkzeug's, in a thread of this test, on SQLite and PostgreSQL) and throws
generated requests at every operation, every check on (server errors, undocumented statuses,
bodies and content types off the schema, schema-valid input refused, invalid input accepted,
auth ignored...), then links the operations in its stateful phase. Any finding fails the test.

The run is bounded: few examples per operation, a fixed seed and deterministic generation, so
it takes tens of seconds and finds the same things every time.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.lti.serving import serve_in_thread
from tests.service.service_support import VENV_BIN, bearer, tiny_notebook, upload

#: Examples per operation and phase: enough to reach every branch the schema describes.
MAX_EXAMPLES = 25
#: What the document cannot say (a notebook's validity); read it before widening it.
CONFIG = Path(__file__).with_name("schemathesis.toml")


class _Quiet(WSGIRequestHandler):
    """No access log: hundreds of lines a run."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


@pytest.fixture
def live_url(make_app) -> Iterator[str]:
    """The service on this test's database, served over HTTP on a free port. Limits are raised
    so that the run's own volume is not what it measures (the throttles have tests of their
    own); no worker runs: the contract is the web side's."""
    app = make_app(RATE_LIMIT_COUNT=10**6, TOKEN_ATTEMPTS=10**6, DUPLICATE_WINDOW=0)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = serve_in_thread(server, name="contract-service")
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_the_api_keeps_its_openapi_contract(live_url: str, tokens: dict[str, str],
                                            app, tmp_path: Path):
    # Alice has a submission, so that ids, the list and the stateful links have something real.
    app.test_client().post("/api/submissions", data=upload(tiny_notebook("contract")),
                           headers=bearer(tokens["alice"]), content_type="multipart/form-data")
    report = tmp_path / "schemathesis"
    command = [
        str(VENV_BIN / "schemathesis"), "--config-file", str(CONFIG), "run", f"{live_url}/api/openapi.json",
        "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "20261210",
        "--generation-deterministic", "--no-shrink", "--workers", "1",
        "--header", f"Authorization: Bearer {tokens['alice']}",
        "--request-timeout", "30", "--no-color",
        "--report", "junit", "--report-dir", str(report),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={"PATH": str(VENV_BIN), "HOME": str(tmp_path),
                               "SCHEMATHESIS_HOOKS": ""})
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-4000:]
    assert "Stateful" in done.stdout, done.stdout[-4000:]  # the linked phase ran too
