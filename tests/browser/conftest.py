"""Browser tests: the real service (``python -m service``) in a subprocess, driven by Debian's
Chromium through Playwright.

Playwright's own browser download cannot work on these machines, and is not needed: the PyPI
wheel ships the driver, and it drives the system's ``/usr/bin/chromium``
(``scripts/install-sysdeps.sh`` installs it, with ``fonts-noto-cjk`` for the Japanese pages).
Never run ``playwright install``. ``GRADER_TEST_CHROMIUM`` points at another Chromium binary.

Screenshots go to the test's ``tmp_path``, or to ``$GRADER_TEST_SCREENSHOTS`` when set (to look
at them after a run).

``live_service`` is one service for the whole session; a test that must not share its database
(another test counts the demo student's submissions) takes ``own_service``, started for its
module alone.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from werkzeug.serving import make_server

from grader.config import PROJECT_ROOT
from tests.courses import course_folder

CHROMIUM = os.environ.get("GRADER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic",
                 "--no-first-run"]
#: A laptop's window.
VIEWPORT = {"width": 1366, "height": 768}
TOKEN = re.compile(r"\bgt_[A-Za-z0-9_-]{16,}")
#: The line after "created 'admin'. Its one-time password ...": the password alone.
ADMIN_PASSWORD = re.compile(r"created 'admin'\..*\n\s+(\S+)\s*\n")


@dataclass
class LiveService:
    url: str
    #: The demo student's token, printed by the service on its first start.
    token: str
    log: Path
    #: Instructor ``admin``'s one-time password, printed on the first start too.
    admin_password: str
    #: The environment the service runs in (its database, upload folder): a command run
    #: with it (``flask --app service ...``) works on the service's data.
    env: dict[str, str] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_python() -> str:
    venv = PROJECT_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """``python -m service`` on a fresh SQLite file and upload folder, one embedded worker,
    in its own process group so that teardown stops it and everything it started."""
    with run_service(tmp_path_factory.mktemp("live-service")) as service:
        yield service


@pytest.fixture(scope="module")
def own_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """Like ``live_service``, but a service (and database) of this test module's own."""
    with run_service(tmp_path_factory.mktemp("own-service")) as service:
        yield service


@contextmanager
def run_service(root: Path, *, public_url: bool = False, exercises: tuple[str, ...] = ()
                ) -> Iterator[LiveService]:
    """The service on a database and upload folder under ``root``, until the block ends;
    ``public_url``: its own address is its ``PUBLIC_URL`` (as an LMS is told it);
    ``exercises``: a course of only these (default: this checkout's)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port),
               DATABASE_URL=f"sqlite:///{root / 'g.db'}", UPLOAD_DIR=str(root / "up"),
               WORKERS="1", QUEUE="embedded", PYTHONUNBUFFERED="1")
    env.pop("GRADER_ENV", None)  # the demo student is only made in development
    env.pop("PUBLIC_URL", None)
    if public_url:
        env["PUBLIC_URL"] = url
    if exercises:
        env["GRADER_EXERCISES"] = str(course_folder(root / "course", *exercises))
    log = root / "service.log"
    with open(log, "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen([service_python(), "-m", "service"], cwd=PROJECT_ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        token, admin_password = _wait_until_up(proc, url, log)
        yield LiveService(url=url, token=token, log=log, admin_password=admin_password, env=env)
    finally:
        _stop(proc)


def _wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout: float = 60
                   ) -> tuple[str, str]:
    """The demo token and admin's one-time password, once ``/healthz`` answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the service exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    output = log.read_text(errors="replace")
                    token, password = TOKEN.search(output), ADMIN_PASSWORD.search(output)
                    if token is None or password is None:
                        pytest.fail(f"no demo token or admin password in the service's "
                                    f"output:\n{output[-4000:]}")
                    return token.group(0), password.group(1)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the service did not answer /healthz in {timeout:.0f} s:\n"
                f"{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)  # the group: workers' sandboxes included
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGKILL:
                return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/install-sysdeps.sh "
                    "(Debian package chromium), or set GRADER_TEST_CHROMIUM")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (own cookies) at laptop size, preferring Japanese like the course's
    students. Console errors (a CSP violation, a script error) are collected in
    ``page.console_errors``, answers of 400 and more in ``page.failed_responses`` as
    ``(status, url)``; the browser's own ``/favicon.ico`` request is left out (the app has
    none)."""
    context = browser.new_context(viewport=VIEWPORT, locale="ja-JP")
    try:
        yield watched_page(context)
    finally:
        context.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """``new_page(viewport=...)``: another page like ``page``, in a browser context (cookies)
    of its own, e.g. an instructor next to a student. Closed after the test."""
    contexts = []

    def make(viewport: dict[str, int] = VIEWPORT) -> Page:
        context = browser.new_context(viewport=viewport, locale="ja-JP", accept_downloads=True)
        contexts.append(context)
        return watched_page(context)

    yield make
    for context in contexts:
        context.close()


def watched_page(context: BrowserContext) -> Page:
    """A new page of ``context`` that collects its console errors and failed responses."""
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.console_errors = []
    tab.failed_responses = []

    def on_console(message) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            tab.console_errors.append(message.text)

    def on_response(response) -> None:
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            tab.failed_responses.append((response.status, response.url))

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: tab.console_errors.append(str(error)))
    tab.on("response", on_response)
    return tab


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where a test keeps its screenshots."""
    chosen = os.environ.get("GRADER_TEST_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def serve_app():
    """``serve_app(app)``: a Flask app served on a free port in a thread (for the tests' own
    preview pages); the address. Stopped after the test."""
    servers = []

    def serve(app) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server in servers:
        server.shutdown()
