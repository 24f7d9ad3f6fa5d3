"""Containers the docker backend leaves behind: their labels, the reaper, and a watchdog.

Every container the backend makes carries :data:`SANDBOX_LABEL`, :data:`RUN_LABEL` (the run:
which request of which grader) and :data:`OWNER_LABEL`, the
:func:`~grader.sandbox.process.owner_tag` of the grader process that made it. A grader removes
its containers when each run ends; two things cover a grader that cannot:

* the *watchdog*: the first container a grader process makes starts one small child process
  (``python -m grader.sandbox.docker_reaper <owner>``) holding the read end of a pipe whose
  write end only the grader holds. When the grader dies, even by SIGKILL, the pipe reaches
  end of file and the watchdog removes every container labelled with that owner, at once;
* the *reaper* (:func:`reap_containers`): when a worker starts (and before a backend's first
  run) it removes the labelled containers of owners that no longer exist, for the case where
  the watchdog died too (the machine rebooted, the watchdog was killed).

Neither touches a container without the label, nor one whose grader still lives.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from typing import Any

from grader.sandbox.process import owner_gone

logger = logging.getLogger(__name__)

SANDBOX_LABEL = "org.notebook-grader.sandbox"
OWNER_LABEL = "org.notebook-grader.owner"
RUN_LABEL = "org.notebook-grader.run"

_watchdogs: dict[str, subprocess.Popen[bytes]] = {}
_watchdog_lock = threading.Lock()


def reap_containers(client: Any) -> list[str]:
    """Remove the labelled containers whose grader is gone; never raises. ``client`` is a
    ``docker.APIClient``. Returns the ids removed."""
    try:
        containers = client.containers(all=True, filters={"label": SANDBOX_LABEL})
    except Exception as exc:  # no daemon: nothing to reap
        logger.warning("cannot list sandbox containers: %s", exc)
        return []
    removed = []
    for container in containers:
        owner = (container.get("Labels") or {}).get(OWNER_LABEL, "")
        if not owner_gone(owner):
            continue
        try:
            client.remove_container(container["Id"], force=True)
        except Exception as exc:  # removed meanwhile, or the daemon is busy: next time
            logger.warning("stale sandbox container not removed (%s): %s", exc,
                           container["Id"][:12])
            continue
        removed.append(container["Id"])
        logger.info("removed the container of a killed grader: %s", container["Id"][:12])
    return removed


def remove_owned(client: Any, owner: str) -> list[str]:
    """Remove every labelled container of ``owner`` (running or not). Returns their ids."""
    containers = client.containers(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})
    removed = []
    for container in containers:
        try:
            client.remove_container(container["Id"], force=True)
            removed.append(container["Id"])
        except Exception as exc:  # already gone
            logger.info("container %s: %s", container["Id"][:12], exc)
    return removed


def ensure_watchdog(owner: str, base_url: str | None) -> None:
    """Start this grader's watchdog unless it runs (see the module docstring)."""
    with _watchdog_lock:
        running = _watchdogs.get(owner)
        if running is not None and running.poll() is None:
            return
        read_end, write_end = os.pipe()  # both close-on-exec: no other child inherits them
        argv = [sys.executable, "-m", "grader.sandbox.docker_reaper", owner]
        env = {key: value for key, value in os.environ.items()
               if key in ("PATH", "PYTHONPATH", "DOCKER_HOST", "DOCKER_CERT_PATH",
                          "DOCKER_TLS_VERIFY")}
        if base_url:
            env["DOCKER_HOST"] = base_url
        try:
            watchdog = subprocess.Popen(argv, stdin=read_end, stdout=subprocess.DEVNULL,
                                        env=env, start_new_session=True)
        finally:
            os.close(read_end)
        # never written, closed only when this process ends: the watchdog's end of file
        _watchdogs[owner] = watchdog
        _keep_open.append(write_end)


_keep_open: list[int] = []


def _watch(owner: str) -> None:
    """The watchdog: wait for the grader's end, then remove its containers."""
    import docker
    from docker.utils import kwargs_from_env

    while sys.stdin.buffer.read(4096):
        pass
    try:
        remove_owned(docker.APIClient(version="auto", **kwargs_from_env()), owner)
    except docker.errors.DockerException:  # no daemon any more: nothing of ours runs
        pass


if __name__ == "__main__":
    _watch(sys.argv[1])
