"""A Docker daemon for the tests: the running one, or one started for the session."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from grader.config import PROJECT_ROOT

#: Where a daemon started by the tests writes its log and pid file.
STATE_DIR = PROJECT_ROOT / "var" / "docker"
START_TIMEOUT = 30.0


def _client() -> Any:
    import docker
    from docker.utils import kwargs_from_env

    return docker.APIClient(version="auto", timeout=60, **kwargs_from_env())


def _answering_client() -> Any | None:
    """A client of the daemon, or ``None`` while none answers (the client asks for the API
    version as it is made)."""
    try:
        client = _client()
        return client if client.ping() else None
    except ImportError:
        raise
    except Exception:
        return None


@contextmanager
def running_daemon() -> Iterator[Any]:
    """A client of a daemon that answers; starts ``dockerd`` (and stops it after) when none
    does. Skips when none answers and this is not root; fails when dockerd is missing."""
    try:
        client = _answering_client()
    except ImportError:
        pytest.fail("the Docker SDK is missing: pip install -e '.[docker]' (make does)")
    if client is not None:
        yield client
        return
    if os.geteuid() != 0:
        pytest.skip("no Docker daemon answers, and only root can start one (dockerd)")
    dockerd = shutil.which("dockerd", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if dockerd is None:
        pytest.fail("dockerd is missing: apt-get install docker.io (make sysdeps-test does)")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "dockerd.log", "ab") as log:
        daemon = subprocess.Popen([dockerd, "--pidfile", str(STATE_DIR / "dockerd.pid")],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while (client := _answering_client()) is None:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start: see {STATE_DIR / 'dockerd.log'}")
            time.sleep(0.2)
        yield client
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
