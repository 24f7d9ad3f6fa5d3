"""A kit: the sandboxes one submission runs in, started together and used once.

A kit holds the student's kernel (sandbox K: a plain ipykernel as the student's user), the
grader's runner (sandbox R: joins K's loopback, connects, runs the bootstrap, so TensorFlow is
imported) and, when started ahead, a clean room (sandbox C: TensorFlow imported, no student
code), each in a folder of one fresh run directory. Started *cold* (:func:`start_kit` for one
submission, handed its notebook at once) or *warm* (by :mod:`grader.warm_pool`, before any
submission exists, and handed one later): the runner and the clean room wait for their plans
(``plan.json``, written in one rename), so both paths run the same code.

What a warm kit holds before the hand-over is the grader's alone: the exercise's bootstrap,
the data set, a message key of its own. It serves exactly one submission: :meth:`Kit.close`
kills every process of its sandboxes and removes its run directory, whatever happened. A kit is
never handed to a second submission (:attr:`Kit.handed_over` is set once, and
:func:`grader.notebook_run.run_notebook` refuses a kit already used).

Time limits: a warm kit's sandboxes may wait up to ``hold_seconds`` before their work comes, so
their own wall clocks are that much longer; the run's limits (``notebook_timeout``, the clean
room's) are enforced by the host from the hand-over on.
"""

from __future__ import annotations

import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from grader.clean_room import LIMITS as CLEANROOM_LIMITS
from grader.clean_room import WarmCleanRoom, cleanroom_request
from grader.config import GraderConfig
from grader.data import sandbox_data_dir
from grader.kernel.plan import BootstrapConfig, KernelConnection, SessionPlan
from grader.limits import GiB, Limits
from grader.sandbox.base import (
    Mount,
    NetworkPeer,
    Sandbox,
    SandboxRequest,
    SandboxResult,
    SandboxRun,
    SandboxUser,
)
from grader.sandbox.loan_records import Wall
from grader.sandbox.runs import LineRelay
from grader.sandbox.staging import create_run_dir
from grader.spec import Exercise
from grader.tensorflow_env import TENSORFLOW_ENV

logger = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).resolve().parent / "kernel"
KERNEL_TARGET = "/opt/grader/kernel"
DATA_TARGET = "/data"
WORK_TARGET = "/job"
#: The runner is the grader's own small process: it needs little, whatever the exercise, and
#: what the kernel can make it hold is bounded below this (``grader/kernel/channel.py``).
RUNNER_MEMORY = 2 * GiB
#: Seconds the runner may outlive the kernel's notebook limit (to write what it saw).
RUNNER_GRACE = 60.0
#: Seconds a kit may take to start (sandboxes, kernel, bootstrap) beyond its other limits.
START_SECONDS = 300.0


@dataclass(frozen=True)
class KitKey:
    """What a warm kit was made for: the exercise (its bootstrap, data and limits) and the
    CPUs its sandboxes are pinned to (``()``: not pinned)."""

    exercise: str
    cpus: tuple[int, ...] = ()


@dataclass
class Kit:
    """Started sandboxes waiting for one submission (see the module's docstring)."""

    key: KitKey
    rundir: Path
    connection: KernelConnection
    #: The exercise's limits the kit was started for.
    limits: Limits
    kernel: SandboxRun
    runner: SandboxRun | None
    runner_relay: LineRelay
    cleanroom: WarmCleanRoom | None
    stack: ExitStack
    #: Why the kit cannot run anything (its kernel's sandbox never came up), else ``None``.
    failure: str | None = None
    #: The kernel's result, once its sandbox has ended.
    kernel_result: list[SandboxResult] = field(default_factory=list)
    watcher: threading.Thread | None = None
    created: float = field(default_factory=time.monotonic)
    handed_over: bool = False
    closed: bool = False

    @property
    def exited_marker(self) -> Path:
        """Written by the host when the kernel's sandbox ends (the runner watches for it)."""
        return self.rundir / "runner" / "out" / "control" / "kernel-exited"

    def cpu_walls(self) -> list[Wall]:
        """What confines the kit's sandboxes to their CPUs (bubblewrap's cgroup cpusets, docker
        containers): what a run that takes the kit widens to the CPUs it borrows
        (``CpuLoan.confine``)."""
        runs = (self.kernel, self.runner, self.cleanroom.run if self.cleanroom else None)
        found = []
        for run in runs:
            cpu_wall = getattr(run, "cpu_wall", None)  # FollowedRun's, not the protocol's
            wall = cpu_wall() if cpu_wall is not None else None
            if wall is not None:
                found.append(wall)
        return found

    def ready(self) -> bool:
        """The runner has run the bootstrap and waits, and the clean room has its TensorFlow."""
        if self.failure is not None or self.runner is None or not self.alive():
            return False
        if "warm" not in self.runner_relay.early:
            return False
        return self.cleanroom is None or "ready" in self.cleanroom.relay.early

    def wait_ready(self, timeout: float, cancel: threading.Event | None = None) -> bool:
        """Block until :meth:`ready` (``True``) or until the kit cannot become ready, the
        timeout passes or ``cancel`` is set (``False``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (cancel is not None and cancel.is_set()):
            if self.ready():
                return True
            if self.failure is not None or not self.alive():
                return False
            self.runner_relay.event.wait(0.05)
            self.runner_relay.event.clear()
        return self.ready()

    def alive(self) -> bool:
        """Every sandbox of the kit still runs."""
        if self.failure is not None or self.kernel_result or self.closed:
            return False
        runs = [r for r in (self.runner, self.cleanroom.run if self.cleanroom else None) if r]
        return all(not _ended(run) for run in runs)

    def close(self, closers: KitClosers | None = None) -> None:
        """Kill every process of the kit and remove its run directory. Idempotent.

        ``closers``: in a thread of theirs, once the run's facts are read (0.1 s off the
        verdict's path); their owner waits for them (a pool's close does)."""
        if self.closed:
            return
        self.closed = True
        if closers is None:
            self.stack.close()
        else:
            closers.start(self.stack.close)

    def __enter__(self) -> Kit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KitClosers:
    """Threads closing used kits in the background (:meth:`Kit.close` given them), owned by
    whoever must not end before those kits are gone: a warm pool owns one and waits for it in
    its close. No module keeps such threads: each set has one owner that waits for it."""

    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self, close: Callable[[], None]) -> None:
        """Run ``close`` in a thread of its own, waited for by :meth:`wait`."""

        def close_now() -> None:
            try:
                close()
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=close_now, name="kit-close", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def pending(self) -> int:
        """How many kits are still being closed."""
        with self._lock:
            return len(self._threads)

    def wait(self, timeout: float = 60.0) -> bool:
        """Wait for the kits being closed; ``False`` if some still close after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._threads)
            if not pending:
                return True
            for thread in pending:
                thread.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return self.pending() == 0


def kit_limits(limits: Limits, hold_seconds: float) -> Limits:
    """A kit's kernel limits: the exercise's, with a wall clock long enough to wait."""
    return limits.replace(notebook_timeout=limits.notebook_timeout + hold_seconds
                          + START_SECONDS)


def start_kit(
    exercise: Exercise,
    config: GraderConfig,
    sandbox: Sandbox,
    limits: Limits,
    *,
    key: KitKey | None = None,
    hold_seconds: float = 0.0,
    cleanroom: bool = False,
    preload: bool = False,
) -> Kit:
    """Start the kernel and the runner (and, with ``cleanroom``, a clean room) for one
    submission of ``exercise``; returns at once with the runner bootstrapping. ``preload``:
    the bootstrap imports TensorFlow now (a warm kit) rather than on the notebook's first
    import of it. Never raises for a sandbox that cannot be made: the kit's
    :attr:`~Kit.failure` says why."""
    stack = ExitStack()
    try:
        rundir = stack.enter_context(create_run_dir(
            None if config.work_dir is None else str(config.work_dir)))
        workdir = rundir / "runner"
        (workdir / "out" / "control").mkdir(parents=True)
        connection = kernel_connection()
        session = SessionPlan(
            connection=connection,
            bootstrap=BootstrapConfig(
                tf1=exercise.runtime.tf1,
                datasets={n: f"{DATA_TARGET}/{n}.npz" for n in exercise.runtime.datasets},
                data_order=(secrets.randbelow(2**31) if exercise.runtime.data_order == "per_run"
                            else None),
                preload=preload,
            ),
        )
        (workdir / "session.json").write_text(session.model_dump_json())
        kernel = stack.enter_context(sandbox.start(SandboxRequest(
            argv=kernel_argv(connection),
            workdir=None,
            workdir_target=WORK_TARGET,
            mounts=[Mount(sandbox_data_dir(config.data_dir), DATA_TARGET)],
            env=kernel_env(),
            limits=kit_limits(limits, hold_seconds),
            user=SandboxUser.STUDENT,
        )))
        kit = Kit(key or KitKey(exercise.id), rundir, connection, limits, kernel, None,
                  LineRelay(), None, stack)

        def watch() -> None:
            kit.kernel_result.append(kernel.wait())
            if kit.exited_marker.parent.exists():
                kit.exited_marker.touch()

        kit.watcher = threading.Thread(target=watch, name="kernel-watch", daemon=True)
        kit.watcher.start()
        stack.callback(_stop_and_join, kernel, kit.watcher)  # before the run dir goes
        try:
            peer = kernel.network_peer()
        except Exception as exc:  # the kernel's sandbox never came up
            kernel.stop()
            kit.watcher.join()
            result = kit.kernel_result[0] if kit.kernel_result else None
            kit.failure = (result.sandbox_error if result and result.sandbox_error
                           else str(exc))
            return kit
        kit.runner = stack.enter_context(sandbox.start(
            _runner_request(workdir, limits, hold_seconds, peer), on_line=kit.runner_relay))
        if cleanroom:
            folder = rundir / "cleanroom"
            folder.mkdir()
            relay = LineRelay()
            room_limits = CLEANROOM_LIMITS.replace(
                notebook_timeout=CLEANROOM_LIMITS.notebook_timeout + hold_seconds
                + START_SECONDS)
            run = stack.enter_context(sandbox.start(cleanroom_request(folder, room_limits),
                                                    on_line=relay))
            kit.cleanroom = WarmCleanRoom(run, relay, folder)
        return kit
    except BaseException:
        stack.close()
        raise


def _runner_request(workdir: Path, limits: Limits, hold_seconds: float, peer: NetworkPeer
                    ) -> SandboxRequest:
    return SandboxRequest(
        argv=[sys.executable, f"{KERNEL_TARGET}/runner.py", "session.json"],
        workdir=workdir,
        workdir_target=WORK_TARGET,
        mounts=[Mount(KERNEL_DIR, KERNEL_TARGET)],
        env={"PYTHONDONTWRITEBYTECODE": "1", "JUPYTER_PLATFORM_DIRS": "1",
             "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime", "IPYTHONDIR": "/tmp/ipython"},
        limits=limits.replace(memory_bytes=RUNNER_MEMORY,
                              notebook_timeout=limits.notebook_timeout + RUNNER_GRACE
                              + hold_seconds + START_SECONDS),
        user=SandboxUser.GRADER,
        join_network=peer,
    )


def free_ports(count: int) -> list[int]:
    """Ports free on this host's loopback now (the kernel's own network is fresh anyway)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def kernel_connection() -> KernelConnection:
    """Fresh loopback ports and a fresh message key for one run's kernel."""
    shell, iopub, stdin, control, hb = free_ports(5)
    return KernelConnection(ip="127.0.0.1", transport="tcp", shell_port=shell,
                            iopub_port=iopub, stdin_port=stdin, control_port=control,
                            hb_port=hb, key=secrets.token_hex(32),
                            signature_scheme="hmac-sha256")


def kernel_argv(connection: KernelConnection) -> list[str]:
    """The student's kernel: a plain ipykernel bound to the given loopback ports."""
    return [sys.executable, "-m", "ipykernel_launcher", f"--ip={connection.ip}",
            "--transport=tcp", f"--shell={connection.shell_port}",
            f"--iopub={connection.iopub_port}", f"--stdin={connection.stdin_port}",
            f"--control={connection.control_port}", f"--hb={connection.hb_port}",
            f"--Session.key={connection.key}",
            f"--Session.signature_scheme={connection.signature_scheme}",
            "--IPKernelApp.connection_file=/tmp/jupyter-runtime/kernel.json"]


def kernel_env() -> dict[str, str]:
    """The student's kernel's environment (nothing of the host's)."""
    return {
        "HOME": "/home/sandbox",
        "TMPDIR": "/tmp",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": "/tmp/ipython",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "KERAS_HOME": "/tmp/keras",
        **TENSORFLOW_ENV,
    }


def _stop_and_join(kernel: SandboxRun, watcher: threading.Thread) -> None:
    kernel.stop()
    watcher.join()


def _ended(run: SandboxRun) -> bool:
    try:
        run.wait(timeout=0)
    except TimeoutError:
        return False
    except Exception:  # a run whose follower failed has ended too
        return True
    return True
