"""Running a command straight on the host, with a wall clock and capped output: no isolation.

:class:`UnsafeLocalSandbox` is for development on machines without bubblewrap; it must never
grade untrusted notebooks. Having no namespaces, it rewrites sandbox paths to host paths
(:func:`translate_paths`); the streaming loop it shares with the bubblewrap backend is in
:mod:`grader.sandbox.process`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from grader.sandbox.base import LineCallback, SandboxRequest, SandboxResult
from grader.sandbox.process import (
    MAX_LINE_BYTES,
    base_env,
    error_result,
    runtime_paths,
    split_returncode,
    stream_process,
)


class UnsafeSandboxWarning(UserWarning):
    """The unsafe backend was constructed: student code would run with the grader's rights."""


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
