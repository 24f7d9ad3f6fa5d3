"""benchmarks/capacity.py: the queue it simulates, its inputs' schema, its verdicts."""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("capacity", ROOT / "benchmarks" / "capacity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["capacity"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


capacity = _load()
INPUTS = ROOT / "benchmarks" / "capacity_inputs.json"


def fixed(service: float, count: int = 1, warm: bool = False) -> Any:
    """Workers whose every run takes ``service`` seconds (a cold start of 1 s included)."""
    costs = capacity.Costs(cold=1.0, warm=0.0, train=service - 2.0, rest=1.0)
    return capacity.WorkerClass(costs, warm, count)


@pytest.fixture(scope="module")
def inputs() -> Any:
    return capacity.load_inputs(INPUTS)


def raw_inputs() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(INPUTS.read_text())
    return data


# --- the queue -------------------------------------------------------------------------------

def test_one_worker_follows_the_hand_computed_schedule() -> None:
    # service 5 s: 0 -> 5; 1 waits until 5 -> 10; 2 until 10 -> 15; 30 finds it idle -> 35
    assert capacity.simulate([0.0, 1.0, 2.0, 30.0], [fixed(5.0)]) == [5.0, 10.0, 15.0, 35.0]


def test_two_workers_take_the_oldest_run_when_idle() -> None:
    # 0 and 0 go at once; 1 waits for the first free worker (at 4); 2 for the second (at 4)
    assert capacity.simulate([0.0, 0.0, 1.0, 2.0], [fixed(4.0, count=2)]) == [4.0, 4.0, 8.0, 8.0]


def test_an_idle_worker_takes_the_run_even_when_a_busy_faster_one_would_finish_first() -> None:
    fast, slow = fixed(5.0), fixed(20.0)
    # both idle: the faster takes it, whatever the order of the classes
    assert capacity.simulate([0.0], [slow, fast]) == [5.0]
    assert capacity.simulate([0.0], [fast, slow]) == [5.0]
    # the fast one busy until 5: the idle slow one claims the run at 1 (as a worker does)
    assert capacity.simulate([0.0, 1.0], [slow, fast]) == [5.0, 21.0]
    # both busy: the first to be free takes it
    assert capacity.simulate([0.0, 0.0, 1.0], [slow, fast]) == [5.0, 20.0, 10.0]


def test_a_pooled_worker_makes_its_next_kernel_while_its_run_goes_on() -> None:
    costs = capacity.Costs(cold=5.0, warm=0.0, train=10.0, rest=1.0)
    # cold: every run 16 s; warm: every run 11 s, the next kernel ready 5 s after the claim
    assert capacity.simulate([0.0] * 3, [capacity.WorkerClass(costs, False, 1)]) == [16, 32, 48]
    assert capacity.simulate([0.0] * 3, [capacity.WorkerClass(costs, True, 1)]) == [11, 22, 33]
    # a run claimed before the kernel is ready waits only for what is left of it
    quick = capacity.Costs(cold=5.0, warm=0.0, train=1.0, rest=1.0)
    assert capacity.simulate([0.0, 0.0], [capacity.WorkerClass(quick, True, 1)]) == [2.0, 7.0]


def test_the_services_pool_warms_on_the_slot_between_runs() -> None:
    """``grader/warm_pool.py`` warms a slot's next kit only while no run holds the slot: a
    queue that never empties gains nothing, an idle slot's next run starts warm."""
    costs = capacity.Costs(cold=5.0, warm=0.0, train=10.0, rest=1.0, rest_warm=1.0)
    slot = capacity.WorkerClass(costs, True, 1, spare=False, warmup=5.0)
    # the first kit was warm before the window; then each run waits for the next warm-up
    assert capacity.simulate([0.0] * 3, [slot]) == [11.0, 27.0, 43.0]
    # a run uploaded after the warm-up finds its kit ready
    assert capacity.simulate([0.0, 100.0], [slot]) == [11.0, 111.0]


def test_one_worker_with_poisson_arrivals_matches_the_md1_queue() -> None:
    """M/D/1: mean wait in the queue = rho * S / (2 (1 - rho)) (Pollaczek-Khinchine)."""
    service, rate = 5.0, 0.12  # rho = 0.6: mean wait 3.75 s
    rng = random.Random(11)
    times, now = [], 0.0
    for _ in range(200_000):
        now += rng.expovariate(rate)
        times.append(now)
    verdicts = capacity.simulate(times, [fixed(service)])
    waits = [v - t - service for v, t in zip(verdicts, times, strict=True)]
    rho = rate * service
    expected = rho * service / (2 * (1 - rho))
    assert sum(waits) / len(waits) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("pattern", ["uniform", "rush", "last_minute"])
def test_doubling_the_workers_never_makes_a_verdict_later(pattern: str) -> None:
    for seed in range(5):
        rng = random.Random(seed)
        times = capacity.arrivals(pattern, 300, rng)
        jitter = [rng.uniform(0.5, 2.0) for _ in times]
        costs = capacity.Costs(cold=8.0, warm=0.3, train=30.0, rest=10.0)
        for n in (1, 3, 8, 20):
            few = capacity.simulate(times, [capacity.WorkerClass(costs, False, n)], jitter)
            more = capacity.simulate(times, [capacity.WorkerClass(costs, False, 2 * n)], jitter)
            assert all(m <= f + 1e-9 for m, f in zip(more, few, strict=True)), (seed, n)
            if n == 1:
                assert max(more) < max(few)  # and strictly helps a saturated queue


def test_a_warm_pool_saves_the_cold_start_and_never_delays(inputs: Any) -> None:
    times = capacity.arrivals("rush", 300, random.Random(3))
    costs = capacity.worker_costs(inputs, inputs.profiles["1g.10gb"], 1)
    cold = capacity.simulate(times, [capacity.WorkerClass(costs, False, 40)])
    warm = capacity.simulate(times, [capacity.WorkerClass(costs, True, 40)])
    assert all(w <= c + 1e-9 for w, c in zip(warm, cold, strict=True))
    # an idle pooled worker starts warm: the first run saves the start and the clean room's
    # TensorFlow import, exactly
    saved = costs.cold - costs.warm + costs.rest - costs.after(True)
    assert saved > costs.cold - costs.warm
    assert cold[0] - warm[0] == pytest.approx(saved)


def test_arrivals_stay_in_the_window_and_the_rush_is_late() -> None:
    for pattern in capacity.PATTERNS:
        times = capacity.arrivals(pattern, 300, random.Random(0))
        assert len(times) == 300 and times == sorted(times)
        assert 0.0 <= times[0] and times[-1] < capacity.WINDOW
    rush = capacity.arrivals("rush", 300, random.Random(0))
    assert sum(t >= capacity.WINDOW - 180 for t in rush) == 210
    with pytest.raises(ValueError, match="unknown arrival pattern"):
        capacity.arrivals("steady", 10, random.Random(0))


# --- verdicts --------------------------------------------------------------------------------

def test_one_whole_gpu_for_300_students_misses_the_ten_minutes(inputs: Any) -> None:
    result = capacity.run_config(inputs, capacity.Config("A100-80GB", 1), "uniform", range(2))
    assert not result.meets
    # about 300 runs of 30 s or more, one after another
    assert result.last > 300 * 25 and result.worst > capacity.VERDICT_WITHIN


def test_a_fast_enough_node_is_reported_as_meeting_it(inputs: Any) -> None:
    fast = copy.deepcopy(inputs)
    for key in ("train_cpu", "cleanroom", "bootstrap", "render"):
        fast.figures[key] = 1.0
    fast.figures["train_jitter"] = 0.0
    config = capacity.Config(None, 0, 8, cores=2)
    for pattern in capacity.PATTERNS:
        result = capacity.run_config(fast, config, pattern, range(2))
        assert result.meets, result
        assert result.last <= capacity.WINDOW + capacity.LAST_AFTER_WINDOW


def test_workers_to_spare_still_miss_when_a_run_outlasts_the_two_minutes(inputs: Any) -> None:
    """Each verdict within ten minutes of its upload is not enough: an upload at 9:59 must
    be graded by minute 12."""
    slow = copy.deepcopy(inputs)
    slow.figures["train_cpu"] = 200.0
    slow.figures["train_jitter"] = 0.0
    result = capacity.run_config(slow, capacity.Config(None, 0, 300, cores=2), "rush", range(2))
    assert result.worst <= capacity.VERDICT_WITHIN  # nobody waited: 300 workers
    assert result.last > capacity.WINDOW + capacity.LAST_AFTER_WINDOW
    assert not result.meets


def test_more_slices_never_finish_later_with_the_committed_inputs(inputs: Any) -> None:
    last = [capacity.run_config(inputs, capacity.Config("1g.10gb", n), "rush", range(3)).last
            for n in (14, 28, 56)]
    assert last[0] >= last[1] >= last[2]


def test_a_config_needs_a_device_the_node_has(inputs: Any) -> None:
    with pytest.raises(ValueError, match="the node has 8"):
        capacity.run_config(inputs, capacity.Config("A100-80GB", 9), "uniform", range(1))


def test_node_needs_count_slots_pool_and_host(inputs: Any) -> None:
    f = inputs.figures
    cold = f["kernel_memory"] + f["runner_memory"]  # the clean room comes after them
    kit = cold + f["cleanroom_memory"]  # a warm kit's clean room waits beside them
    cores, memory = capacity.needs(inputs, capacity.Config("1g.10gb", 10, cores=2, pool=4))
    assert cores == 10 * 2 + 4 + int(f["host_cores"])  # a spare core per pooled worker
    assert memory == pytest.approx(6 * cold + 4 * kit + 4 * f["kit_memory"] + f["host_memory"])
    cores, memory = capacity.needs(inputs, capacity.Config(None, 0, 10, pool=10,
                                                           pool_mode="slot"))
    assert cores == 10 + int(f["host_cores"])  # the slot warms its own kit
    assert memory == pytest.approx(10 * kit + f["host_memory"])


# --- inputs ----------------------------------------------------------------------------------

def test_the_committed_inputs_are_valid_and_sourced(inputs: Any) -> None:
    assert set(inputs.figures) == set(capacity.FIGURES)
    assert all(len(source) >= 10 for source in inputs.sources.values())
    assert inputs.profiles["1g.10gb"].per_gpu == 7 and inputs.gpus == 8


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["figures"].pop("cleanroom"), "missing key.*cleanroom"),
    (lambda d: d["figures"].__setitem__("extra", {}), "unknown key.*extra"),
    (lambda d: d["figures"]["render"].__setitem__("source", ""), "figures.render: every figure"),
    (lambda d: d["figures"]["render"].__setitem__("unit", "ms"), "unit 'ms', expected 's'"),
    (lambda d: d["figures"]["store"].__setitem__("value", -1), "figures.store: a non-negative"),
    (lambda d: d["figures"]["store"].__setitem__("value", "1"), "figures.store: a non-negative"),
    (lambda d: d["profiles"]["1g.10gb"].__setitem__("per_gpu", 0), "at least 1"),
    (lambda d: d["profiles"]["1g.10gb"].pop("slowdown"), "1g.10gb: missing key.*slowdown"),
    (lambda d: d["node"].__setitem__("gpus", 8.5), "node.gpus: a non-negative integer"),
    (lambda d: d.__setitem__("notes", ""), "unknown key.*notes"),
])
def test_inputs_that_break_the_schema_are_refused(change: Any, message: str) -> None:
    data = raw_inputs()
    change(data)
    with pytest.raises(capacity.InputsError, match=message):
        capacity.parse_inputs(data, "capacity_inputs.json")


def test_the_grading_bench_replaces_this_machines_phases(inputs: Any, tmp_path: Path) -> None:
    runs = [{"sandbox": 60.0, "kernel_start": 1.0, "bootstrap": 4.0, "cells": 50.0,
             "exports": 1.0, "cleanroom": 6.0, "scoring": 0.0, "total": 67.0}]
    path = tmp_path / "grading.json"
    path.write_text(json.dumps({"runs": runs}))
    updated = capacity.with_grading_bench(inputs, path)
    assert updated.figures["sandbox_overhead"] == pytest.approx(4.0)
    assert updated.figures["train_cpu"] == pytest.approx(50.0 - inputs.figures["cells_other"])
    assert updated.figures["host_steps"] == pytest.approx(1.0)
    assert str(path) in updated.sources["cleanroom"]
    assert updated.figures["gpu_compute"] == inputs.figures["gpu_compute"]


def test_a_grading_bench_file_of_another_shape_is_refused(inputs: Any, tmp_path: Path) -> None:
    path = tmp_path / "grading.json"
    path.write_text(json.dumps({"runs": [{"total": 1.0}]}))
    with pytest.raises(capacity.InputsError, match=r"not benchmarks/grading\.py's results"):
        capacity.with_grading_bench(inputs, path)
    path.write_text(json.dumps({"runs": []}))
    assert capacity.with_grading_bench(inputs, path) is inputs


def test_the_cli_is_deterministic_and_writes_json(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    outs = []
    for name in ("a.json", "b.json"):
        assert capacity.main(["--no-bench", "--seeds", "2", "--json", str(tmp_path / name)]) == 0
        outs.append((tmp_path / name).read_text())
    assert outs[0] == outs[1]
    data = json.loads(outs[0])
    assert data["definition"]["last_by"] == capacity.WINDOW + capacity.LAST_AFTER_WINDOW
    assert {r["pattern"] for r in data["results"]} == set(capacity.PATTERNS)
    assert "fewest workers" in capsys.readouterr().out


def test_the_cli_refuses_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert capacity.main(["--inputs", str(bad)]) == 2
    assert "missing key" in capsys.readouterr().err
