"""One started container: its output streamed and capped, its wall clock, how it ended.

:class:`ContainerRun` is what :meth:`DockerSandbox._launch` hands to
:func:`~grader.sandbox.runs.run_launched` / :func:`~grader.sandbox.runs.start_launched`
(a :class:`~grader.sandbox.runs.Launched`). The host attaches to the container before starting
it, so not a byte of output is missed, and reads the multiplexed stream (8-byte frame headers:
stream, size) straight from the daemon's socket: only the first ``limits.log_bytes`` of each
stream are kept, nothing goes to a log file on the host's disk (the container's log driver is
``none``). The wall-clock limit is enforced here, from outside: on the deadline, or when told
to stop, the container is killed (SIGKILL to every process: they are all in it).

How it ended comes from the daemon: ``State.ExitCode`` (the init process, docker-init, exits
128+N when the command dies of signal N: read as a signal, as for bubblewrap) and
``State.OOMKilled``.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import signal
import threading
import time
from typing import Any

from grader.limits import Limits
from grader.sandbox.base import LineCallback, NetworkPeer, SandboxError, SandboxResult
from grader.sandbox.bwrap_run import split_exit
from grader.sandbox.docker_loans import ContainerCpus
from grader.sandbox.process import (
    DRAIN_GRACE,
    STOP_POLL,
    CappedBuffer,
    LineSplitter,
    StreamOutcome,
    result_of,
)

_CHUNK = 64 * 1024
#: Seconds to wait for the daemon to report a killed container's end.
WAIT_TIMEOUT = 30
#: Stream numbers in the attach protocol's frame headers.
STDOUT, STDERR = 1, 2


class FrameReader:
    """Splits the attach stream into (stream, payload) frames as bytes arrive."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= 8:
            size = int.from_bytes(self.buffer[4:8], "big")
            if len(self.buffer) < 8 + size:
                break
            frames.append((self.buffer[0], bytes(self.buffer[8:8 + size])))
            del self.buffer[:8 + size]
        return frames


class ContainerRun:
    """A created, attached and started container, and the client that made it."""

    def __init__(
        self,
        client: Any,
        container: str,
        sock: Any,
        *,
        started: float,
        limits: Limits,
        max_line_bytes: int,
        wall: ContainerCpus | None = None,
    ) -> None:
        self.client = client
        #: The container as a loan of idle CPUs records it (``None``: not pinned to a slot).
        self.wall = wall
        self.container = container
        self.started = started
        self.limits = limits
        self.max_line_bytes = max_line_bytes
        self._sock = sock
        self._closed = False
        self._lock = threading.Lock()

    def follow(self, on_line: LineCallback | None, stop: threading.Event | None) -> SandboxResult:
        """Stream the container's output until it ends, is killed on its deadline or stopped;
        then read its state and remove it."""
        try:
            outcome = self._stream(on_line, stop)
            killed = outcome.timed_out or outcome.stopped
            deadline = self.started + self.limits.notebook_timeout
            state, late = self._final_state(None if killed else deadline)
            if late:  # its output closed, but it ran on until the deadline
                outcome = dataclasses.replace(outcome, timed_out=True)
            exit_code, exit_signal = split_exit(state.get("ExitCode"))
            if outcome.timed_out or outcome.stopped:
                exit_code, exit_signal = None, signal.SIGKILL.value
            return result_of(outcome, exit_code, exit_signal,
                             oom_killed=bool(state.get("OOMKilled")))
        finally:
            self.close()

    def cpu_wall(self) -> ContainerCpus | None:
        """What a loan of idle CPUs widens and narrows: this container, when it is pinned."""
        return self.wall

    def network_peer(self, timeout: float) -> NetworkPeer:
        """The container's network namespace (it is running once ``start`` returned)."""
        try:
            state = self.client.inspect_container(self.container)["State"]
        except Exception as exc:
            raise SandboxError(f"the sandbox container is gone ({exc})") from exc
        if not state.get("Running"):
            raise SandboxError("the sandbox ended before its network namespace could be joined")
        return NetworkPeer(backend="docker", container=self.container)

    def kill(self) -> None:
        """SIGKILL every process of the container (safe from any thread, also after its end)."""
        try:
            self.client.kill(self.container)
        except Exception:  # already ended or removed
            pass

    def close(self) -> None:
        """Kill the container if it runs, close the stream and remove it. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass
        try:
            self.client.remove_container(self.container, force=True)
        except Exception:  # the daemon removes it later through the reaper
            pass

    def _stream(self, on_line: LineCallback | None, stop: threading.Event | None
                ) -> StreamOutcome:
        caps = {STDOUT: CappedBuffer(self.limits.log_bytes),
                STDERR: CappedBuffer(self.limits.log_bytes)}
        lines = LineSplitter(on_line, self.max_line_bytes)
        frames = FrameReader()
        deadline = self.started + self.limits.notebook_timeout
        timed_out = stopped = False
        give_up = float("inf")
        fd = self._sock.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if not (timed_out or stopped):
                    if stop is not None and stop.is_set():
                        stopped = True
                    elif now >= deadline:
                        timed_out = True
                    if timed_out or stopped:
                        self.kill()
                        give_up = now + DRAIN_GRACE
                if now >= give_up:
                    break
                wake = give_up if (timed_out or stopped) else deadline
                if stop is not None:
                    wake = min(wake, now + STOP_POLL)
                if not selector.select(max(wake - now, 0)):
                    continue
                try:
                    chunk = os.read(fd, _CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                for stream, payload in frames.feed(chunk):
                    if stream in caps:
                        caps[stream].add(payload)
                    if stream == STDOUT:
                        lines.feed(payload)
        lines.close()
        if not (timed_out or stopped) and stop is not None and stop.is_set():
            stopped = True  # killed by stop() from another thread while we read its end
        return StreamOutcome(
            returncode=None,
            wall_seconds=time.monotonic() - self.started,
            timed_out=timed_out,
            stdout=bytes(caps[STDOUT].data),
            stderr=bytes(caps[STDERR].data),
            stdout_truncated=caps[STDOUT].truncated,
            stderr_truncated=caps[STDERR].truncated,
            stopped=stopped,
        )

    def _final_state(self, deadline: float | None) -> tuple[dict[str, Any], bool]:
        """The container's state once it has ended, and whether it had to be killed for its
        ``deadline`` (``None``: it was killed already, wait a little for the daemon)."""
        late = False
        wait = WAIT_TIMEOUT if deadline is None else max(deadline - time.monotonic(), 0) + 1
        try:
            self.client.wait(self.container, timeout=wait)
        except Exception:  # still running (a read timeout), or the daemon is slow
            late = deadline is not None
            self.kill()
            try:
                self.client.wait(self.container, timeout=WAIT_TIMEOUT)
            except Exception:
                return {}, late
        try:
            state: dict[str, Any] = self.client.inspect_container(self.container)["State"]
        except Exception:
            return {}, late
        return state, late
