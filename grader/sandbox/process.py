"""A child process on the host: its output streamed under a deadline, its environment, its end.

Both backends run their command through :func:`stream_process`: the unsafe one around the
command itself, the bubblewrap one around ``bwrap``. What is here knows nothing of isolation;
it reads pipes, keeps capped logs, cuts lines for progress events, kills on the deadline or
when told to stop (a started run is followed by another thread) and reports how a process
ended (:func:`split_returncode`, :func:`error_result` for a sandbox that could not start).

:func:`owner_tag` names the grader process in what a run leaves on the host, so that a sweep
after a crash removes only what belongs to graders that no longer exist (:func:`owner_gone`).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.limits import Limits
from grader.sandbox.base import LineCallback, SandboxResult

#: Longest stdout line handed to ``on_line``; the rest of a longer line is dropped.
MAX_LINE_BYTES = 64 * 1024
#: After a kill, how long to keep draining pipes held open by escaped grandchildren.
DRAIN_GRACE = 2.0
#: How often a followed process checks whether it was asked to stop.
STOP_POLL = 0.05
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class StreamOutcome:
    """What :func:`stream_process` saw of a process that has ended (or was killed)."""

    returncode: int | None
    wall_seconds: float
    timed_out: bool
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    #: Killed because the ``stop`` event was set.
    stopped: bool = False


class CappedBuffer:
    """Keeps the first ``limit`` bytes of a stream and remembers whether more came."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.truncated = True
        if room > 0:
            self.data += chunk[:room]


class LineSplitter:
    """Splits a byte stream into lines for ``on_line``, cutting lines at ``max_bytes``."""

    def __init__(self, on_line: LineCallback | None, max_bytes: int) -> None:
        self.on_line = on_line
        self.max_bytes = max_bytes
        self.buffer = bytearray()
        self.skipping = False  # inside the dropped tail of an over-long line

    def feed(self, chunk: bytes) -> None:
        if self.on_line is None:
            return
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not self.skipping:
                self.buffer += piece[: self.max_bytes - len(self.buffer)]
                if len(self.buffer) >= self.max_bytes and end < 0:
                    self._emit()
                    self.skipping = True
            if end < 0:
                return
            if not self.skipping:
                self._emit()
            self.skipping = False
            start = end + 1

    def close(self) -> None:
        """The stream ended: a last line without a newline is still a line."""
        if self.on_line is not None and self.buffer and not self.skipping:
            self._emit()

    def _emit(self) -> None:
        assert self.on_line is not None
        line = bytes(self.buffer).removesuffix(b"\r").decode("utf-8", errors="replace")
        self.buffer.clear()
        self.on_line(line)


def stream_process(
    proc: subprocess.Popen[bytes],
    *,
    started: float,
    timeout: float,
    log_bytes: int,
    kill: Callable[[], None],
    on_line: LineCallback | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    stop: threading.Event | None = None,
) -> StreamOutcome:
    """Read ``proc``'s stdout and stderr until it ends or ``timeout`` seconds after ``started``.

    Both pipes are read all along so the child never blocks on a full pipe; only the first
    ``log_bytes`` of each are kept. On the deadline ``kill`` is called (it must kill every
    process of the run) and the outcome says ``timed_out``; when ``stop`` is set (from another
    thread) the same happens at once and the outcome says ``stopped``.
    """
    assert proc.stdout is not None and proc.stderr is not None
    ending = _Ending(started + timeout, kill, stop)
    caps = {"stdout": CappedBuffer(log_bytes), "stderr": CappedBuffer(log_bytes)}
    lines = LineSplitter(on_line, max_line_bytes)
    with selectors.DefaultSelector() as selector:
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe.fileno(), selectors.EVENT_READ, name)
        while selector.get_map():
            now = time.monotonic()
            ending.check(now)
            if now >= ending.give_up:
                break  # a process outside our reach holds the pipe; stop listening
            for key, _ in selector.select(ending.next_check(now) - now):
                try:
                    chunk = os.read(key.fd, _CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                caps[key.data].add(chunk)
                if key.data == "stdout":
                    lines.feed(chunk)
    lines.close()
    returncode = ending.wait(proc)
    return StreamOutcome(
        returncode=returncode,
        wall_seconds=time.monotonic() - started,
        timed_out=ending.timed_out,
        stdout=bytes(caps["stdout"].data),
        stderr=bytes(caps["stderr"].data),
        stdout_truncated=caps["stdout"].truncated,
        stderr_truncated=caps["stderr"].truncated,
        stopped=ending.stopped,
    )


class _Ending:
    """When a followed process must be killed: on its deadline, or when asked to stop."""

    def __init__(
        self, deadline: float, kill: Callable[[], None], stop: threading.Event | None
    ) -> None:
        self.deadline = deadline
        self.kill = kill
        self.stop = stop
        self.timed_out = False
        self.stopped = False
        self.give_up = float("inf")  # after a kill, when to stop draining the pipes

    @property
    def killed(self) -> bool:
        return self.timed_out or self.stopped

    def check(self, now: float) -> None:
        """Kill the process if its time is up or a stop was asked for."""
        if self.killed:
            return
        if self.stop is not None and self.stop.is_set():
            self.stopped = True
        elif now >= self.deadline:
            self.timed_out = True
        else:
            return
        self.kill()
        self.give_up = now + DRAIN_GRACE

    def next_check(self, now: float) -> float:
        """When to look again at the clock and the stop flag."""
        if self.killed:
            return self.give_up
        if self.stop is not None:
            return min(self.deadline, now + STOP_POLL)
        return self.deadline

    def wait(self, proc: subprocess.Popen[bytes]) -> int:
        """``proc``'s return code; it may have closed its pipes and still run."""
        while True:
            now = time.monotonic()
            self.check(now)
            wake = self.deadline if self.killed else self.next_check(now)
            try:
                return proc.wait(timeout=max(wake - now, 0))
            except subprocess.TimeoutExpired:
                if self.killed:
                    self.kill()
                    return proc.wait()


def follow_process(
    proc: subprocess.Popen[bytes],
    *,
    started: float,
    limits: Limits,
    kill: Callable[[], None],
    on_line: LineCallback | None,
    max_line_bytes: int,
    stop: threading.Event | None,
) -> StreamOutcome:
    """:func:`stream_process` under a run's limits (wall clock, log caps)."""
    return stream_process(proc, started=started, timeout=limits.notebook_timeout,
                          log_bytes=limits.log_bytes, kill=kill, on_line=on_line,
                          max_line_bytes=max_line_bytes, stop=stop)


def result_of(outcome: StreamOutcome, exit_code: int | None, exit_signal: int | None,
              **facts: Any) -> SandboxResult:
    """The :class:`SandboxResult` of a followed process; ``facts`` are what only the backend
    knows (``oom_killed``, ``peak_memory_bytes``, ``sandbox_error``)."""
    return SandboxResult(
        exit_code=exit_code,
        signal=exit_signal,
        wall_seconds=outcome.wall_seconds,
        timed_out=outcome.timed_out,
        oom_killed=facts.pop("oom_killed", False),
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        stopped=outcome.stopped,
        **facts,
    )


def split_returncode(returncode: int | None) -> tuple[int | None, int | None]:
    """``(exit_code, signal)`` from a Popen return code (negative means killed by a signal)."""
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, -returncode
    return returncode, None


def error_result(reason: str, started: float | None = None) -> SandboxResult:
    """The result of a run whose sandbox could not be made or started."""
    return SandboxResult(
        exit_code=None,
        signal=None,
        wall_seconds=0.0 if started is None else time.monotonic() - started,
        timed_out=False,
        oom_killed=False,
        stdout=b"",
        stderr=b"",
        sandbox_error=reason,
    )


def base_env(home: str, tmpdir: str, python: str | None) -> dict[str, str]:
    """The variables every run gets; ``request.env`` is laid over them."""
    path = "/usr/local/bin:/usr/bin:/bin"
    if python:
        path = f"{os.path.dirname(python)}:{path}"
    return {"HOME": home, "TMPDIR": tmpdir, "PATH": path, "LANG": "C.UTF-8"}


def runtime_paths(python: str) -> tuple[str, ...]:
    """Directories that make ``python`` work: its virtualenv and the base interpreter's prefix.

    ``.venv/bin/python`` is a symlink into the base installation, so the prefix is found by
    resolving it; paths are given both as written and resolved, when they differ.
    """
    exe = Path(os.path.abspath(python))
    candidates = []
    if (exe.parent.parent / "pyvenv.cfg").is_file():
        candidates.append(exe.parent.parent)
    candidates.append(exe.resolve().parent.parent)
    if exe == Path(os.path.abspath(sys.executable)):
        candidates += [Path(sys.prefix), Path(sys.base_prefix)]
    found: list[str] = []
    for path in candidates:
        for variant in (str(path), os.path.realpath(path)):
            if variant not in found:
                found.append(variant)
    return tuple(found)


def read_available(fd: int) -> bytes:
    """What is in the pipe ``fd`` now, without waiting."""
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


def owner_tag() -> str:
    """``<pid namespace>-<pid>`` of this process, put in the names of what a run leaves on the
    host (cgroups, staging directories) so a sweep can tell whose they are; see
    :func:`owner_gone`."""
    return f"{_pid_namespace()}-{os.getpid()}"


def owner_gone(tag: str) -> bool:
    """Whether the process named by an :func:`owner_tag` no longer exists.

    ``False`` whenever that cannot be known: a malformed tag, or a process of another PID
    namespace (a grader in another container sharing the directory), whose pid means nothing
    here. A zombie still counts as existing.
    """
    namespace, _, pid = tag.partition("-")
    if not (namespace.isdigit() and pid.isdigit()) or int(namespace) != _pid_namespace():
        return False
    return not pid_alive(int(pid))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists in this PID namespace (no permission to signal it: yes)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0
