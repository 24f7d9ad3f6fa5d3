"""A course of fewer exercises than this checkout's, for tests whose figures are those of a
course of one exercise (a course total, a list of exercises): the real exercise folders, linked
into a folder of the test's own, the references where they are."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from grader.config import GraderConfig


def course_folder(root: Path, *exercises: str) -> Path:
    """``root/exercises`` holding links to this checkout's folders of ``exercises``."""
    real = GraderConfig.from_env().exercises_root
    folder = root / "exercises"
    folder.mkdir(parents=True, exist_ok=True)
    for exercise in exercises:
        (folder / exercise).symlink_to(real / exercise, target_is_directory=True)
    return folder


def course_config(root: Path, *exercises: str) -> GraderConfig:
    """This checkout's grader configuration with only ``exercises`` in its course."""
    return dataclasses.replace(GraderConfig.from_env(),
                               exercises_root=course_folder(root, *exercises))
