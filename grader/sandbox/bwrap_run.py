"""One launched bubblewrap run on the host: following it, its network namespace, its end.

:class:`BwrapRun` holds what :meth:`BubblewrapSandbox._launch` made for a run: the ``bwrap``
process, its cgroup, its staging directory, and two pipes bwrap speaks on. Following it streams
its output until it ends, reads how it ended (bwrap's exit status, the cgroup's OOM counter,
whether set-up succeeded) and then releases everything, cgroup last.

The network namespace: bwrap's ``--info-fd`` reports the host pid of the sandbox's first
process as soon as it is cloned, which is when its namespaces exist. A :class:`NetworkPeer`
keeps that pid and the namespace's inode, so that a run joining it later never enters the
namespace of another process that got the same pid after the sandbox ended.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
from contextlib import ExitStack

from grader.limits import Limits
from grader.sandbox.base import LineCallback, NetworkPeer, SandboxError, SandboxResult
from grader.sandbox.cgroups import RunCgroup
from grader.sandbox.loan_records import CpusetFile
from grader.sandbox.process import follow_process, read_available, result_of


class BwrapRun:
    """A launched ``bwrap`` process and what it holds (see the module docstring)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        cgroup: RunCgroup | None,
        resources: ExitStack,
        started_fd: int,
        info_fd: int,
        started: float,
        limits: Limits,
        max_line_bytes: int,
    ) -> None:
        self.proc = proc
        self.cgroup = cgroup
        self.started = started
        self.limits = limits
        self.max_line_bytes = max_line_bytes
        self._started_fd = started_fd
        self._info_fd: int | None = info_fd
        self._info = bytearray()
        self._peer: NetworkPeer | None = None
        self._peer_lock = threading.Lock()
        self._resources = resources  # closes ``started_fd``; the info pipe is ours to close
        resources.callback(self._reap)

    def cpu_wall(self) -> CpusetFile | None:
        """The ``cpuset.cpus`` file confining the run, or ``None`` (not pinned by a cgroup):
        what a loan of idle CPUs widens and narrows."""
        if self.cgroup is None or self.cgroup.cpuset_dir is None:
            return None
        return CpusetFile(path=str(self.cgroup.cpuset_dir / "cpuset.cpus"))

    def follow(self, on_line: LineCallback | None, stop: threading.Event | None) -> SandboxResult:
        """Stream the run until it ends, is killed or stopped; then release it (not the info
        pipe: :meth:`network_peer` may still be asked)."""
        try:
            outcome = follow_process(self.proc, started=self.started, limits=self.limits,
                                     kill=self.kill, on_line=on_line,
                                     max_line_bytes=self.max_line_bytes, stop=stop)
            exit_code, exit_signal = split_exit(outcome.returncode)
            sandbox_error = None
            ended_early = not (outcome.timed_out or outcome.stopped)
            if ended_early and not read_available(self._started_fd):
                sandbox_error = "sandbox did not start: " + tail(outcome.stderr)
            cgroup = self.cgroup
            return result_of(
                outcome, exit_code, exit_signal,
                oom_killed=cgroup.oom_killed(exit_signal) if cgroup else False,
                peak_memory_bytes=cgroup.peak_memory_bytes() if cgroup else None,
                sandbox_error=sandbox_error,
            )
        finally:
            self._resources.close()

    def network_peer(self, timeout: float) -> NetworkPeer:
        """The sandbox's network namespace, once bwrap has reported its first process."""
        with self._peer_lock:
            if self._peer is None:
                self._peer = self._read_peer(time.monotonic() + timeout)
            return self._peer

    def kill(self) -> None:
        """SIGKILL every process of the run (the cgroup's; bwrap itself in any case)."""
        if self.cgroup is not None:
            self.cgroup.kill_all()
        self.proc.kill()  # no-op once reaped; without a cgroup --die-with-parent takes the rest

    def close(self) -> None:
        """Kill what is left, release the run's resources and the info pipe. Idempotent."""
        self._resources.close()
        with self._peer_lock:
            if self._info_fd is not None:
                os.close(self._info_fd)
                self._info_fd = None

    def _reap(self) -> None:
        self.kill()
        self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def _read_peer(self, deadline: float) -> NetworkPeer:
        """Read bwrap's ``--info-fd`` JSON (``{"child-pid": N, "net-namespace": I, ...}``)."""
        fd = self._info_fd
        if fd is None:
            raise SandboxError("the sandbox run is closed")
        while True:
            info = _parse_info(self._info)
            if info is not None:
                return _peer_from(info)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxError("the sandbox's network namespace did not appear in time")
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise SandboxError("the sandbox ended before its network namespace existed")
            self._info += chunk


def _parse_info(data: bytes | bytearray) -> dict[str, object] | None:
    try:
        info = json.loads(data)
    except ValueError:
        return None  # not all written yet
    return info if isinstance(info, dict) else None


def _peer_from(info: dict[str, object]) -> NetworkPeer:
    pid = info.get("child-pid")
    if not isinstance(pid, int) or pid <= 0:
        raise SandboxError(f"bwrap reported no child pid: {info}")
    namespace = info.get("net-namespace")
    if not isinstance(namespace, int):
        try:
            namespace = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError as exc:
            raise SandboxError(f"the sandbox's network namespace is gone ({exc})") from exc
    return NetworkPeer(backend="bwrap", pid=pid, namespace=namespace)


def open_network(peer: NetworkPeer) -> int:
    """An open descriptor of ``peer``'s network namespace (for ``nsenter``); raises
    :class:`SandboxError` when it is not a bubblewrap run's or that run is gone."""
    if peer.backend != "bwrap" or peer.pid is None:
        raise SandboxError(f"cannot join the network of a {peer.backend!r} run")
    try:
        fd = os.open(f"/proc/{peer.pid}/ns/net", os.O_RDONLY)
    except OSError as exc:
        raise SandboxError(f"the sandbox whose network to join is gone ({exc.strerror})") from exc
    if peer.namespace is not None and os.fstat(fd).st_ino != peer.namespace:
        os.close(fd)
        raise SandboxError("the sandbox whose network to join is gone (its pid was reused)")
    return fd


def split_exit(returncode: int | None) -> tuple[int | None, int | None]:
    """``(exit_code, signal)``. bwrap reports a command killed by signal N as exit 128+N (the
    shell's convention), so such codes are read as signals; a command calling ``exit(137)``
    itself is indistinguishable. A negative code means bwrap itself was killed."""
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, -returncode
    if returncode > 128:
        try:
            return None, signal.Signals(returncode - 128).value
        except ValueError:
            pass
    return returncode, None


def tail(stderr: bytes, limit: int = 500) -> str:
    """The last lines of bwrap's stderr, joined on one line (its set-up error)."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    text = " | ".join(line for line in lines[-3:] if line)
    return text[-limit:] or "no message"
