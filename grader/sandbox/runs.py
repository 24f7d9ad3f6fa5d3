"""Started runs: a launched sandbox followed by a background thread, as a context manager.

Both backends launch a process and then follow it with
:func:`~grader.sandbox.process.stream_process`. :meth:`Sandbox.run` follows it in the calling
thread (``on_line`` is called there, as callers expect); :meth:`Sandbox.start` hands it to
:class:`FollowedRun`, which follows it in a thread of its own so that the caller can start a
second sandbox meanwhile (the grader's runner beside the student's kernel), stop the first one,
and always release both: leaving the ``with`` block kills what still runs, waits for the
thread, then closes the launch (cgroup, staging directory, file descriptors).

A sandbox that could not be made is still a run, :class:`EndedRun`, whose result holds the
``sandbox_error``, so that callers handle one shape.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from types import TracebackType
from typing import Protocol

from grader.sandbox.base import (
    PEER_TIMEOUT,
    LineCallback,
    NetworkPeer,
    SandboxError,
    SandboxResult,
    SandboxRun,
)
from grader.sandbox.loan_records import Wall


class LineRelay:
    """An ``on_line`` for a run started before anybody listens (a warm sandbox): lines go to
    :attr:`target` when one is set, and are dropped before. Setting it is thread-safe (one
    attribute); the run's following thread calls the relay."""

    def __init__(self) -> None:
        self.target: LineCallback | None = None
        #: The ``event`` names of JSON lines seen before a target was set (``warm``, ``ready``).
        self.early: set[str] = set()
        self.event = threading.Event()

    def __call__(self, line: str) -> None:
        target = self.target
        if target is not None:
            target(line)
            return
        if line.startswith("{"):
            try:
                name = json.loads(line).get("event")
            except (ValueError, AttributeError):
                return
            if isinstance(name, str):
                self.early.add(name[:40])
                self.event.set()


class Launched(Protocol):
    """A launched sandbox process, as a backend hands it to :class:`FollowedRun`."""

    def follow(self, on_line: LineCallback | None, stop: threading.Event | None) -> SandboxResult:
        """Stream the process's output until it ends (or is killed) and make the result."""
        ...

    def network_peer(self, timeout: float) -> NetworkPeer:
        """The process's network namespace; raises :class:`SandboxError`."""
        ...

    def kill(self) -> None:
        """SIGKILL every process of the run (safe from any thread, also after its end)."""
        ...

    def close(self) -> None:
        """Kill whatever is left and release everything the launch holds. Idempotent."""
        ...


class FollowedRun:
    """A :class:`~grader.sandbox.base.SandboxRun` whose process a daemon thread follows."""

    def __init__(self, launched: Launched, on_line: LineCallback | None = None) -> None:
        self._launched = launched
        self._on_line = on_line
        self._stop = threading.Event()
        self._result: SandboxResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._follow, name="sandbox-run", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            self._result = self._launched.follow(self._on_line, self._stop)
        except BaseException as exc:  # handed to the waiting thread by wait()
            self._error = exc

    def network_peer(self, timeout: float = PEER_TIMEOUT) -> NetworkPeer:
        return self._launched.network_peer(timeout)

    def cpu_wall(self) -> Wall | None:
        """What confines the run to its CPUs (a bubblewrap run's cgroup cpuset, a docker
        container), else ``None``: what a loan of idle CPUs widens
        (:class:`~grader.sandbox.cpus.CpuLoan`)."""
        cpu_wall = getattr(self._launched, "cpu_wall", None)
        return cpu_wall() if cpu_wall is not None else None

    def stop(self) -> None:
        self._stop.set()  # the following thread sees it within STOP_POLL and reports it
        if self._thread.is_alive():
            self._launched.kill()  # at once, even while the thread is busy in on_line

    def wait(self, timeout: float | None = None) -> SandboxResult:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the sandbox run has not ended after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __enter__(self) -> FollowedRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self._thread.join()
        self._launched.close()


class EndedRun:
    """A run that ended before it began: its result says why (``sandbox_error``)."""

    def __init__(self, result: SandboxResult) -> None:
        self._result = result

    def network_peer(self, timeout: float = PEER_TIMEOUT) -> NetworkPeer:
        raise SandboxError(f"the sandbox did not start: {self._result.sandbox_error}")

    def stop(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> SandboxResult:
        return self._result

    def __enter__(self) -> EndedRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pass


def wait_within(run: SandboxRun, seconds: float) -> SandboxResult:
    """``run``'s result within ``seconds`` from now, else it is stopped and its result marked
    timed out: the host's clock for a run whose sandbox started before its work was handed over
    (a warm kit's), whose own wall clock began too early to be the limit."""
    try:
        return run.wait(timeout=seconds)
    except TimeoutError:
        run.stop()
        return replace(run.wait(), timed_out=True, stopped=False)


def run_launched(launched: Launched | SandboxResult, on_line: LineCallback | None
                 ) -> SandboxResult:
    """:meth:`Sandbox.run` for a backend: follow ``launched`` in this thread, then release
    it; a launch that failed is its own result."""
    if isinstance(launched, SandboxResult):
        return launched
    try:
        return launched.follow(on_line, None)
    finally:
        launched.close()


def start_launched(launched: Launched | SandboxResult, on_line: LineCallback | None
                   ) -> FollowedRun | EndedRun:
    """:meth:`Sandbox.start` for a backend: follow ``launched`` in a thread of its own."""
    if isinstance(launched, SandboxResult):
        return EndedRun(launched)
    return FollowedRun(launched, on_line)
