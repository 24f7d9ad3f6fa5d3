"""GPU leases and routing on SQLite and PostgreSQL, without a GPU.

Real databases, real claims and leases, real threads racing with their own sessions. Faked,
each at one seam only: ``nvidia-smi`` (a :class:`~grader.sandbox.gpus.NvidiaSmi` whose command
runner answers memory queries from a dict, ``GPU_PROBE``) and the grading itself
(``grading.grade_notebook``, which records the sandbox it was handed: the docker backend with
the devices it would request). The devices are made-up UUIDs in ``GPUS``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session

from grader import GraderConfig, GradeReport, Outcome
from grader.sandbox.cpus import CpuSlots
from grader.sandbox.gpus import GpuProbeError, NvidiaSmi
from service.blobs import FolderBlobStore
from service.extensions import db
from service.models import GpuLease, GradingRun, Student, Submission, utcnow
from service.queue import claims, grading
from service.queue import gpu_leases as leases
from service.queue.dispatch import queue_for
from service.settings import SettingsError
from service.states import GpuNeed, RunState
from tests.service.service_support import in_session, take, tiny_notebook
from tests.service.test_service_jobs import race

GPU_A = "GPU-0e6b2c11-7f3a-4c55-9d2e-1a2b3c4d5e6f"  # sorts first: leased first
GPU_B = "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"
#: The revision before the GPU leases.
BEFORE = "7b3e9d1c4a60"


class Memory:
    """``nvidia-smi --query-gpu=memory.used`` answered from ``used`` (MiB per device)."""

    def __init__(self, **used: int):
        self.used = {GPU_A: 0, GPU_B: 0}
        self.used.update({{"a": GPU_A, "b": GPU_B}[k]: v for k, v in used.items()})

    def __call__(self, argv: Sequence[str]) -> str:
        device = argv[argv.index("-i") + 1]
        if device not in self.used:
            raise GpuProbeError(f"No devices were found matching {device}")
        return f"{self.used[device]}\n"


@pytest.fixture
def memory() -> Memory:
    return Memory()


@pytest.fixture
def gpu_app(make_app, memory: Memory):
    """``gpu_app(host="h1", gpus=...)``: a worker's app on a host lending ``gpus``."""

    def build(host: str = "h1", gpus: str = f"{GPU_A},{GPU_B}", **config: Any):
        grader_config = GraderConfig.from_env()
        return make_app(GPUS=gpus, GPU_HOST=host, GPU_PROBE=NvidiaSmi(run=memory),
                        GPU_FREE_MIB=256, LEASE_SECONDS=60,
                        GRADER=GraderConfig(grader_config.exercises_root,
                                            grader_config.reference_root,
                                            grader_config.data_dir, sandbox="docker"),
                        **config)

    return build


def add_runs(app, *needs: GpuNeed) -> list[int]:
    """Queued runs asking ``needs``, oldest first, with a real notebook in the upload store."""
    sha = FolderBlobStore(app.config["UPLOAD_DIR"]).put(tiny_notebook())

    def add(session: Session) -> list[int]:
        student = session.scalars(select(Student).where(Student.student_id == "gpu")).first()
        student = student or Student(student_id="gpu", name="GPU", token_hash="1" * 64)
        runs = [GradingRun(submission=Submission(student=student, exercise="chap06_cnn",
                                                 filename="n.ipynb", notebook_sha256=sha,
                                                 size=1),
                           state=RunState.QUEUED, gpu=need) for need in needs]
        session.add_all(runs)
        session.commit()
        return [run.id for run in runs]

    return in_session(app, add)


def lease_rows(app) -> list[dict[str, Any]]:
    def read(session: Session) -> list[dict[str, Any]]:
        return [{"host": r.host, "device": r.device, "worker": r.worker, "run_id": r.run_id,
                 "dirty": r.dirty, "used_mib": r.used_mib}
                for r in session.scalars(select(GpuLease).order_by(GpuLease.host,
                                                                   GpuLease.device))]

    return in_session(app, read)


def acquire(app, worker: str, session: Session | None = None) -> str | None:
    def work(s: Session) -> str | None:
        host = app.config["GPU_HOST"]
        leases.register(s, host, leases.inventory(app.config))
        return leases.acquire(s, host, leases.inventory(app.config), worker, 60,
                              leases.probe(app.config), 256)

    return work(session) if session is not None else in_session(app, work)


class Grading:
    """``grading.grade_notebook`` replaced: records each sandbox and the leases seen while
    grading, returns a graded report."""

    def __init__(self, app):
        self.app, self.sandboxes, self.leases_seen = app, [], []

    def __call__(self, data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any):
        self.sandboxes.append(sandbox)
        self.leases_seen.append(lease_rows(self.app))
        return GradeReport(exercise.id, Outcome.GRADED, [], exercise.max_score)


@pytest.fixture
def grade(monkeypatch):
    def install(app) -> Grading:
        fake = Grading(app)
        monkeypatch.setattr(grading, "grade_notebook", fake)
        return fake

    return install


# --- the schema ------------------------------------------------------------------------------

def test_the_gpu_migration_goes_both_ways(app):
    with app.app_context():
        downgrade(revision=BEFORE)
        inspector = inspect(db.engine)
        assert "gpu_leases" not in inspector.get_table_names()
        assert "gpu" not in {c["name"] for c in inspector.get_columns("grading_runs")}
        db.session.remove()
        upgrade()
        inspector = inspect(db.engine)
        assert "gpu_leases" in inspector.get_table_names()
        assert "gpu" in {c["name"] for c in inspector.get_columns("grading_runs")}
        assert {tuple(u["column_names"]) for u in inspector.get_unique_constraints(
            "gpu_leases")} == {("host", "device")}


# --- leases ----------------------------------------------------------------------------------

def test_racing_workers_of_a_host_never_share_a_device(gpu_app):
    app = gpu_app()
    warm = acquire(app, "warm-up")  # rows registered; give it back
    assert warm is not None
    in_session(app, lambda s: leases.release(s, "h1", warm, "warm-up"))
    won = race(app, [lambda s, k=k: acquire(app, f"w{k}", s) for k in range(6)])
    assert sorted(d for d in won if d) == [GPU_A, GPU_B]
    holders = {row["device"]: row["worker"] for row in lease_rows(app)}
    assert holders[GPU_A] != holders[GPU_B] and None not in holders.values()
    assert acquire(app, "late") is None


def test_the_same_uuid_on_two_hosts_is_two_devices(gpu_app):
    one, two = gpu_app(host="h1", gpus=GPU_A), gpu_app(host="h2", gpus=GPU_A)
    assert acquire(one, "w1") == GPU_A
    assert acquire(two, "w2") == GPU_A
    assert acquire(one, "w3") is None


def test_a_dead_workers_lease_runs_out_and_is_taken_once_the_memory_is_free(gpu_app, memory):
    app = gpu_app(gpus=GPU_A)
    assert acquire(app, "dead") == GPU_A
    assert acquire(app, "alive") is None  # still leased
    in_session(app, lambda s: (s.execute(update(GpuLease).values(
        expires_at=utcnow().replace(year=2000))), s.commit()))
    memory.used[GPU_A] = 9000  # its container's process may still hold the memory
    assert acquire(app, "alive") is None
    assert lease_rows(app)[0] == {"host": "h1", "device": GPU_A, "worker": None,
                                       "run_id": None, "dirty": True, "used_mib": 9000}
    memory.used[GPU_A] = 2
    assert acquire(app, "alive") is None  # dirty: only a check sets it free
    assert in_session(app, lambda s: leases.refresh_dirty(s, "h1", leases.probe(app.config), 256)) \
        == [GPU_A]
    assert acquire(app, "alive") == GPU_A


def test_a_device_whose_memory_is_not_free_after_a_run_is_not_lent_again(gpu_app, memory):
    app = gpu_app(gpus=GPU_A)
    assert acquire(app, "w") == GPU_A
    memory.used[GPU_A] = 700
    release = leases.release_after_run
    assert in_session(app, lambda s: release(s, "h1", GPU_A, "w", leases.probe(app.config), 256)) \
        is False
    assert lease_rows(app)[0]["dirty"] and lease_rows(app)[0]["used_mib"] == 700
    assert acquire(app, "next") is None
    # memory the probe cannot read is not free either
    del memory.used[GPU_A]
    assert in_session(app, lambda s: leases.refresh_dirty(s, "h1", leases.probe(app.config), 256)) == []
    memory.used[GPU_A] = 0
    assert in_session(app, lambda s: leases.refresh_dirty(s, "h1", leases.probe(app.config), 256)) \
        == [GPU_A]
    assert acquire(app, "next") == GPU_A


def test_bad_gpu_settings_stop_a_worker(gpu_app, make_app):
    with pytest.raises(SettingsError, match="GPU or MIG UUID"):
        leases.inventory(gpu_app(gpus="0").config)
    with pytest.raises(SettingsError, match="GRADER_SANDBOX=docker"):
        leases.inventory(make_app(GPUS=GPU_A).config)  # the tests' sandbox is not docker
    assert leases.inventory(make_app(GPUS="").config) == ()


# --- routing ---------------------------------------------------------------------------------

def test_claims_route_by_what_a_run_asks(app):
    required, preferred, none = add_runs(app, GpuNeed.REQUIRED, GpuNeed.PREFERRED,
                                         GpuNeed.NONE)

    def claim_next(holds_gpu: bool):
        return in_session(app, lambda s: claims.claim_next(
            s, "w", 60, claims.takeable_needs(holds_gpu)))

    assert claim_next(False) == preferred
    assert claim_next(False) == none
    assert claim_next(False) is None  # the required run waits for a GPU
    assert in_session(app, lambda s: claims.claim(s, required, "w", 60,
                                                  claims.takeable_needs(False))) is False
    assert claim_next(True) == required


def test_a_gpu_worker_grades_a_required_run_on_its_leased_device(gpu_app, grade):
    app = gpu_app()
    fake = grade(app)
    (run_id,) = add_runs(app, GpuNeed.REQUIRED)

    taken = take(app, None, "gpu-worker")

    assert taken.run_id == run_id and taken.result is grading.TakeResult.GRADED
    assert taken.device == GPU_A
    (sandbox,) = fake.sandboxes
    assert sandbox.name == "docker" and sandbox.gpu_devices == (GPU_A,)
    held = {row["device"]: row for row in fake.leases_seen[0]}
    assert held[GPU_A]["worker"] == "gpu-worker" and held[GPU_A]["run_id"] == run_id
    assert held[GPU_B]["worker"] is None
    assert all(row["worker"] is None and not row["dirty"] for row in lease_rows(app))


def test_a_run_asking_no_gpu_is_graded_without_one_even_on_a_gpu_worker(gpu_app, grade):
    app = gpu_app()
    fake = grade(app)
    (run_id,) = add_runs(app, GpuNeed.NONE)

    taken = take(app, run_id, "gpu-worker")

    assert taken.run_id == run_id and taken.device is None
    assert fake.sandboxes[0].gpu_devices == ()
    assert all(row["worker"] is None for row in fake.leases_seen[0])


def test_a_worker_without_gpus_leaves_required_runs_and_takes_preferred_ones(make_app, grade):
    app = make_app()  # GPUS unset, the tests' sandbox
    fake = grade(app)
    required, preferred = add_runs(app, GpuNeed.REQUIRED, GpuNeed.PREFERRED)

    assert take(app, required, "cpu-worker").result is grading.TakeResult.WAIT_GPU
    taken = take(app, None, "cpu-worker")
    assert taken.run_id == preferred and taken.device is None
    assert take(app, None, "cpu-worker") == grading.Taken(None, None)
    assert len(fake.sandboxes) == 1
    assert in_session(app, lambda s: s.get(GradingRun, required).state) == RunState.QUEUED


def test_while_every_gpu_is_busy_or_dirty_required_runs_wait(gpu_app, grade, memory):
    app = gpu_app(gpus=GPU_A)
    fake = grade(app)
    first, second = add_runs(app, GpuNeed.REQUIRED, GpuNeed.REQUIRED)
    assert acquire(app, "other-worker") == GPU_A  # another worker of this host holds it

    assert take(app, None, "me") == grading.Taken(None, None)
    in_session(app, lambda s: leases.release(s, "h1", GPU_A, "other-worker"))

    memory.used[GPU_A] = 4000  # what the run left on the device
    assert take(app, None, "me").run_id == first
    assert lease_rows(app)[0]["dirty"]
    assert take(app, second, "me").result is grading.TakeResult.WAIT_GPU
    memory.used[GPU_A] = 0
    assert take(app, None, "me").run_id == second
    assert [s.gpu_devices for s in fake.sandboxes] == [(GPU_A,), (GPU_A,)]


def test_celery_queues_by_need():
    assert queue_for(GpuNeed.REQUIRED) == "gpu"
    assert queue_for(GpuNeed.PREFERRED) == "cpu"
    assert queue_for(GpuNeed.NONE) == "cpu"


def test_a_run_takes_its_need_from_the_exercise(make_app, tmp_path):
    from service.domain.submissions import new_run

    base = GraderConfig.from_env()
    root = tmp_path / "exercises"
    shutil.copytree(base.exercises_root / "chap06_cnn", root / "chap06_cnn")
    spec = root / "chap06_cnn" / "exercise.toml"
    app = make_app(GRADER=GraderConfig(root, base.reference_root, base.data_dir))
    with app.app_context():
        assert new_run(Submission(exercise="chap06_cnn")).gpu is GpuNeed.NONE
        spec.write_text(spec.read_text().replace("[runtime]\n", '[runtime]\ngpu = "required"\n'))
        os.utime(spec, ns=(spec.stat().st_atime_ns, spec.stat().st_mtime_ns + 10**9))
        assert new_run(Submission(exercise="chap06_cnn")).gpu is GpuNeed.REQUIRED
        assert new_run(Submission(exercise="gone")).gpu is GpuNeed.NONE


def test_the_spec_and_the_service_share_one_gpu_need():
    from grader.spec import GpuNeed as SpecNeed

    assert GpuNeed is SpecNeed


def test_a_gpu_run_gets_a_cpu_slot_too_and_gives_it_back(gpu_app, grade, tmp_path):
    app = gpu_app(RUNS_PER_HOST=1, CPU_SLOTS_DIR=str(tmp_path / "slots"))
    fake = grade(app)
    (run_id,) = add_runs(app, GpuNeed.REQUIRED)

    taken = take(app, None, "gpu-worker")

    assert taken.run_id == run_id and taken.device == GPU_A
    (sandbox,) = fake.sandboxes
    assert sandbox.gpu_devices == (GPU_A,)
    assert set(sandbox.cpu_set) == os.sched_getaffinity(0)  # one run per host: every CPU
    slots = CpuSlots(1, lock_dir=tmp_path / "slots")  # another worker of the host
    with slots.lease(timeout=0) as lease:  # given back after the run
        assert lease.cpus == sandbox.cpu_set
