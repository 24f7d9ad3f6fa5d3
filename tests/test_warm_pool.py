"""The warm pool (grader/warm_pool.py, grader/kit.py) with the real bubblewrap sandbox.

What it must show: a kit serves one submission and is destroyed; nothing of one student reaches
the next (files, processes, environment, the other kits' kernels); the host's clock runs from
the hand-over, not from the kit's start; kits stay pinned to their CPU slot and are warmed only
while that slot is free; memory bounds the pool; and nothing is left after a ``kill -9``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from grader.config import GraderConfig
from grader.kernel.plan import RunPlan
from grader.limits import GiB
from grader.notebook_run import run_notebook
from grader.pipeline import grade_notebook
from grader.report import Outcome
from grader.sandbox import get_sandbox, sweep_leftovers
from grader.sandbox.cpus import CpuSlots
from grader.warm_pool import KIT_MEMORY, PoolSettings, WarmPool

WARM = 240.0  # seconds a test waits for kits to warm (two at once on a busy 2-core machine)


def notebook(*sources: str) -> bytes:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nbformat.writes(nb).encode()


def printed(report) -> str:
    nb = nbformat.reads(report.executed_notebook, as_version=4)
    return "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))


@pytest.fixture
def pool_of(config: GraderConfig, sandbox, tmp_path):
    """A started pool for the lecture's exercise on the real sandbox, closed after the test."""
    pools: list[WarmPool] = []

    def make(size: int = 1, slots: CpuSlots | None = None, **settings) -> WarmPool:
        pool = WarmPool(config, ["chap06_cnn"],
                        lambda cpus: get_sandbox("bwrap", **({"cpu_set": cpus} if cpus else {})),
                        slots=slots, settings=PoolSettings(size=size, min_available_bytes=0,
                                                           **settings))
        pools.append(pool.start())
        return pool

    yield make
    for pool in pools:
        pool.close()


def test_a_kit_serves_one_submission_and_is_destroyed(pool_of, exercise, config, sandbox):
    pool = pool_of()
    assert pool.wait_ready(timeout=WARM)
    kit = pool.take("chap06_cnn")
    assert kit is not None and kit.ready()
    assert pool.take("chap06_cnn") is None  # taken: the pool holds no other until refilled
    rundir, key = kit.rundir, kit.connection.key
    report = grade_notebook(notebook("print(6 * 7)"), exercise, config, sandbox, kit=kit)
    assert report.outcome is Outcome.GRADED
    assert "42" in printed(report)
    assert report.timings["kit_age"] > 0  # it ran in the warm kit
    assert report.timings["wait"] > 0  # ... whose runner had bootstrapped before it came
    assert not kit.closed and rundir.exists()  # the grader leaves it to the one who took it
    kit.close(pool.closers)  # as the service's seat does: off the verdict's path
    assert kit.closed and pool.closers.wait() and not rundir.exists()
    assert not kit.alive()
    with pytest.raises(ValueError, match="one submission"):  # a used kit is never run again
        run_notebook(nbformat.v4.new_notebook(), kit, RunPlan(
            cell_timeout=10, cell_output_bytes=1, notebook_output_bytes=1), exercise.limits,
            time.monotonic(), None)
    assert pool.wait_ready(timeout=WARM)  # refilled in the background
    again = pool.take("chap06_cnn")
    assert again is not None
    assert again.rundir != rundir and again.connection.key != key
    again.close()
    assert pool.stats().taken == 2


def test_nothing_of_one_student_reaches_the_next(pool_of, exercise, config, sandbox):
    """Student A leaves files everywhere it may write, a process that hides in the background,
    and tries the kernel of the kit waiting for the next student; student B finds nothing."""
    pool = pool_of(size=2)
    assert pool.wait_ready(timeout=WARM)
    first = pool.take("chap06_cnn")
    assert first is not None
    (waiting,) = pool.idle_kits()
    ports = [getattr(waiting.connection, f"{name}_port")
             for name in ("shell", "iopub", "stdin", "control", "hb")]
    attack = textwrap.dedent(f"""
        import os, socket, subprocess, pathlib
        for place in ("/tmp", os.path.expanduser("~"), "/job", "/dev/shm", "/var/tmp"):
            try:
                pathlib.Path(place, "left-by-a").write_text("A was here")
            except OSError as exc:
                print("cannot write", place, type(exc).__name__)
        os.environ["LEFT_BY_A"] = "1"
        subprocess.Popen(["sleep", "1000"], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reached = []
        for port in {ports!r}:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                reached.append(port)
            except OSError:
                pass
        print("REACHED", reached)
    """)
    with first:  # taken from the pool: ours to close
        report = grade_notebook(notebook(attack), exercise, config, sandbox, kit=first)
    assert "REACHED []" in printed(report), printed(report)
    second = pool.take("chap06_cnn")
    assert second is waiting
    look = textwrap.dedent("""
        import os, pathlib
        found = [p for p in ("/tmp", os.path.expanduser("~"), "/job", "/dev/shm", "/var/tmp")
                 if pathlib.Path(p, "left-by-a").exists()]
        sleepers = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if b"sleep" in pathlib.Path("/proc", pid, "cmdline").read_bytes():
                        sleepers.append(pid)
                except OSError:
                    pass
        print("FOUND", found, "SLEEPERS", sleepers, "ENV", "LEFT_BY_A" in os.environ)
    """)
    with second:
        report = grade_notebook(notebook(look), exercise, config, sandbox, kit=second)
    assert "FOUND [] SLEEPERS [] ENV False" in printed(report), printed(report)
    assert pool.closers.wait()
    host_sleepers = subprocess.run(["pgrep", "-f", "^sleep 1000$"], capture_output=True,
                                   text=True).stdout.split()
    assert host_sleepers == []  # A's background process died with its kit


def test_the_notebook_clock_starts_at_the_hand_over(pool_of, make_notebook, exercise, config,
                                                    sandbox):
    """A kit's sandboxes may wait for minutes, but a run gets ``notebook_timeout`` from the
    moment its notebook is handed over, and no more."""
    pool = pool_of(max_idle=600)
    assert pool.wait_ready(timeout=WARM)
    kit = pool.take("chap06_cnn")
    assert kit is not None
    data = make_notebook(insert_after={"conv1": ["import time\ntime.sleep(300)"]},
                         keep_until="conv2")
    limits = exercise.limits.replace(cell_timeout=600, notebook_timeout=25)
    started = time.monotonic()
    with kit:
        report = grade_notebook(data, exercise, config, sandbox, limits=limits, kit=kit)
    took = time.monotonic() - started
    assert report.outcome is Outcome.TIMEOUT
    assert "25 s limit" in report.reason.en
    assert report.item("conv1").score == 6
    assert 24 < took < 90


def test_kits_are_pinned_to_their_slot_and_warmed_only_while_it_is_free(pool_of, exercise,
                                                                        config, tmp_path):
    slots = CpuSlots(2, cpus=(0, 1), lock_dir=tmp_path / "locks")
    with slots.hold((1,)) as running:  # a run holds the second CPU
        assert running is not None
        pool = pool_of(slots=slots)
        assert pool.wait_ready(count=1, timeout=WARM)
        time.sleep(2)
        assert pool.ready_slots("chap06_cnn") == [(0,)]  # nothing warmed beside the run
    assert pool.wait_ready(count=2, timeout=WARM)  # once free, its kit is warmed too
    assert sorted(pool.ready_slots("chap06_cnn")) == [(0,), (1,)]
    for cpus in ((0,), (1,)):
        kit = pool.take("chap06_cnn", cpus)
        assert kit is not None and kit.key.cpus == cpus
        with kit:
            report = grade_notebook(notebook(
                "import os\nprint('CPUS', sorted(os.sched_getaffinity(0)))\n"
                "os.sched_setaffinity(0, {0, 1})\n"
                "print('WIDENED', sorted(os.sched_getaffinity(0)))"),
                exercise, config, get_sandbox("bwrap", cpu_set=cpus), kit=kit)
        out = printed(report)
        assert f"CPUS {list(cpus)}" in out, out
        assert f"WIDENED {list(cpus)}" in out or "WIDENED" not in out, out


def test_memory_bounds_the_pool(config, sandbox):
    """No kit is started while the host's available memory would fall below the floor."""
    available = [2 * GiB]
    pool = WarmPool(config, ["chap06_cnn"], lambda cpus: sandbox,
                    settings=PoolSettings(size=1, min_available_bytes=1 * GiB),
                    available_memory=lambda: available[0])
    with pool:
        time.sleep(3)
        assert pool.stats().ready == 0 and pool.stats().warming == 0
        available[0] = 1 * GiB + KIT_MEMORY + 1
        assert pool.wait_ready(timeout=WARM)


@pytest.mark.processes
def test_a_backend_that_cannot_start_a_kit_is_tried_again_later_not_at_once(config):
    class Broken:
        name = "broken"
        starts = 0

        def start(self, request, on_line=None):
            Broken.starts += 1
            raise OSError("no sandbox today")

    pool = WarmPool(config, ["chap06_cnn"], lambda cpus: Broken(),
                    settings=PoolSettings(size=1, min_available_bytes=0))
    with pool:
        time.sleep(3)
        assert pool.stats().failed == 1 and Broken.starts == 1  # waits RETRY_AFTER seconds
        assert pool.stats().ready == 0 and pool.take("chap06_cnn") is None


def test_stale_kits_are_replaced_and_close_leaves_nothing(pool_of, config):
    pool = pool_of(max_idle=1.0)
    deadline = time.monotonic() + WARM
    while pool.stats().retired == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pool.stats().retired >= 1
    assert pool.wait_ready(timeout=WARM) or pool.stats().retired >= 2
    folders = [kit.rundir for kit in pool.idle_kits()]
    pool.close()
    assert not any(folder.exists() for folder in folders)
    assert pool.idle_kits() == ()


HOLDER = """
import json, sys, time
from grader.config import GraderConfig
from grader.sandbox import get_sandbox
from grader.warm_pool import PoolSettings, WarmPool
pool = WarmPool(GraderConfig.from_env(), ["chap06_cnn"], lambda cpus: get_sandbox("bwrap"),
                settings=PoolSettings(size=1, min_available_bytes=0)).start()
assert pool.wait_ready(timeout=float(sys.argv[1]))
kit = pool.idle_kits()[0]
print(json.dumps({"rundir": str(kit.rundir)}), flush=True)
time.sleep(3600)
"""


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.sandbox  # the holder's pool starts kits in the real sandbox
def test_a_grader_killed_with_sigkill_leaves_no_kit_behind(config):
    """``kill -9`` of a process holding a warm kit: its sandboxes die with it, and the next
    sweep (every bubblewrap run does one) removes its cgroups and folders."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(WARM)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline() if holder.stdout else ""
        assert line, "the pool never became ready"
        rundir = Path(json.loads(line)["rundir"])
        assert rundir.is_dir()
        sandboxed = descendants(holder.pid)
        assert len(sandboxed) >= 3  # bwrap and what runs inside, for the kit's three sandboxes
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 20
    while any(running(pid) for pid in sandboxed) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in sandboxed if running(pid)]
    sweep_leftovers(stage_root=None if config.work_dir is None else str(config.work_dir))
    assert not rundir.exists()
