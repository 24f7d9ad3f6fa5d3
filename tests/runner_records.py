"""What a run's sandboxes and runner leave, made by hand for the outcome and retry tests."""

from __future__ import annotations

from typing import Any

from grader.results import RunnerResult
from grader.sandbox.base import SandboxResult


def ended(**changes: Any) -> SandboxResult:
    """A sandbox's result: exited 0 after a second, unless ``changes`` say otherwise."""
    values = dict(exit_code=0, signal=None, wall_seconds=1.0, timed_out=False,
                  oom_killed=False, stdout=b"", stderr=b"")
    return SandboxResult(**{**values, **changes})  # type: ignore[arg-type]


#: The runner's record after cell 3, killed by its memory limit while cell 4 ran.
PARTIAL = RunnerResult.model_validate({"version": 2, "status": "running",
                                       "cells": [{"index": 3, "status": "ok"}]})
