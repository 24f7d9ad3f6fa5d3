"""Idle CPUs lent to a run and taken back: the books (two ``CpuSlots`` on one lock folder, as
two worker processes of a host have; a borrower killed with ``kill -9``), and a running
bubblewrap sandbox widened and narrowed from outside (``Cpus_allowed_list`` of its processes).

The bookkeeping tests write the "cgroups" as plain files named like ``cpuset.cpus``: what a
loan does to a cgroup is to write its CPU list into that file, which the kernel then applies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from grader.limits import Limits
from grader.sandbox import BubblewrapSandbox, SandboxRequest
from grader.sandbox.cpus import CpuSlots, parse_cpus, usable_cpus
from grader.sandbox.loan_records import CpusetFile

REPO = Path(__file__).resolve().parent.parent


def fake_cpuset(folder: Path, name: str, cpus: str) -> Path:
    path = folder / name
    path.mkdir()
    (path / "cpuset.cpus").write_text(cpus)
    return path / "cpuset.cpus"


def two_hosts(lock_dir: Path, cpus: tuple[int, ...] = (0, 1)) -> tuple[CpuSlots, CpuSlots]:
    """Two workers' slots over the same CPUs and lock files (as two processes would have)."""
    return (CpuSlots(len(cpus), cpus=cpus, lock_dir=lock_dir),
            CpuSlots(len(cpus), cpus=cpus, lock_dir=lock_dir))


def test_a_lone_run_borrows_the_idle_slot_and_a_new_run_takes_it_back(tmp_path: Path) -> None:
    first, second = two_hosts(tmp_path / "locks")
    with first.lease(borrow=True) as lent:
        assert lent.cpus == (0,) and lent.loan is not None
        assert lent.loan.record().borrowed == (1,)
        cpuset = fake_cpuset(tmp_path, "run-a", "0")
        assert lent.loan.confine([cpuset]) == (0, 1)
        assert cpuset.read_text() == "0-1"
        with second.lease(timeout=5) as taker:
            assert taker.cpus == (1,)
            # taken back before the new lease is handed out
            assert cpuset.read_text() == "0"
            assert lent.loan.record().borrowed == ()
            # a sandbox the borrower starts now is confined to its own slot only
            later = fake_cpuset(tmp_path, "run-b", "")
            assert lent.loan.confine([later]) == (0,)
            assert later.read_text() == "0"
    assert not list((tmp_path / "locks").glob("loan-*.json"))


def test_nothing_held_is_borrowed_and_without_borrow_nothing_is_lent(tmp_path: Path) -> None:
    first, second = two_hosts(tmp_path / "locks")
    with second.lease(prefer=[(1,)]) as held:
        assert held.cpus == (1,) and held.loan is None
        with first.lease(borrow=True) as lent:
            assert lent.cpus == (0,)
            assert lent.loan is not None and lent.loan.record().borrowed == ()


def test_a_lent_cpu_is_not_lent_twice(tmp_path: Path) -> None:
    first, second = two_hosts(tmp_path / "locks", cpus=(0, 1, 2))
    with first.lease(borrow=True) as a:
        assert a.loan is not None and a.loan.record().borrowed == (1, 2)
        with second.lease(borrow=True) as b:  # slot 0 is held: it gets slot 1, takes CPU 1 back
            assert b.cpus == (1,)
            assert a.loan.record().borrowed == (2,)
            assert b.loan is not None and b.loan.record().borrowed == ()  # 2 is a's


def test_a_warm_up_does_not_take_a_lent_cpu_back(tmp_path: Path) -> None:
    first, second = two_hosts(tmp_path / "locks")
    with first.lease(borrow=True) as lent:
        cpuset = fake_cpuset(tmp_path, "run-a", "0")
        assert lent.loan is not None
        lent.loan.confine([cpuset])
        with second.hold((1,)) as warming:
            assert warming is None
        assert cpuset.read_text() == "0-1"
    with second.hold((1,)) as warming:  # given back with the lease
        assert warming is not None
    assert cpuset.read_text() == "0"  # the loan's end narrowed what was still there


def test_a_cgroup_gone_with_its_run_is_forgotten(tmp_path: Path) -> None:
    first, second = two_hosts(tmp_path / "locks")
    with first.lease(borrow=True) as lent:
        cpuset = fake_cpuset(tmp_path, "run-a", "0")
        assert lent.loan is not None
        lent.loan.confine([cpuset])
        shutil.rmtree(cpuset.parent)
        # a warm kit whose sandbox ended meanwhile: left out, not made
        assert lent.loan.confine([tmp_path / "run-b" / "cpuset.cpus"]) == (0, 1)
        assert not (tmp_path / "run-b").exists()
        with second.lease(timeout=5):
            assert not cpuset.exists()  # not made again by the narrowing
            assert lent.loan.record().walls == ()


BORROWER = """
import sys, time
from pathlib import Path
from grader.sandbox.cpus import CpuSlots
slots = CpuSlots(2, cpus=(0, 1), lock_dir=Path(sys.argv[1]))
with slots.lease(borrow=True) as lent:
    lent.loan.confine([Path(sys.argv[2])])
    print("borrowed", lent.loan.record().borrowed, flush=True)
    time.sleep(600)
"""


def test_a_killed_borrower_blocks_nobody_and_its_loan_is_taken_back(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    cpuset = fake_cpuset(tmp_path, "run-a", "0")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(BORROWER), str(lock_dir),
                             str(cpuset)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "borrowed (1,)"
        assert cpuset.read_text() == "0-1"
        slots = CpuSlots(2, cpus=(0, 1), lock_dir=lock_dir)
        with slots.hold((1,)) as warming:  # alive: a warm-up keeps off its borrowed CPU
            assert warming is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with slots.lease(timeout=5) as lease:  # its own slot was freed by its death
        assert lease.cpus == (0,)
        assert cpuset.read_text() == "0"  # what it left is narrowed to its own slot
    assert not list(lock_dir.glob("loan-*.json"))


# --- a running bubblewrap sandbox ---------------------------------------------------------------


def allowed_cpus(pid: int) -> tuple[int, ...]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return parse_cpus(line.split()[1])
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def run_pids(cpuset_file: Path, timeout: float = 10.0) -> set[int]:
    """The processes of a run, once its command runs (``sleep``, the last of its chain)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {int(p) for p in (cpuset_file.parent / "cgroup.procs").read_text().split()}
        names = set()
        for pid in pids:
            try:
                names.add(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                continue
        if "sleep" in names:
            return pids
        time.sleep(0.05)
    raise AssertionError("the sandbox's command did not start")


def every_cpus(pids: set[int]) -> set[tuple[int, ...]]:
    seen = set()
    for pid in pids:
        try:
            seen.add(allowed_cpus(pid))
        except OSError:
            continue  # a process of the launch chain that has exited meanwhile
    return seen


@pytest.mark.sandbox
def test_a_running_sandbox_is_widened_by_a_loan_and_narrowed_when_taken_back(
        cgroup_parent: str, tmp_path: Path) -> None:
    if shutil.which("bwrap") is None or os.geteuid() != 0:
        pytest.fail("the real sandbox needs bubblewrap and root (make test has both)")
    cpus = usable_cpus()
    if len(cpus) < 2:
        pytest.skip("one usable CPU: there is nothing to lend")
    first, second = two_hosts(tmp_path / "locks", cpus=cpus[:2])
    request = SandboxRequest(argv=["sleep", "60"], workdir=None,
                             limits=Limits(notebook_timeout=60.0))
    with first.lease(borrow=True) as lent:
        own, loan = lent.cpus, lent.loan
        assert loan is not None
        # a cold start: the sandbox starts wide
        cold = BubblewrapSandbox(cgroup_parent=cgroup_parent, cpu_set=own, cpu_loan=loan)
        # a warm kit's sandbox: started on the slot alone, widened when the run takes it
        warm = BubblewrapSandbox(cgroup_parent=cgroup_parent, cpu_set=own)
        with cold.start(request) as cold_run, warm.start(request) as warm_run:
            cold_wall, warm_wall = cold_run.cpu_wall(), warm_run.cpu_wall()
            assert isinstance(cold_wall, CpusetFile) and isinstance(warm_wall, CpusetFile)
            cold_pids, warm_pids = run_pids(Path(cold_wall.path)), run_pids(Path(warm_wall.path))
            assert every_cpus(cold_pids) == {cpus[:2]}
            assert every_cpus(warm_pids) == {own}
            loan.confine([warm_wall])
            assert every_cpus(warm_pids) == {cpus[:2]}
            with second.lease(timeout=5) as taker:
                assert set(taker.cpus).isdisjoint(own)
                # taken back before the taker's lease was handed out
                assert every_cpus(cold_pids) == {own}
                assert every_cpus(warm_pids) == {own}


@pytest.mark.sandbox
def test_a_borrowing_run_cannot_see_or_forge_the_loan_records(cgroup_parent: str,
                                                              tmp_path: Path) -> None:
    """A student's code in a run that holds a loan: the slot locks and loan records (the host's
    ``/run/grader-cpus``, here a test folder) are not in its sandbox, so it can neither read who
    holds what nor write a record that would keep its loan or take another run's CPUs."""
    if shutil.which("bwrap") is None or os.geteuid() != 0:
        pytest.fail("the real sandbox needs bubblewrap and root (make test has both)")
    cpus = usable_cpus()
    if len(cpus) < 2:
        pytest.skip("one usable CPU: there is nothing to lend")
    locks = tmp_path / "locks"
    first, _ = two_hosts(locks, cpus=cpus[:2])
    script = (f"ls {locks} /run/grader-cpus; "
              f"echo '{{\"cgroups\": []}}' > {locks}/loan-forged.json; "
              f"echo '{{}}' > /run/grader-cpus/loan-forged.json; true")
    with first.lease(borrow=True) as lent:
        assert lent.loan is not None
        records_before = sorted(p.name for p in locks.iterdir())
        sandbox = BubblewrapSandbox(cgroup_parent=cgroup_parent, cpu_set=lent.cpus,
                                    cpu_loan=lent.loan)
        result = sandbox.run(SandboxRequest(argv=["sh", "-c", script], workdir=None,
                                            limits=Limits(notebook_timeout=30.0)))
        assert result.exit_code == 0, result.stderr
        assert b"loan-" not in result.stdout and b".lock" not in result.stdout, result.stdout
        assert sorted(p.name for p in locks.iterdir()) == records_before
        assert not Path("/run/grader-cpus/loan-forged.json").exists()
