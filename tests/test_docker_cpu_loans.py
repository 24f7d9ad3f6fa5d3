"""Idle CPUs lent on the docker backend: the loan record that names containers (no daemon), a
take-back through a fake daemon client, and real containers widened by a loan and narrowed
through the daemon when another run leases the borrowed CPU (tests/test_cpu_loans.py holds the
bookkeeping and bubblewrap's side).

The unit tests write the books into a test folder, as two worker processes of a host share one;
the container tests run this checkout's image on the daemon of the ``docker_sandbox`` fixture.
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
from typing import Any

import pytest

from grader.limits import Limits, MiB
from grader.sandbox import SandboxRequest
from grader.sandbox.cpus import CpuSlots, format_cpus, parse_cpus, usable_cpus
from grader.sandbox.docker_loans import CPU_PERIOD_US, ContainerCpus
from grader.sandbox.loan_records import MAX_RECORD_BYTES, MAX_WALLS, CpusetFile, LoanRecord

REPO = Path(__file__).resolve().parent.parent
CONTAINER = "ab" * 32
OTHER_CONTAINER = "cd" * 32
SHORT = Limits(notebook_timeout=60.0, memory_bytes=256 * MiB, max_processes=64,
               scratch_bytes=16 * MiB, file_size_bytes=1 * MiB, log_bytes=64 * 1024)


def two_hosts(lock_dir: Path, cpus: tuple[int, ...] = (0, 1)) -> tuple[CpuSlots, CpuSlots]:
    """Two workers' slots over the same CPUs and lock files (as two processes would have)."""
    return (CpuSlots(len(cpus), cpus=cpus, lock_dir=lock_dir),
            CpuSlots(len(cpus), cpus=cpus, lock_dir=lock_dir))


# --- the record -------------------------------------------------------------------------------


def test_a_record_names_cgroups_and_containers_and_reads_back() -> None:
    record = LoanRecord(own=(0,), borrowed=(1, 2), walls=(
        CpusetFile(path="/sys/fs/cgroup/cpuset/grader/run-1/cpuset.cpus"),
        ContainerCpus(container=CONTAINER, daemon="unix:///run/docker.sock", quota=False)))
    raw = json.loads(record.dump())
    assert [wall["kind"] for wall in raw["walls"]] == ["cpuset", "docker"]
    again = LoanRecord.load(record.dump())
    assert again == record and again.cpus == (0, 1, 2)
    assert isinstance(again.walls[1], ContainerCpus) and again.walls[1].quota is False


@pytest.mark.parametrize("change", [
    lambda raw: raw["walls"].append({"kind": "nfs", "path": "/x"}),  # unknown kind
    lambda raw: raw["walls"].append({"kind": "docker", "container": "../../etc"}),
    lambda raw: raw["walls"].append({"kind": "cpuset", "path": "relative/cpuset.cpus"}),
    lambda raw: raw["walls"].append({"kind": "cpuset", "path": "/etc/passwd"}),
    lambda raw: raw.update(own=[-1]),
    lambda raw: raw.update(extra="key"),
    lambda raw: raw.pop("borrowed"),
    lambda raw: raw.update(walls=[{"kind": "docker", "container": CONTAINER}] * 257),
], ids=["unknown-kind", "container-not-an-id", "relative-cpuset", "not-a-cpuset-file",
        "negative-cpu", "unknown-key", "missing-key", "too-many-walls"])
def test_a_malformed_record_is_refused(change: Any) -> None:
    raw = json.loads(LoanRecord(own=(0,), borrowed=(1,)).dump())
    change(raw)
    with pytest.raises(ValueError):
        LoanRecord.load(json.dumps(raw).encode())


def test_a_record_too_large_is_refused_before_it_is_parsed() -> None:
    padded = LoanRecord(own=(0,), borrowed=(1,)).dump() + b" " * MAX_RECORD_BYTES
    with pytest.raises(ValueError, match="bytes"):
        LoanRecord.load(padded)


# --- a take-back through a fake daemon --------------------------------------------------------


class FakeDaemon:
    """``docker.APIClient``'s ``update_container`` as the daemon answers it: the containers it
    has, each with its ``CpusetCpus`` and ``CpuQuota``; any other is a 404."""

    def __init__(self, *containers: str) -> None:
        self.host = {c: {"CpusetCpus": "", "CpuQuota": 0} for c in containers}
        self.updates: list[tuple[str, dict[str, Any]]] = []

    def update_container(self, container: str, **options: Any) -> None:
        import docker

        self.updates.append((container, options))
        if container not in self.host:
            raise docker.errors.NotFound(f"No such container: {container}")
        self.host[container]["CpusetCpus"] = options["cpuset_cpus"]
        if "cpu_quota" in options:
            self.host[container]["CpuQuota"] = options["cpu_quota"]

    def close(self) -> None:
        pass


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> FakeDaemon:
    pytest.importorskip("docker")
    fake = FakeDaemon(CONTAINER, OTHER_CONTAINER)
    monkeypatch.setattr(ContainerCpus, "client", lambda self: fake)
    return fake


def test_a_take_back_narrows_the_borrowers_containers_through_the_daemon(
        daemon: FakeDaemon, tmp_path: Path) -> None:
    first, second = two_hosts(tmp_path / "locks")
    with first.lease(borrow=True) as lent:
        assert lent.loan is not None
        quota_follows = ContainerCpus(container=CONTAINER)
        fixed_quota = ContainerCpus(container=OTHER_CONTAINER, quota=False)
        assert lent.loan.confine([quota_follows, fixed_quota]) == (0, 1)
        assert daemon.host[CONTAINER] == {"CpusetCpus": "0-1", "CpuQuota": 2 * CPU_PERIOD_US}
        assert daemon.host[OTHER_CONTAINER] == {"CpusetCpus": "0-1", "CpuQuota": 0}
        with second.lease(timeout=5) as taker:
            assert taker.cpus == (1,)
            # narrowed before the taker's lease was handed out
            assert daemon.host[CONTAINER] == {"CpusetCpus": "0", "CpuQuota": CPU_PERIOD_US}
            assert daemon.host[OTHER_CONTAINER] == {"CpusetCpus": "0", "CpuQuota": 0}
            assert lent.loan.record().borrowed == ()
            assert lent.loan.record().walls == (quota_follows, fixed_quota)


def test_a_container_gone_with_its_run_is_dropped_without_error(daemon: FakeDaemon,
                                                                tmp_path: Path) -> None:
    first, second = two_hosts(tmp_path / "locks")
    with first.lease(borrow=True) as lent:
        assert lent.loan is not None
        lent.loan.confine([ContainerCpus(container=CONTAINER)])
        del daemon.host[CONTAINER]  # its run ended: the container was removed
        with second.lease(timeout=5):
            assert lent.loan.record().walls == ()
        # a container removed before it was lent: left out, no error
        assert lent.loan.confine([ContainerCpus(container=CONTAINER)]) == (0,)
        assert lent.loan.record().walls == ()


def test_a_dead_borrowers_containers_are_narrowed_and_its_record_reaped(
        daemon: FakeDaemon, tmp_path: Path) -> None:
    """A record nobody holds a lock on is a dead borrower's: the next lease narrows what is
    left of it (one container still there, one already gone) and deletes it."""
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "loan-4242-dead.json").write_bytes(LoanRecord(own=(0,), borrowed=(1,), walls=(
        ContainerCpus(container=CONTAINER), ContainerCpus(container="ef" * 32))).dump())
    daemon.host[CONTAINER]["CpusetCpus"] = "0-1"
    with CpuSlots(2, cpus=(0, 1), lock_dir=locks).lease(prefer=[(1,)], timeout=5) as lease:
        assert lease.cpus == (1,)
        assert daemon.host[CONTAINER] == {"CpusetCpus": "0", "CpuQuota": CPU_PERIOD_US}
        assert ("ef" * 32) in [container for container, _ in daemon.updates]
    assert not list(locks.glob("loan-*.json"))


def test_walls_past_the_records_bound_are_refused_before_any_is_widened(
        daemon: FakeDaemon, tmp_path: Path) -> None:
    """A record past its bound would read as malformed, and its loan be lost to the books: the
    wall that would pass it is refused, not widened, and the record stays readable."""
    ids = [f"{n:064x}" for n in range(MAX_WALLS + 1)]
    daemon.host.update({c: {"CpusetCpus": "", "CpuQuota": 0} for c in ids})
    first, _ = two_hosts(tmp_path / "locks")
    with first.lease(borrow=True) as lent:
        assert lent.loan is not None
        lent.loan.confine([ContainerCpus(container=c) for c in ids[:MAX_WALLS]])
        with pytest.raises(OSError, match="at most"):
            lent.loan.confine([ContainerCpus(container=ids[-1])])
        assert daemon.host[ids[-1]]["CpusetCpus"] == ""
        assert len(lent.loan.record().walls) == MAX_WALLS


# --- real containers --------------------------------------------------------------------------

#: Prints the CPUs a fresh process of the container may use, five times a second.
WATCH = "while :; do grep Cpus_allowed_list /proc/self/status; sleep 0.2; done"


class Seen:
    """The CPU lists a watching container printed, newest last."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, ...]] = []

    def __call__(self, line: str) -> None:
        if line.startswith("Cpus_allowed_list:"):
            self.lines.append(parse_cpus(line.split()[1]))

    def wait_for(self, cpus: tuple[int, ...], timeout: float = 20.0) -> None:
        """Until the container's newest process saw ``cpus``."""
        deadline = time.monotonic() + timeout
        while not (self.lines and self.lines[-1] == cpus):
            assert time.monotonic() < deadline, f"the container sees {self.lines[-3:]}"
            time.sleep(0.1)


def lendable_cpus() -> tuple[int, ...]:
    cpus = usable_cpus()
    if len(cpus) < 2:
        pytest.skip("one usable CPU: there is nothing to lend")
    return cpus[:2]


def host_cpus(client: Any, container: str) -> tuple[str, int]:
    host = client.inspect_container(container)["HostConfig"]
    return host["CpusetCpus"], host["CpuQuota"]


@pytest.mark.sandbox
@pytest.mark.docker
def test_a_borrowing_container_sees_both_cpus_until_another_run_takes_one_back(
        docker_sandbox: Any, tmp_path: Path) -> None:
    from grader.sandbox.docker import DockerSandbox

    cpus = lendable_cpus()
    client = docker_sandbox.client()
    first, second = two_hosts(tmp_path / "locks", cpus=cpus)
    request = SandboxRequest(argv=["sh", "-c", WATCH], workdir=None, limits=SHORT)
    with first.lease(borrow=True) as lent:
        own, loan = lent.cpus, lent.loan
        assert loan is not None and loan.record().borrowed == tuple(set(cpus) - set(own))
        cold, warm = Seen(), Seen()
        # a cold start: the container starts wide; a warm kit's: started on the slot alone,
        # widened when the run takes it
        with DockerSandbox(cpu_set=own, cpu_loan=loan).start(request, cold) as cold_run, \
                DockerSandbox(cpu_set=own).start(request, warm) as warm_run:
            cold_wall, warm_wall = cold_run.cpu_wall(), warm_run.cpu_wall()
            assert isinstance(cold_wall, ContainerCpus) and isinstance(warm_wall, ContainerCpus)
            cold.wait_for(cpus)
            assert cold.lines[0] == cpus  # from its first process on
            assert host_cpus(client, cold_wall.container) == (format_cpus(cpus), 2 * CPU_PERIOD_US)
            warm.wait_for(own)
            loan.confine([warm_wall])
            warm.wait_for(cpus)
            assert host_cpus(client, warm_wall.container) == (format_cpus(cpus), 2 * CPU_PERIOD_US)
            with second.lease(timeout=5) as taker:
                assert set(taker.cpus).isdisjoint(own)
                # taken back before the taker's lease was handed out
                for wall in (cold_wall, warm_wall):
                    assert host_cpus(client, wall.container) == (format_cpus(own), CPU_PERIOD_US)
                cold.wait_for(own)
                warm.wait_for(own)


BORROWER = """
import sys, time
from pathlib import Path
from grader.limits import Limits
from grader.sandbox import SandboxRequest
from grader.sandbox.cpus import CpuSlots
from grader.sandbox.docker import DockerSandbox
slots = CpuSlots(2, cpus=tuple(int(c) for c in sys.argv[2:4]), lock_dir=Path(sys.argv[1]))
with slots.lease(borrow=True) as lent:
    run = DockerSandbox(cpu_set=lent.cpus, cpu_loan=lent.loan).start(SandboxRequest(
        argv=["sleep", "600"], workdir=None, limits=Limits(notebook_timeout=600.0)))
    print(run.cpu_wall().container, flush=True)
    time.sleep(600)
"""


@pytest.mark.sandbox
@pytest.mark.docker
def test_a_killed_borrowers_container_already_gone_is_reaped_without_error(
        docker_sandbox: Any, tmp_path: Path) -> None:
    import docker

    cpus = lendable_cpus()
    client = docker_sandbox.client()
    locks = tmp_path / "locks"
    borrower = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(BORROWER), str(locks), *map(str, cpus)],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert borrower.stdout is not None
        container = borrower.stdout.readline().strip()
        assert host_cpus(client, container)[0] == format_cpus(cpus)
        [record] = locks.glob("loan-*.json")
        assert ContainerCpus(container=container) in LoanRecord.load(record.read_bytes()).walls
    finally:
        borrower.send_signal(signal.SIGKILL)
        borrower.wait()
    try:  # its watchdog removes it too: gone either way
        client.remove_container(container, force=True)
    except docker.errors.NotFound:
        pass
    with CpuSlots(2, cpus=cpus, lock_dir=locks).lease(prefer=[cpus[1:]], timeout=5) as lease:
        assert lease.cpus == cpus[1:]
    assert not list(locks.glob("loan-*.json"))


@pytest.mark.sandbox
@pytest.mark.docker
def test_a_borrowing_container_cannot_see_or_forge_the_loan_records(docker_sandbox: Any,
                                                                   tmp_path: Path) -> None:
    """A student's code in a container that holds a loan: the slot locks and loan records (the
    host's ``/run/grader-cpus``, here a test folder) are not in it, nor the daemon's socket, so
    it can neither read who holds what, nor write a record, nor widen its container again."""
    from grader.sandbox.docker import DockerSandbox

    cpus = lendable_cpus()
    locks = tmp_path / "locks"
    first, _ = two_hosts(locks, cpus=cpus)
    script = (f"for p in {locks} /run/grader-cpus /var/run/docker.sock /run/docker.sock; do "
              f"[ -e $p ] && echo visible: $p; done; "
              f"ls {locks} /run/grader-cpus; "
              f"echo '{{\"walls\": []}}' > {locks}/loan-forged.json; "
              f"echo '{{}}' > /run/grader-cpus/loan-forged.json; true")
    with first.lease(borrow=True) as lent:
        assert lent.loan is not None
        records_before = sorted(p.name for p in locks.iterdir())
        sandbox = DockerSandbox(cpu_set=lent.cpus, cpu_loan=lent.loan)
        result = sandbox.run(SandboxRequest(argv=["sh", "-c", script], workdir=None,
                                            limits=SHORT))
        assert result.exit_code == 0, result.stderr
        assert b"loan-" not in result.stdout and b".lock" not in result.stdout, result.stdout
        assert b"visible" not in result.stdout, result.stdout
        assert sorted(p.name for p in locks.iterdir()) == records_before
        assert not Path("/run/grader-cpus/loan-forged.json").exists()
