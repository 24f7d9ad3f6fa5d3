"""The compose command of this machine, and a stack of docker-compose.yml brought up for a test."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from grader.config import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
#: PostgreSQL and Redis built from the local Debian base (no registry on the test machine).
OVERRIDE_FILE = PROJECT_ROOT / "tests" / "compose" / "override.yml"


@lru_cache(maxsize=1)
def compose_command() -> tuple[str, ...] | None:
    """``docker compose`` (the v2 plugin) when the docker command has it, else Debian's
    ``docker-compose`` (v1), else ``None``."""
    docker = shutil.which("docker")
    if docker is not None:
        done = subprocess.run([docker, "compose", "version"], capture_output=True)
        if done.returncode == 0:
            return (docker, "compose")
    legacy = shutil.which("docker-compose")
    return (legacy,) if legacy is not None else None


#: Variables of this process that the compose file reads, left out so that the stack's env
#: file decides (tests/conftest.py sets ``WARM_POOL=0`` for the other tests' workers).
STACK_SETTINGS = ("WARM_POOL",)


def compose_env() -> dict[str, str]:
    """This process's environment without the variables that would change what compose reads
    (profiles, project name, files; the stack's settings): the test says those itself."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith("COMPOSE_") and key not in STACK_SETTINGS}


@dataclass
class Stack:
    """One project of docker-compose.yml (plus ``files`` after it) with its own env file."""

    project: str
    env_file: Path
    files: Sequence[Path] = (COMPOSE_FILE, OVERRIDE_FILE)
    #: Once up: the web's address, the host folder (GRADER_HOST_DIR), seconds `up` took.
    base_url: str = ""
    host: Path = Path("/nonexistent")
    up_seconds: float = 0.0

    def argv(self, *args: str) -> list[str]:
        command = compose_command()
        assert command is not None, "no compose command"
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return [*command, "--project-name", self.project, "--env-file", str(self.env_file),
                "--project-directory", str(PROJECT_ROOT), *files, *args]

    def run(self, *args: str, input: str | None = None, timeout: float = 600,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), input=input, capture_output=True, text=True,
                              timeout=timeout, env=compose_env(), cwd=PROJECT_ROOT)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args[:2])} failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def logs(self) -> str:
        done = self.run("logs", "--no-color", "--tail", "60", check=False, timeout=120)
        return done.stdout[-12000:] + done.stderr[-2000:]
