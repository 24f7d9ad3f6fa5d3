"""Running a command straight on the host, with a wall clock and capped output: no isolation.

:class:`UnsafeLocalSandbox` is for development on machines without bubblewrap; it must never
grade untrusted notebooks. The loop that streams a child's output under a deadline,
:func:`stream_process`, lives here because it is all this backend is; the bubblewrap backend
runs the same loop around ``bwrap``.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from grader.sandbox.base import LineCallback, SandboxRequest, SandboxResult

#: Longest stdout line handed to ``on_line``; the rest of a longer line is dropped.
MAX_LINE_BYTES = 64 * 1024
#: After a kill, how long to keep draining pipes held open by escaped grandchildren.
DRAIN_GRACE = 2.0
_CHUNK = 64 * 1024


class UnsafeSandboxWarning(UserWarning):
    """The unsafe backend was constructed: student code would run with the grader's rights."""


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


class _Capped:
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


class _Lines:
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
) -> StreamOutcome:
    """Read ``proc``'s stdout and stderr until it ends or ``timeout`` seconds after ``started``.

    Both pipes are read all along so the child never blocks on a full pipe; only the first
    ``log_bytes`` of each are kept. On the deadline ``kill`` is called (it must kill every
    process of the run) and the outcome says ``timed_out``.
    """
    assert proc.stdout is not None and proc.stderr is not None
    deadline = started + timeout
    caps = {"stdout": _Capped(log_bytes), "stderr": _Capped(log_bytes)}
    lines = _Lines(on_line, max_line_bytes)
    timed_out = False
    give_up = float("inf")
    with selectors.DefaultSelector() as selector:
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe.fileno(), selectors.EVENT_READ, name)
        while selector.get_map():
            now = time.monotonic()
            if not timed_out and now >= deadline:
                timed_out = True
                kill()
                give_up = now + DRAIN_GRACE
            if now >= give_up:
                break  # a process outside our reach holds the pipe; stop listening
            for key, _ in selector.select((give_up if timed_out else deadline) - now):
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
    try:
        returncode = proc.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        timed_out = True
        kill()
        returncode = proc.wait()
    return StreamOutcome(
        returncode=returncode,
        wall_seconds=time.monotonic() - started,
        timed_out=timed_out,
        stdout=bytes(caps["stdout"].data),
        stderr=bytes(caps["stderr"].data),
        stdout_truncated=caps["stdout"].truncated,
        stderr_truncated=caps["stderr"].truncated,
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


def translate_paths(value: str, mapping: Mapping[str, str]) -> str:
    """Replace sandbox paths (``mapping`` keys) by host paths where they start a path.

    A target counts when it begins the string or follows ``=`` or ``:`` (``--out=/work/x``,
    ``PYTHONPATH=/a:/work``) and ends there or continues with ``/`` or ``:``. Longer targets win.
    """
    if not mapping:
        return value
    targets = sorted(mapping, key=len, reverse=True)
    pattern = r"(?<![^=:])(?:" + "|".join(re.escape(t) for t in targets) + r")(?![^/:])"
    return re.sub(pattern, lambda m: mapping[m.group(0)], value)


@dataclass
class UnsafeLocalSandbox:
    """Runs the command on the host as the grader's own user: for development only.

    Paths: the command and ``request.env`` name paths inside the sandbox (``workdir_target``,
    mount targets). Having no mount namespace, this backend rewrites them to the host paths in
    ``argv`` and in environment values (see :func:`translate_paths`) and runs in the host
    ``workdir``. Paths of the Python runtime (see :func:`runtime_paths`) are left alone, as
    the real sandbox binds the runtime over any target that contains it.

    Enforced: the whole-run wall clock and the output caps. Not enforced: memory, processes,
    CPU, file size, network, file system visibility.
    """

    #: Interpreter whose ``bin`` directory leads ``PATH`` (as inside the bubblewrap sandbox).
    python: str | None = sys.executable
    #: Longest stdout line handed to ``on_line``.
    max_line_bytes: int = MAX_LINE_BYTES
    name: str = field(default="unsafe", init=False)

    def __post_init__(self) -> None:
        warnings.warn(
            "UnsafeLocalSandbox runs student code on the host with no isolation: "
            "for development only, never for real submissions",
            UnsafeSandboxWarning,
            stacklevel=3,
        )

    def check(self) -> str | None:
        return None

    def run(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxResult:
        started = time.monotonic()
        if not request.workdir.is_dir():
            return error_result(f"work directory does not exist: {request.workdir}", started)
        mapping = {request.workdir_target: str(request.workdir)}
        for mount in request.mounts:
            if not os.path.exists(mount.source):
                return error_result(f"mount source does not exist: {mount.source}", started)
            mapping[mount.target] = str(mount.source)
        # The runtime is bound last in the real sandbox, so its paths win over a target that
        # contains them (``/work`` vs ``/work/main/.venv``): they map to themselves.
        for path in runtime_paths(self.python) if self.python else ():
            mapping[path] = path
        with tempfile.TemporaryDirectory(prefix="grader-home-") as home:
            tmpdir = os.path.join(home, "tmp")
            os.mkdir(tmpdir)
            env = base_env(home, tmpdir, self.python)
            env.update({k: translate_paths(v, mapping) for k, v in request.env.items()})
            argv = [translate_paths(arg, mapping) for arg in request.argv]
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=request.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as exc:
                return error_result(f"cannot start {argv[0]!r}: {exc.strerror}", started)

            def kill() -> None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            try:
                outcome = stream_process(
                    proc,
                    started=started,
                    timeout=request.limits.notebook_timeout,
                    log_bytes=request.limits.log_bytes,
                    kill=kill,
                    on_line=on_line,
                    max_line_bytes=self.max_line_bytes,
                )
            finally:
                kill()
                proc.wait()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
        exit_code, exit_signal = split_returncode(outcome.returncode)
        return SandboxResult(
            exit_code=exit_code,
            signal=exit_signal,
            wall_seconds=outcome.wall_seconds,
            timed_out=outcome.timed_out,
            oom_killed=False,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            stdout_truncated=outcome.stdout_truncated,
            stderr_truncated=outcome.stderr_truncated,
        )
