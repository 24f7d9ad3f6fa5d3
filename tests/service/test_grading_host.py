"""A worker process's grading resources have one owner (``service/queue/host.py``, issue 22):
the host opens them once and closes them in reverse order, each even when another's closing
raises; a run's seat gives back all it held (GPU lease, CPU slot, warm kit) whatever the
grading did. And, read from the code: no grading resource kept in ``app.extensions`` or a
module global under ``service/queue``.

Faked at their seams only: the host's resources where their order is the question (stand-ins
recording their opening and closing), ``nvidia-smi`` (``GPU_PROBE``), the warm pool's kit and
``grading.grade_notebook``; the database, the claims, the GPU leases and the CPU slots' lock
files are real.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from grader import GraderConfig
from grader.kit import KitClosers
from grader.sandbox.cpus import CpuSlots
from grader.sandbox.gpus import NvidiaSmi
from service.models import GpuLease, GradingRun
from service.queue import grading
from service.queue import host as host_module
from service.queue.host import GradingHost
from service.settings import SettingsError
from service.states import GpuNeed, RunState, WorkerKind
from tests.service.service_support import in_session
from tests.service.test_service_gpus import GPU_A, Memory, add_runs

ROOT = Path(__file__).resolve().parents[2]

#: The tests on a database need one only: SQLite.
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# --- the host: opened in order, closed in reverse --------------------------------------------

class Recorder:
    """Stand-ins for the host's heartbeat, warm pool and spare renderer, noting each opening
    and closing in ``events``; ``broken`` names one whose closing (or opening) raises."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.broken_close: str | None = None
        self.broken_open: str | None = None

    def _opened(self, name: str) -> None:
        if self.broken_open == name:
            raise RuntimeError(f"{name} cannot start")
        self.events.append(f"open {name}")

    def _closed(self, name: str) -> None:
        self.events.append(f"close {name}")
        if self.broken_close == name:
            raise RuntimeError(f"{name} failed to close")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        recorder = self

        class Beat:
            def __init__(self, *args: Any, **kw: Any) -> None:
                pass

            def start(self) -> None:
                recorder._opened("heartbeat")

            def stop(self, forget_workers: bool = False) -> None:
                recorder._closed("heartbeat")

        class Pool:
            def __init__(self, *args: Any, **kw: Any) -> None:
                pass

            def start(self) -> Pool:
                recorder._opened("pool")
                return self

            def keys(self) -> list[Any]:
                return []

            def close(self) -> None:
                recorder._closed("pool")

        class Spare:
            def __enter__(self) -> Spare:
                recorder._opened("renderer")
                return self

            def __exit__(self, *exc: object) -> None:
                recorder._closed("renderer")

        monkeypatch.setattr(host_module, "Heartbeat", Beat)
        monkeypatch.setattr(host_module, "WarmPool", Pool)
        monkeypatch.setattr(host_module, "SpareRenderer", Spare)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    found = Recorder()
    found.install(monkeypatch)
    return found


@SQLITE
def test_the_host_closes_what_it_opened_in_reverse_order_even_when_one_close_raises(
        make_app, recorder, caplog):
    app = make_app(WARM_POOL=1)
    recorder.broken_close = "pool"
    host = GradingHost(app, heartbeat=WorkerKind.EMBEDDED).open()
    assert recorder.events == ["open heartbeat", "open pool", "open renderer"]
    with caplog.at_level(logging.ERROR, logger="service.queue.host"):
        host.close()  # the pool's failure is logged; the heartbeat is still stopped
    assert recorder.events[3:] == ["close renderer", "close pool", "close heartbeat"]
    assert "did not close cleanly" in caplog.text
    assert host.pool is None and host.renderer is None and host.heartbeat is None
    host.close()  # idempotent: nothing is closed twice
    assert len(recorder.events) == 6
    with pytest.raises(RuntimeError, match="opened once"):
        host.open()


@SQLITE
def test_a_host_that_cannot_open_closes_what_it_had_opened(make_app, recorder):
    app = make_app(WARM_POOL=1)
    recorder.broken_open = "renderer"
    with pytest.raises(RuntimeError, match="renderer cannot start"):
        GradingHost(app, heartbeat=WorkerKind.EMBEDDED).open()
    assert recorder.events == ["open heartbeat", "open pool", "close pool", "close heartbeat"]


@SQLITE
def test_a_bad_gpus_setting_stops_the_host_before_anything_starts(make_app, recorder):
    app = make_app(WARM_POOL=1, GPUS=GPU_A)  # the tests' sandbox is not docker
    with pytest.raises(SettingsError, match="GRADER_SANDBOX=docker"):
        GradingHost(app, heartbeat=WorkerKind.EMBEDDED).open()
    assert recorder.events == []


@SQLITE
def test_runs_of_a_host_hold_distinct_cpu_slots(make_app, tmp_path):
    app = make_app(PIN_CPUS=True, RUNS_PER_HOST=2, CPU_SLOTS_DIR=str(tmp_path / "slots"))
    with GradingHost(app, spare_renderer=False) as host:
        assert host.cpus is not None and len(host.cpus.slots) == 2
        with host.seat("a") as one, host.seat("b") as two, \
                one.pin("chap06_cnn") as first, two.pin("chap06_cnn") as second:
            assert first.cpus and second.cpus and not set(first.cpus) & set(second.cpus)
            assert first.sandbox.cpu_set == first.cpus  # type: ignore[attr-defined]
    app.config["PIN_CPUS"] = False  # read when a host opens
    with GradingHost(app, spare_renderer=False) as host, host.seat("a") as seat, \
            seat.pin("chap06_cnn") as pinned:
        assert host.cpus is None and pinned.cpus == ()


# --- a seat gives back what its run held ------------------------------------------------------

def _broken_grading(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``grade_notebook`` raising, after noting the sandbox and kit it was handed."""
    handed: list[Any] = []

    def grade(data: bytes, exercise: Any, config: Any, sandbox: Any, **kw: Any) -> Any:
        handed.append((sandbox, kw.get("kit")))
        raise RuntimeError("the grader fell over")

    monkeypatch.setattr(grading, "grade_notebook", grade)
    return handed


@SQLITE
def test_a_gpu_run_gives_back_its_gpu_lease_and_cpu_slot_when_grading_raises(
        make_app, monkeypatch, tmp_path):
    base = GraderConfig.from_env()
    app = make_app(GPUS=GPU_A, GPU_HOST="h1", GPU_PROBE=NvidiaSmi(run=Memory()),
                   GPU_FREE_MIB=256, PIN_CPUS=True, RUNS_PER_HOST=1,
                   CPU_SLOTS_DIR=str(tmp_path / "slots"),
                   GRADER=GraderConfig(base.exercises_root, base.reference_root, base.data_dir,
                                       sandbox="docker"))
    handed = _broken_grading(monkeypatch)
    (run_id,) = add_runs(app, GpuNeed.REQUIRED)

    with GradingHost(app, spare_renderer=False) as host:
        taken = grading.take(host, None, "gpu-worker")
        assert taken.run_id == run_id and taken.device == GPU_A
        assert taken.result is grading.TakeResult.FAILED
        ((sandbox, kit),) = handed
        assert sandbox.gpu_devices == (GPU_A,) and kit is None
        rows = in_session(app, lambda s: [(r.worker, r.run_id, r.dirty)
                                          for r in s.scalars(select(GpuLease))])
        assert rows == [(None, None, False)]  # the lease given back, the device clean
        with CpuSlots(1, lock_dir=tmp_path / "slots").lease(timeout=0) as lease:
            assert lease.cpus == sandbox.cpu_set  # the slot given back
    reason = in_session(app, lambda s: s.get(GradingRun, run_id).reason)
    assert "the grader fell over" in reason


class WarmKit:
    """A kit as a seat sees it: closed once, by the seat."""

    def __init__(self) -> None:
        self.closes: list[KitClosers | None] = []

    def close(self, closers: KitClosers | None = None) -> None:
        self.closes.append(closers)

    def cpu_walls(self) -> list[object]:  # what a loan of idle CPUs widens: none here
        return []


class OneKitPool:
    """A pool holding one ready kit for one slot."""

    def __init__(self, slot: tuple[int, ...], kit: WarmKit) -> None:
        self.slot, self.kit = slot, kit
        self.closers = KitClosers()

    def ready_slots(self, exercise: str) -> list[tuple[int, ...]]:
        return [self.slot] if self.kit is not None else []

    def take(self, exercise: str, cpus: tuple[int, ...]) -> WarmKit | None:
        return self.kit if cpus == self.slot else None


@SQLITE
def test_a_run_closes_the_warm_kit_it_took_and_gives_back_its_slot_when_grading_raises(
        make_app, submit, monkeypatch, tmp_path):
    app = make_app(PIN_CPUS=True, RUNS_PER_HOST=2, CPU_SLOTS_DIR=str(tmp_path / "slots"))
    handed = _broken_grading(monkeypatch)
    submit(b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    kit = WarmKit()
    with GradingHost(app, spare_renderer=False) as host:
        assert host.cpus is not None
        warm_slot = host.cpus.slots[-1]  # not the first free one: the seat must prefer it
        pool = OneKitPool(warm_slot, kit)
        host.pool = pool  # type: ignore[assignment]
        taken = grading.take(host, None, "worker")
        assert taken.result is grading.TakeResult.FAILED
        ((sandbox, given),) = handed
        assert given is kit and sandbox.cpu_set == warm_slot
        # closed once, by the seat, off the verdict's path: by the pool's closers
        assert kit.closes == [pool.closers]
        with host.cpus.lease(timeout=0, prefer=[warm_slot]) as lease:
            assert lease.cpus == warm_slot  # given back


def test_a_lone_runs_sandbox_borrows_the_idle_slot_until_a_second_run_leases_it(
        make_app, tmp_path):
    app = make_app(PIN_CPUS=True, RUNS_PER_HOST=2, CPU_SLOTS_DIR=str(tmp_path / "slots"),
                   LEND_IDLE_CPUS=True)
    with GradingHost(app, spare_renderer=False) as host:
        if not host.settings.lend_cpus:
            pytest.skip("loans are for the bwrap and docker backends; GRADER_SANDBOX names another")
        with host.seat("a") as seat, seat.pin("ex") as first:
            loan = first.sandbox.cpu_loan  # type: ignore[attr-defined]
            assert loan is not None and first.sandbox.cpu_set == first.cpus  # type: ignore[attr-defined]
            other = tuple(c for s in host.cpus.slots for c in s if c not in first.cpus)
            assert loan.record().borrowed == other
            with host.seat("b") as seat_b, seat_b.pin("ex") as second:
                assert second.cpus == other
                assert loan.record().borrowed == ()  # taken back for the second run
                assert second.sandbox.cpu_loan.record().borrowed == ()  # type: ignore[attr-defined]
    app.config["LEND_IDLE_CPUS"] = False  # read when a host opens
    with (GradingHost(app, spare_renderer=False) as host, host.seat("a") as seat,
          seat.pin("ex") as pinned):
        assert pinned.cpus and pinned.sandbox.cpu_loan is None  # type: ignore[attr-defined]


# --- read from the code ------------------------------------------------------------------------

def _queue_modules() -> list[Path]:
    return sorted((ROOT / "service" / "queue").glob("*.py"))


def test_no_grading_resource_is_kept_in_app_extensions():
    """Only the embedded workers' doorbell (``grader_workers``, for ``dispatch``) and grade
    passback's sender are found through ``app.extensions`` under ``service/queue``."""
    keys = set()
    for path in _queue_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            target = None
            if isinstance(node, ast.Subscript):
                target, key = node.value, node.slice
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in ("get", "setdefault", "pop") and node.args):
                target, key = node.func.value, node.args[0]
            if isinstance(target, ast.Attribute) and target.attr == "extensions":
                keys.add(ast.unparse(key))
    assert keys <= {"'grader_workers'", "passback.EXTENSION"}, keys


def test_no_module_global_holds_a_per_process_resource():
    """The one ``global`` under ``service/queue`` (and in the render child's module) is the
    Celery child's (its app, grading host and sender): a Celery process has no other place
    between its signals. (The grader's kits and pool: ``tests/test_kit_owner.py``.)"""
    found = {}
    for path in [*_queue_modules(), ROOT / "service" / "notebook_html.py"]:
        names = [name for node in ast.walk(ast.parse(path.read_text(), str(path)))
                 if isinstance(node, ast.Global) for name in node.names]
        if names:
            found[path.name] = names
    assert found == {"celery_worker.py": ["_child"]}


def test_take_results_are_the_strings_logs_metrics_and_celery_always_showed():
    """``Taken.result`` is an enum whose values are the strings written before it was one:
    a run's state, ``lost``, ``missing``, ``waiting for a GPU``."""
    results = {result.value for result in grading.TakeResult}
    assert results == {state.value for state in RunState} | {"lost", "missing",
                                                              "waiting for a GPU"}
    assert all(grading.TakeResult.of(state) == state for state in RunState)
    assert f"skipped ({grading.TakeResult.WAIT_GPU})" == "skipped (waiting for a GPU)"
