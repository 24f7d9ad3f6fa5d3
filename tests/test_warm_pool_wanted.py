"""The warm pool keeps kits only for the exercises it is told are wanted (``WarmPool`` given a
function): kits of an exercise that leaves the list are closed, a newly wanted exercise gets
its kits, and a function that fails leaves the last list in force.

The kits here are stand-ins at the seam (``grader.warm_pool.start_kit``): what a real kit
does, with the real sandbox, is ``tests/test_warm_pool.py``'s subject."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

import grader.warm_pool as warm_pool
from grader.config import GraderConfig
from grader.kit import KitKey
from grader.warm_pool import PoolSettings, WarmPool


@dataclass
class StandInKit:
    key: KitKey
    created: float = field(default_factory=time.monotonic)
    closed: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None

    def wait_ready(self, timeout: float, cancel: threading.Event | None = None) -> bool:
        return True

    def ready(self) -> bool:
        return not self.closed.is_set()

    def alive(self) -> bool:
        return not self.closed.is_set()

    def close(self) -> None:
        self.closed.set()


def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the pool did not get there"
        time.sleep(0.02)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, config: GraderConfig):
    made: list[StandInKit] = []

    def start_kit(exercise, config, sandbox, limits, *, key, **options) -> StandInKit:
        made.append(StandInKit(key))
        return made[-1]

    monkeypatch.setattr(warm_pool, "start_kit", start_kit)
    monkeypatch.setattr(warm_pool, "WANTED_INTERVAL", 0.0)
    monkeypatch.setattr(warm_pool, "FILL_INTERVAL", 0.02)
    monkeypatch.setattr(GraderConfig, "exercise", lambda self, exercise_id: SimpleNamespace(limits=None))
    pools: list[WarmPool] = []

    def start(wanted) -> tuple[WarmPool, list[StandInKit]]:
        pool = WarmPool(config, wanted, lambda cpus: None,  # type: ignore[arg-type,return-value]
                        settings=PoolSettings(size=1, min_available_bytes=0),
                        available_memory=lambda: None)
        pools.append(pool.start())
        return pool, made

    yield start
    for pool in pools:
        pool.close(timeout=5)


def ready_for(pool: WarmPool) -> list[str]:
    return sorted(kit.key.exercise for kit in pool.idle_kits() if kit.ready())


def test_kits_follow_the_wanted_exercises(started):
    wanted = ["week1"]
    pool, made = started(lambda: list(wanted))
    until(lambda: ready_for(pool) == ["week1"])
    wanted[:] = ["week1", "week2"]
    until(lambda: ready_for(pool) == ["week1", "week2"])
    wanted[:] = ["week2"]  # week 1 closed: its kit goes, week 2's stays
    until(lambda: ready_for(pool) == ["week2"])
    week1 = [kit for kit in made if kit.key.exercise == "week1"]
    assert week1 and all(kit.closed.is_set() for kit in week1)
    assert pool.stats().retired == 1
    assert pool.take("week1") is None
    assert pool.take("week2") is not None


def test_a_failing_function_keeps_the_last_list(started):
    answers: list[object] = [["week1"]]

    def wanted() -> list[str]:
        answer = answers[-1]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    pool, made = started(wanted)
    until(lambda: ready_for(pool) == ["week1"])
    answers.append(RuntimeError("the database does not answer"))
    time.sleep(0.3)  # many passes of the filler
    assert ready_for(pool) == ["week1"] and pool.exercises == ("week1",)
    answers.append([])
    until(lambda: ready_for(pool) == [])
    assert all(kit.closed.is_set() for kit in made)


def test_a_list_is_kept_as_given(started):
    pool, _ = started(["week1", "week2"])
    until(lambda: ready_for(pool) == ["week1", "week2"])
    assert pool.exercises == ("week1", "week2")
