"""A deadline checked between pieces of the host's work (:mod:`grader.preparation`): it
bounds the sum of many bounded steps without a thread or a child process."""

from __future__ import annotations

import time


class DeadlinePassed(Exception):
    """A :class:`Deadline` was checked after it passed; ``step`` says where."""

    def __init__(self, step: str, seconds: float):
        super().__init__(f"{step}: past the {seconds:g} s deadline")
        self.step = step
        self.seconds = seconds


class Deadline:
    """A point in (monotonic) time, checked between pieces of work."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.step = "start"

    @property
    def passed(self) -> bool:
        return time.monotonic() > self.at

    def check(self) -> None:
        """Raise :class:`DeadlinePassed` if the deadline has passed."""
        if self.passed:
            raise DeadlinePassed(self.step, self.seconds)

    def restart(self) -> None:
        """Start the same number of seconds again from now."""
        self.at = time.monotonic() + self.seconds

    def enter(self, step: str) -> None:
        """Name the step that starts (for the message), after checking the deadline."""
        self.check()
        self.step = step
