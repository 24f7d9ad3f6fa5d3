"""Where the grader finds exercises, references and data, and which sandbox it uses.

A frozen value built once (from the environment by the CLI and the service, explicitly by
tests) and passed down; nothing deeper reads the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from grader.spec import Exercise, SpecError, list_exercises, load_exercise

#: The checkout holding ``grader/``, ``exercises/`` and ``reference/``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GraderConfig:
    exercises_root: Path
    reference_root: Path
    #: Holds ``mnist.npz`` (``grader data fetch`` puts it there).
    data_dir: Path
    #: Sandbox backend name: ``bwrap`` (default), ``docker`` or ``unsafe`` (development only, no
    #: isolation).
    sandbox: str = "bwrap"
    #: Where each grading makes its run directory (the sandboxes' work folders); ``None``: the
    #: system's temporary folder. A worker in a container whose sandboxes are sibling
    #: containers sets a folder mounted at the same path on the host, so that the paths it
    #: hands the daemon exist there (docs/deployment.md).
    work_dir: Path | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> GraderConfig:
        """``GRADER_EXERCISES``, ``GRADER_REFERENCE``, ``GRADER_DATA_DIR``, ``GRADER_SANDBOX``,
        ``GRADER_WORK_DIR``; defaults are the folders of this checkout, ``var/data`` and the
        system's temporary folder."""
        env = os.environ if environ is None else environ

        def path(name: str, default: Path) -> Path:
            value = env.get(name, "")
            return Path(value).resolve() if value else default

        return cls(
            exercises_root=path("GRADER_EXERCISES", PROJECT_ROOT / "exercises"),
            reference_root=path("GRADER_REFERENCE", PROJECT_ROOT / "reference"),
            data_dir=path("GRADER_DATA_DIR", PROJECT_ROOT / "var" / "data"),
            sandbox=env.get("GRADER_SANDBOX", "") or "bwrap",
            work_dir=Path(env["GRADER_WORK_DIR"]).resolve() if env.get("GRADER_WORK_DIR")
            else None,
        )

    def exercise_ids(self) -> list[str]:
        """Ids of the exercises under ``exercises_root``."""
        return list_exercises(self.exercises_root)

    def exercise(self, exercise_id: str) -> Exercise:
        """The exercise ``exercise_id``, parsed once per change of its spec file; a
        :class:`SpecError` naming the known ids when there is no such exercise."""
        directory = self.exercises_root / exercise_id
        try:
            if "/" in exercise_id or exercise_id.startswith("."):
                raise FileNotFoundError(exercise_id)
            mtime = (directory / "exercise.toml").stat().st_mtime_ns
        except FileNotFoundError:
            known = ", ".join(self.exercise_ids()) or "none"
            raise SpecError(f"unknown exercise '{exercise_id}' (known: {known})") from None
        return _load_exercise(directory, self.reference_root, mtime)


@lru_cache(maxsize=64)
def _load_exercise(directory: Path, reference_root: Path, mtime_ns: int) -> Exercise:
    return load_exercise(directory, reference_root)
