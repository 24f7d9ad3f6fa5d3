"""CPU slots: splitting the host's CPUs, leasing a slot (across processes, surviving kill -9),
and the walls that confine a run to its slot (bubblewrap's cgroup cpuset, docker's
``cpuset_cpus``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from grader.limits import Limits, MiB
from grader.sandbox import BubblewrapSandbox, SandboxRequest, SandboxUser
from grader.sandbox.cgroups import CgroupError, CgroupLayout, create_cgroup, find_layout
from grader.sandbox.cpus import (
    CpuSlots,
    NoFreeSlot,
    format_cpus,
    parse_cpus,
    runs_per_host,
    split_cpus,
    usable_cpus,
)
from grader.sandbox.launch import LaunchFds, launch_argv

REPO = Path(__file__).resolve().parent.parent

# --- splitting (pure) -------------------------------------------------------------------------


def test_two_cores_two_runs_get_one_core_each() -> None:
    assert split_cpus([0, 1], 2) == ((0,), (1,))
    assert split_cpus([1, 0], 1) == ((0, 1),)


def test_eight_cores_in_three_runs_are_3_3_2_disjoint_and_cover_all() -> None:
    slots = split_cpus(range(8), 3)
    assert [len(s) for s in slots] == [3, 3, 2]
    assert sorted(cpu for slot in slots for cpu in slot) == list(range(8))
    # the CPUs a process may use need not start at 0 nor be contiguous
    assert split_cpus([2, 3, 6, 7, 9], 2) == ((2, 3, 6), (7, 9))


def test_more_runs_than_cpus_is_refused() -> None:
    with pytest.raises(ValueError, match="3 runs cannot each have CPUs"):
        split_cpus([0, 1], 3)
    with pytest.raises(ValueError):
        split_cpus([0, 1], 0)


def test_runs_per_host_follow_the_cores() -> None:
    assert runs_per_host(2) == 2
    assert runs_per_host(8, cores_per_run=3) == 2
    assert runs_per_host(1, cores_per_run=4) == 1  # never zero
    with pytest.raises(ValueError):
        runs_per_host(4, cores_per_run=0)


def test_cpu_lists_read_and_write_as_the_kernel_does() -> None:
    assert format_cpus([3, 0, 1, 2, 6]) == "0-3,6"
    assert format_cpus([5]) == "5"
    assert parse_cpus("0-3,6\n") == (0, 1, 2, 3, 6)
    assert parse_cpus("") == ()


def test_usable_cpus_are_this_process_affinity() -> None:
    assert set(usable_cpus()) == os.sched_getaffinity(0)


# --- leases ---------------------------------------------------------------------------------


def test_a_slot_is_leased_once_and_free_again_after(tmp_path: Path) -> None:
    slots = CpuSlots(2, cpus=[0, 1], lock_dir=tmp_path)
    with slots.lease() as first, slots.lease() as second:
        assert {first.cpus, second.cpus} == {(0,), (1,)}
        with pytest.raises(NoFreeSlot), slots.lease(timeout=0.3):
            pass
    with slots.lease(timeout=0) as again:
        assert again.cpus == (0,)


def test_layouts_that_differ_never_share_a_cpu(tmp_path: Path) -> None:
    """One process splitting into one slot, another into two: locks are per CPU."""
    whole = CpuSlots(1, cpus=[0, 1], lock_dir=tmp_path)
    halves = CpuSlots(2, cpus=[0, 1], lock_dir=tmp_path)
    with halves.lease() as half:
        assert half.cpus == (0,)
        with pytest.raises(NoFreeSlot), whole.lease(timeout=0.3):
            pass
    with whole.lease(timeout=0) as lease:
        assert lease.cpus == (0, 1)


HOLDER = """
import sys, time
from pathlib import Path
from grader.sandbox.cpus import CpuSlots
with CpuSlots(1, cpus=[0, 1], lock_dir=Path(sys.argv[1])).lease() as lease:
    print(lease, flush=True)
    time.sleep(600)
"""


def test_a_slot_held_by_a_process_killed_with_sigkill_is_free_again(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "0-1"
        slots = CpuSlots(2, cpus=[0, 1], lock_dir=tmp_path)
        with pytest.raises(NoFreeSlot), slots.lease(timeout=0.5):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        with slots.lease(timeout=5) as lease:
            assert lease.cpus == (0,)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# --- walls ----------------------------------------------------------------------------------


def test_asking_for_cpus_without_a_cpuset_controller_fails(tmp_path: Path) -> None:
    layout = CgroupLayout(1, tmp_path / "memory", tmp_path / "pids", None)
    with pytest.raises(CgroupError, match="cpuset"), create_cgroup(
            64 * MiB, 8, layout=layout, cpus=(0,)):
        pass
    assert not (tmp_path / "memory").exists()


def test_find_layout_names_the_cpuset_hierarchy(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
        "cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n"
        "cgroup /sys/fs/cgroup/cpuset cgroup rw,cpuset 0 0\n"
    )
    assert find_layout(mounts).cpuset_root == Path("/sys/fs/cgroup/cpuset")
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu memory pids\n")
    mounts.write_text(f"cgroup2 {root} cgroup2 rw 0 0\n")
    assert find_layout(mounts) == CgroupLayout(2, root, root, root)


def test_the_launch_pins_with_taskset_before_the_exec(tmp_path: Path) -> None:
    sandbox = BubblewrapSandbox(cpu_set=(1,), python=None)
    request = SandboxRequest(argv=["true"], workdir=None)
    argv, _ = launch_argv(sandbox, request, None, tmp_path, False, LaunchFds(args=3, info=4))
    script = argv[-1]
    assert "taskset --cpu-list 1 /" in script
    assert script.index("taskset") < script.index("bwrap")


#: The student's attack: widen its CPU set to every CPU of the machine, by the syscall and by
#: ``taskset``, in the process itself and in a child; then report where each may run.
WIDEN = """
import json, os, subprocess
def allowed():
    for line in open("/proc/self/status"):
        if line.startswith("Cpus_allowed_list:"):
            return line.split()[1]
before = allowed()
errors = []
for cpus in (set(range(os.cpu_count())), set(range(64)), {%(other)d}):
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        errors.append(exc.errno)
taskset = subprocess.run(["taskset", "--cpu-list", "0-%(last)d", "grep",
                          "Cpus_allowed_list", "/proc/self/status"],
                         capture_output=True, text=True)
print(json.dumps({"before": before, "after": allowed(), "errors": errors,
                  "child": taskset.stdout.split()[-1] if taskset.stdout else taskset.stderr,
                  "affinity": sorted(os.sched_getaffinity(0))}))
"""


@pytest.mark.sandbox
def test_a_student_cannot_widen_the_cpus_of_its_sandbox(cgroup_parent: str,
                                                        tmp_path: Path) -> None:
    if shutil.which("bwrap") is None or os.geteuid() != 0:
        pytest.fail("the real sandbox needs bubblewrap and root (make test has both)")
    cpus = usable_cpus()
    if len(cpus) < 2:
        pytest.skip("one usable CPU: there is nothing to widen to")
    slot, other = cpus[-1], cpus[0]
    sandbox = BubblewrapSandbox(cgroup_parent=cgroup_parent, cpu_set=(slot,))
    code = textwrap.dedent(WIDEN % {"other": other, "last": max(cpus)})
    for user in SandboxUser:
        result = sandbox.run(SandboxRequest(argv=[sys.executable, "-c", code], workdir=tmp_path,
                                            limits=Limits(notebook_timeout=30.0), user=user))
        assert result.sandbox_error is None, result.sandbox_error
        assert result.exit_code == 0, result.stderr.decode()
        seen = json.loads(result.stdout.decode().splitlines()[-1])
        assert seen["before"] == str(slot)
        assert seen["after"] == str(slot), seen
        assert seen["affinity"] == [slot]
        assert seen["child"] == str(slot), seen
        assert 22 in seen["errors"]  # EINVAL: only CPUs outside the cpuset were asked for


# --- docker ---------------------------------------------------------------------------------


def test_the_container_is_confined_to_its_slot() -> None:
    docker = pytest.importorskip("docker")
    from grader.sandbox.docker import DockerSandbox

    client = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    request = SandboxRequest(argv=["true"], workdir=None)
    host = DockerSandbox(cpu_set=(2, 3))._spec(client, request, "owner-1")["host_config"]
    assert host["CpusetCpus"] == "2-3"
    # the quota follows the slot, as a quota the daemon can change (a loan's take-back does)
    assert host["CpuQuota"] == 2 * host["CpuPeriod"] and "NanoCpus" not in host
    host = DockerSandbox()._spec(client, request, "owner-1")["host_config"]
    assert "CpusetCpus" not in host


@pytest.mark.docker
def test_a_student_cannot_widen_the_cpus_of_its_container(docker_sandbox: object,
                                                          tmp_path: Path) -> None:
    from grader.sandbox.docker import DockerSandbox

    cpus = usable_cpus()
    if len(cpus) < 2:
        pytest.skip("one usable CPU: there is nothing to widen to")
    slot, other = cpus[-1], cpus[0]
    sandbox = DockerSandbox(cpu_set=(slot,))
    code = textwrap.dedent(WIDEN % {"other": other, "last": max(cpus)})
    result = sandbox.run(SandboxRequest(argv=[sys.executable, "-c", code], workdir=None,
                                        limits=Limits(notebook_timeout=60.0)))
    assert result.sandbox_error is None, result.sandbox_error
    assert result.exit_code == 0, result.stderr.decode()
    seen = json.loads(result.stdout.decode().splitlines()[-1])
    assert (seen["before"], seen["after"], seen["child"]) == (str(slot),) * 3, seen
    assert 22 in seen["errors"]


def test_a_killed_graders_cpuset_is_swept(cgroup_parent: str) -> None:
    from grader.sandbox.cgroups import sweep_cgroups
    from tests.test_sandbox import dead_pid, require_root, tag_of

    require_root()
    layout = find_layout()
    if layout.cpuset_root is None:
        pytest.skip("no cpuset controller on this machine")
    with create_cgroup(64 * MiB, 8, parent=cgroup_parent, cpus=usable_cpus()[:1]) as live:
        dead = f"run-{tag_of(dead_pid())}-0123456789ab"
        with create_cgroup(64 * MiB, 8, parent=cgroup_parent, cpus=usable_cpus()[:1],
                           name=dead) as left:
            assert left.cpuset_dir is not None and left.cpuset_dir.is_dir()
            removed = sweep_cgroups(cgroup_parent)
            assert left.cpuset_dir in removed and not left.cpuset_dir.exists()
            assert set(left.dirs) == set(removed)
        assert live.cpuset_dir is not None and live.cpuset_dir.is_dir()  # its grader lives
