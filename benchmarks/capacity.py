"""``make bench`` (capacity): can one 8-GPU node grade a course's 300 notebooks in ten minutes?

A discrete-event simulation of the grading queue, fed with figures measured on this machine
(``benchmarks/grading.py``'s phases; the latest ``var/bench/grading.json`` replaces the committed
ones when present) and GPU figures estimated from publications, each with its source in
``benchmarks/capacity_inputs.json``. ``docs/capacity.md`` explains the model and its results.

The model, in short: 300 uploads arrive within ten minutes (uniformly, in a deadline rush, or half
in the last minute; seeded). Each worker holds a device (a whole A100, a MIG slice, or none) and a
CPU slot, and takes the oldest queued run when it is idle, as ``service.queue`` does; it keeps its
device until the run's result is stored. A run costs: the claim, a start (cold: the sandboxes, the
kernel, TensorFlow's import, the GPU's context; warm: a kernel made beforehand is handed over),
the notebook's cells (the training on the device, or on the CPU), the exports, the clean room,
the host's steps, the rendering of the executed notebook and the store. A warm kit (kernel,
runner after the bootstrap, clean room with TensorFlow imported) saves the start and the clean
room's import. Two pools: ``slot``, the service's (``grader/warm_pool.py``: a worker's CPU slot
warms its next kit while no run holds it; GPU runs are not warmed), and ``spare``, a pool the
service does not have: each GPU worker makes its next kit on a core of its own while its run goes
on (a kit per device, because Docker gives a container its GPU when the container is made).

Met means (``meets``): in every pattern and seed, each verdict within ``VERDICT_WITHIN`` seconds of
its upload and the last verdict within ``LAST_AFTER_WINDOW`` seconds of the window's end.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUTS = Path(__file__).resolve().with_name("capacity_inputs.json")
GRADING_JSON = ROOT / "var" / "bench" / "grading.json"

STUDENTS = 300
WINDOW = 600.0
#: Each verdict at most this many seconds after its upload ...
VERDICT_WITHIN = 600.0
#: ... and the last one at most this many seconds after the window closes (minute 12).
LAST_AFTER_WINDOW = 120.0
PATTERNS = ("uniform", "rush", "last_minute")

#: Every figure the inputs file must hold, with its unit.
FIGURES = {
    "sandbox_overhead": "s", "kernel_start": "s", "bootstrap": "s", "cells_other": "s",
    "train_cpu": "s", "exports": "s", "cleanroom": "s", "host_steps": "s", "claim": "s",
    "render": "s", "store": "s", "docker_extra_per_sandbox": "s", "warm_handover": "s",
    "one_core_factor": "x", "one_core_train_factor": "x", "gpu_compute": "s", "gpu_host": "s",
    "gpu_init": "s", "train_jitter": "sd", "cleanroom_import": "s", "tf_import": "s",
    "kernel_memory": "GiB",
    "runner_memory": "GiB", "cleanroom_memory": "GiB", "kit_memory": "GiB",
    "host_cores": "cores", "host_memory": "GiB",
}
PROFILE_KEYS = {"per_gpu", "sms", "slowdown", "source"}
TOP_KEYS = {"about", "figures", "profiles", "node"}
NODE_KEYS = {"gpus", "whole_sms", "source"}


class InputsError(ValueError):
    """The inputs file is not what the simulation reads; the message names the file and key."""


@dataclass(frozen=True)
class Profile:
    """A device a worker holds: a whole GPU or one MIG profile."""

    name: str
    per_gpu: int
    sms: int
    slowdown: float  # training's compute time against a whole GPU's (published figure)


@dataclass(frozen=True)
class Inputs:
    figures: dict[str, float]
    sources: dict[str, str]
    profiles: dict[str, Profile]
    gpus: int
    whole_sms: int


def _positive(value: Any, where: str, *, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value < 0:
        raise InputsError(f"{where}: a non-negative {'integer' if integer else 'number'} is "
                          f"needed, not {value!r}")
    return float(value)


def _keys(data: Any, expected: set[str], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputsError(f"{where}: an object is needed")
    unknown, missing = set(data) - expected, expected - set(data)
    if unknown:
        raise InputsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if missing:
        raise InputsError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    return data


def _source(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value.strip()) < 10:
        raise InputsError(f"{where}: every figure needs its source (which bench or publication)")
    return value


def parse_inputs(data: Any, name: str = "inputs") -> Inputs:
    """Validate the inputs file's content: every figure present, with its unit and source."""
    top = _keys(data, TOP_KEYS, name)
    figures = _keys(top["figures"], set(FIGURES), f"{name}: figures")
    values, sources = {}, {}
    for key, unit in FIGURES.items():
        where = f"{name}: figures.{key}"
        figure = _keys(figures[key], {"value", "unit", "source"}, where)
        if figure["unit"] != unit:
            raise InputsError(f"{where}: unit {figure['unit']!r}, expected {unit!r}")
        values[key] = _positive(figure["value"], where)
        sources[key] = _source(figure["source"], where)
    profiles: dict[str, Profile] = {}
    if not isinstance(top["profiles"], dict) or not top["profiles"]:
        raise InputsError(f"{name}: profiles: at least one device profile is needed")
    for key, raw in top["profiles"].items():
        where = f"{name}: profiles.{key}"
        profile = _keys(raw, PROFILE_KEYS, where)
        per_gpu = int(_positive(profile["per_gpu"], f"{where}.per_gpu", integer=True))
        sms = int(_positive(profile["sms"], f"{where}.sms", integer=True))
        if per_gpu < 1 or sms < 1:
            raise InputsError(f"{where}: per_gpu and sms must be at least 1")
        sources[f"profile {key}"] = _source(profile["source"], where)
        profiles[key] = Profile(key, per_gpu, sms, _positive(profile["slowdown"],
                                                               f"{where}.slowdown"))
    node = _keys(top["node"], NODE_KEYS, f"{name}: node")
    sources["node"] = _source(node["source"], f"{name}: node")
    return Inputs(values, sources, profiles,
                  int(_positive(node["gpus"], f"{name}: node.gpus", integer=True)),
                  int(_positive(node["whole_sms"], f"{name}: node.whole_sms", integer=True)))


def load_inputs(path: Path) -> Inputs:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputsError(f"{path}: {exc}") from exc
    return parse_inputs(data, str(path))


def with_grading_bench(inputs: Inputs, path: Path) -> Inputs:
    """The inputs with this machine's phases taken from ``benchmarks/grading.py``'s latest JSON
    (medians over its runs). The training is the cells less ``cells_other``."""
    try:
        runs = json.loads(path.read_text()).get("runs") or []
        phase = {key: statistics.median(float(r[key]) for r in runs)
                 for key in ("sandbox", "kernel_start", "bootstrap", "cells", "exports",
                             "cleanroom", "total")} if runs else {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputsError(f"{path}: not benchmarks/grading.py's results ({exc!r})") from exc
    if not phase:
        return inputs
    # A cold run imports TensorFlow on the notebook's first import of it (grader/kernel/
    # bootstrap.py), so the bench's cells hold that import: it belongs to the start, which a
    # GPU run pays whatever its training costs and a warm kit has paid before the upload.
    lazy = phase["bootstrap"] < inputs.figures["tf_import"] / 2
    moved = inputs.figures["tf_import"] if lazy else 0.0
    measured = {
        "sandbox_overhead": phase["sandbox"] - phase["kernel_start"] - phase["bootstrap"]
        - phase["cells"] - phase["exports"],
        "kernel_start": phase["kernel_start"], "bootstrap": phase["bootstrap"] + moved,
        "train_cpu": phase["cells"] - inputs.figures["cells_other"] - moved,
        "exports": phase["exports"], "cleanroom": phase["cleanroom"],
        "host_steps": phase["total"] - phase["sandbox"] - phase["cleanroom"],
    }
    note = f"measured: {path} (benchmarks/grading.py, {len(runs)} run(s), median)"
    figures = {**inputs.figures, **{k: max(0.0, v) for k, v in measured.items()}}
    sources = {**inputs.sources, **dict.fromkeys(measured, note)}
    return Inputs(figures, sources, inputs.profiles, inputs.gpus, inputs.whole_sms)


@dataclass(frozen=True)
class Costs:
    """Seconds of one run on a kind of worker: start cold or warm, training, and the rest
    (``rest_warm`` with a warm kit: its clean room has imported TensorFlow)."""

    cold: float
    warm: float
    train: float
    rest: float
    rest_warm: float = -1.0  # below 0: as ``rest``

    def after(self, warm: bool) -> float:
        return self.rest_warm if warm and self.rest_warm >= 0 else self.rest


def worker_costs(inputs: Inputs, profile: Profile | None, cores: int,
                 mig_scaling: str = "published") -> Costs:
    """One run's phases on a worker holding ``profile`` (None: the CPU alone) and ``cores``."""
    f = inputs.figures
    slower = 1.0 if cores >= 2 else f["one_core_factor"]
    docker = f["docker_extra_per_sandbox"]
    cold = (f["sandbox_overhead"] + f["kernel_start"] + f["bootstrap"]) * slower + 2 * docker
    if profile is None:
        train = f["train_cpu"] * (1.0 if cores >= 2 else f["one_core_train_factor"])
    else:
        cold += f["gpu_init"]
        scale = profile.slowdown if mig_scaling == "published" else inputs.whole_sms / profile.sms
        train = f["gpu_compute"] * scale + f["gpu_host"]
    rest = ((f["cells_other"] + f["exports"] + f["cleanroom"] + f["host_steps"]) * slower
            + docker + f["claim"] + f["render"] + f["store"])
    return Costs(cold, min(f["warm_handover"], cold), train, rest,
                 max(0.0, rest - f["cleanroom_import"] * slower))


@dataclass(frozen=True)
class Config:
    """Workers on one node: ``gpu_workers`` each holding one ``profile`` device, ``cpu_workers``
    with none, ``cores`` CPUs per run, and ``pool`` workers (GPU ones first) keeping a warm kit,
    made on a ``spare`` core during the run or on the worker's ``slot`` between runs."""

    profile: str | None
    gpu_workers: int
    cpu_workers: int = 0
    cores: int = 1
    pool: int = 0
    pool_mode: str = "spare"

    @property
    def workers(self) -> int:
        return self.gpu_workers + self.cpu_workers

    def label(self) -> str:
        devices = f"{self.gpu_workers} x {self.profile}" if self.gpu_workers else ""
        cpus = f"{self.cpu_workers} x CPU" if self.cpu_workers else ""
        return " + ".join(p for p in (devices, cpus) if p)


def arrivals(pattern: str, n: int, rng: random.Random, window: float = WINDOW) -> list[float]:
    """Upload times in ``[0, window)``: ``uniform``; ``rush`` (70 % in the last 3 minutes);
    ``last_minute`` (half in the last minute)."""
    if pattern == "uniform":
        times = [rng.uniform(0, window) for _ in range(n)]
    elif pattern in ("rush", "last_minute"):
        share, tail = (0.7, 180.0) if pattern == "rush" else (0.5, 60.0)
        late = round(n * share)
        times = ([rng.uniform(0, window - tail) for _ in range(n - late)]
                 + [rng.uniform(window - tail, window) for _ in range(late)])
    else:
        raise ValueError(f"unknown arrival pattern {pattern!r}")
    return sorted(times)


@dataclass(frozen=True)
class WorkerClass:
    """``count`` workers that cost the same; ``warm``: each keeps a warm kit, made from the
    claim on (``spare``: a core of its own) or, ``spare=False``, from the end of its run on (the
    service's pool: the slot warms it while no run holds the slot, ``warmup`` seconds)."""

    costs: Costs
    warm: bool
    count: int
    spare: bool = True
    warmup: float = -1.0  # below 0: ``costs.cold``


def simulate(times: Sequence[float], classes: Sequence[WorkerClass],
             jitter: Sequence[float] | None = None) -> list[float]:
    """Each run's verdict time. Runs are taken oldest first; when several workers are idle at
    a run's start, the one that would finish it first takes it (a GPU over the CPU, a warm
    kernel over a cold start). ``jitter`` multiplies each run's training time."""
    heaps: list[list[tuple[float, float, int]]] = [
        [(0.0, -math.inf, i) for i in range(c.count)] for c in classes]
    for heap in heaps:
        heapq.heapify(heap)
    verdicts = []
    for j, arrived in enumerate(times):
        free = [heap[0][0] for heap in heaps if heap]  # each class's first free worker
        if not free:
            raise ValueError("no worker")
        start = max(arrived, min(free))
        best: tuple[float, int, float] | None = None
        for k, (heap, cls) in enumerate(zip(heaps, classes, strict=True)):
            if not heap or heap[0][0] > start:
                continue
            ready = heap[0][1] if cls.warm else math.inf
            c = cls.costs
            # a spare kit can be passed over for a cold start; the slot's cannot (it holds
            # the slot while it warms up)
            warm = cls.warm and (not cls.spare or ready - start + c.warm < c.cold)
            begin = max(0.0, ready - start) + c.warm if warm else c.cold
            done = start + begin + c.train * (jitter[j] if jitter else 1.0) + c.after(warm)
            if best is None or done < best[0]:
                best = (done, k, start)
        assert best is not None
        done, k, claimed = best
        cls = classes[k]
        warmup = cls.warmup if cls.warmup >= 0 else cls.costs.cold
        next_ready = claimed + warmup if cls.spare else done + warmup
        _, _, index = heapq.heappop(heaps[k])
        heapq.heappush(heaps[k], (done, next_ready, index))
        verdicts.append(done)
    return verdicts


def worker_classes(inputs: Inputs, config: Config, mig_scaling: str) -> list[WorkerClass]:
    if config.gpu_workers:
        if config.profile not in inputs.profiles:
            raise ValueError(f"unknown device profile {config.profile!r}")
        profile = inputs.profiles[config.profile]
        if config.gpu_workers > inputs.gpus * profile.per_gpu:
            raise ValueError(f"{config.gpu_workers} workers, but the node has "
                             f"{inputs.gpus * profile.per_gpu} {profile.name} devices")
    gpu_pool = min(config.pool, config.gpu_workers)
    cpu_pool = min(config.pool - gpu_pool, config.cpu_workers)
    if config.pool_mode not in ("spare", "slot"):
        raise ValueError(f"unknown pool mode {config.pool_mode!r}")
    parts = []
    if config.gpu_workers:
        gpu = worker_costs(inputs, inputs.profiles[str(config.profile)], config.cores,
                           mig_scaling)
        parts += [(gpu, True, gpu_pool), (gpu, False, config.gpu_workers - gpu_pool)]
    if config.cpu_workers:
        cpu = worker_costs(inputs, None, config.cores, mig_scaling)
        parts += [(cpu, True, cpu_pool), (cpu, False, config.cpu_workers - cpu_pool)]
    slower = 1.0 if config.cores >= 2 else inputs.figures["one_core_factor"]
    warmup = inputs.figures["cleanroom_import"] * slower  # the kit's clean room too
    return [WorkerClass(c, warm, n, config.pool_mode == "spare", c.cold + warmup)
            for c, warm, n in parts if n > 0]


@dataclass
class Result:
    config: Config
    pattern: str
    p50: float
    p95: float
    worst: float  # longest time to verdict, any seed
    last: float  # the last verdict, latest seed
    meets: bool
    cores: int
    memory_gib: float


def needs(inputs: Inputs, config: Config) -> tuple[int, float]:
    """The node's CPU cores and memory (GiB) for ``config``: each run at its sandboxes' limits
    (a warm kit's clean room waits beside its kernel and runner; a cold run's starts after
    them), each spare kit at what a waiting kit holds (``kit_memory``, as the pool counts it)."""
    f = inputs.figures
    cold = max(f["kernel_memory"] + f["runner_memory"], f["cleanroom_memory"])
    kit = f["kernel_memory"] + f["runner_memory"] + f["cleanroom_memory"]
    spare = config.pool if config.pool_mode == "spare" else 0
    cores = config.workers * config.cores + spare + int(f["host_cores"])
    memory = ((config.workers - config.pool) * cold + config.pool * kit
              + spare * f["kit_memory"] + f["host_memory"])
    return cores, memory


def run_config(inputs: Inputs, config: Config, pattern: str, seeds: Sequence[int],
               mig_scaling: str = "published", students: int = STUDENTS) -> Result:
    classes = worker_classes(inputs, config, mig_scaling)
    waits: list[float] = []
    worst = last = 0.0
    for seed in seeds:
        rng = random.Random(f"{pattern}:{seed}")
        times = arrivals(pattern, students, rng)
        sd = inputs.figures["train_jitter"]
        jitter = [math.exp(rng.gauss(0.0, sd)) for _ in times] if sd else None
        verdicts = simulate(times, classes, jitter)
        seed_waits = [v - t for v, t in zip(verdicts, times, strict=True)]
        waits += seed_waits
        worst, last = max(worst, *seed_waits), max(last, *verdicts)
    quantiles = statistics.quantiles(waits, n=100, method="inclusive")
    meets = worst <= VERDICT_WITHIN and last <= WINDOW + LAST_AFTER_WINDOW
    cores, memory = needs(inputs, config)
    return Result(config, pattern, quantiles[49], quantiles[94], worst, last, meets, cores,
                  memory)


def meets_all(inputs: Inputs, config: Config, seeds: Sequence[int], mig_scaling: str) -> bool:
    return all(run_config(inputs, config, p, seeds, mig_scaling).meets for p in PATTERNS)


def fewest(inputs: Inputs, make: Callable[[int], Config], top: int, seeds: Sequence[int],
           mig_scaling: str) -> int | None:
    """The fewest workers ``n`` (1..top) for which ``make(n)`` meets the goal in every pattern
    (bisection: more workers never finish later, ``tests/test_capacity.py``); None if even
    ``top`` misses."""
    if not meets_all(inputs, make(top), seeds, mig_scaling):
        return None
    low, high = 0, top  # low misses (or is none), high meets
    while high - low > 1:
        mid = (low + high) // 2
        if meets_all(inputs, make(mid), seeds, mig_scaling):
            high = mid
        else:
            low = mid
    return high


@dataclass
class Minimum:
    devices: str
    cores: int
    pool: str
    fewest: int | None
    of: int
    node_cores: int | None = None
    node_memory_gib: float | None = None
    per_run_seconds: dict[str, float] = field(default_factory=dict)


def default_configs(inputs: Inputs) -> list[Config]:
    configs = []
    for name, profile in inputs.profiles.items():
        n = inputs.gpus * profile.per_gpu
        configs += [Config(name, n, cores=c, pool=p) for c in (1, 2) for p in (0, n)]
    configs += [Config(None, 0, n, cores=2, pool=p, pool_mode="slot")
                for n in (32, 64) for p in (0, n)]
    return configs


def minimums(inputs: Inputs, seeds: Sequence[int], mig_scaling: str) -> list[Minimum]:
    rows = []
    for name, profile in inputs.profiles.items():
        top = inputs.gpus * profile.per_gpu
        for cores in (1, 2):
            for pooled in (False, True):
                def make(n: int, name: str = name, cores: int = cores,
                         pooled: bool = pooled) -> Config:
                    return Config(name, n, cores=cores, pool=n if pooled else 0)

                rows.append(_minimum(inputs, f"{profile.name} ({top} on the node)", cores,
                                     pooled, make, top, seeds, mig_scaling))
    for cores in (1, 2):
        for pooled in (False, True):
            def make_cpu(n: int, cores: int = cores, pooled: bool = pooled) -> Config:
                return Config(None, 0, n, cores=cores, pool=n if pooled else 0,
                              pool_mode="slot")

            rows.append(_minimum(inputs, "CPU only", cores, pooled, make_cpu, 256, seeds,
                                 mig_scaling))
    return rows


def _minimum(inputs: Inputs, devices: str, cores: int, pooled: bool,
             make: Callable[[int], Config], top: int,
             seeds: Sequence[int], mig_scaling: str) -> Minimum:
    n = fewest(inputs, make, top, seeds, mig_scaling)
    config = make(n or top)
    costs = worker_classes(inputs, config, mig_scaling)[0].costs
    start = costs.warm if pooled else costs.cold
    rest = costs.after(pooled)
    row = Minimum(devices, cores, f"all ({config.pool_mode})" if pooled else "none", n, top,
                  per_run_seconds={"start": round(start, 1), "train": round(costs.train, 1),
                                   "rest": round(rest, 1),
                                   "total": round(start + costs.train + rest, 1)})
    if n is not None:
        row.node_cores, row.node_memory_gib = needs(inputs, config)
    return row


def print_results(results: list[Result], mins: list[Minimum]) -> None:
    print(f"{STUDENTS} uploads in {WINDOW / 60:.0f} minutes; met: every verdict within "
          f"{VERDICT_WITHIN / 60:.0f} min of its upload and the last by minute "
          f"{(WINDOW + LAST_AFTER_WINDOW) / 60:.0f}, in every seed\n")
    print(f"{'workers':<18}{'cores':>6}{'pool':>10}  {'arrivals':<12}{'p50 s':>7}{'p95 s':>7}"
          f"{'max s':>7}{'last s':>8}  {'met':<4}{'node cores':>11}{'GiB':>6}")
    for r in results:
        c = r.config
        pool = f"{c.pool} {c.pool_mode}" if c.pool else "0"
        print(f"{c.label():<18}{c.cores:>6}{pool:>10}  {r.pattern:<12}{r.p50:>7.0f}"
              f"{r.p95:>7.0f}{r.worst:>7.0f}{r.last:>8.0f}  {'yes' if r.meets else 'NO':<4}"
              f"{r.cores:>11}{r.memory_gib:>6.0f}")
    print("\nfewest workers meeting the goal in every arrival pattern (a run's seconds: "
          "start + training + rest)")
    for m in mins:
        secs = m.per_run_seconds
        found = (f"{m.fewest:>3} of {m.of:<3} node {m.node_cores} cores, "
                 f"{m.node_memory_gib:.0f} GiB" if m.fewest else f"none of {m.of}")
        print(f"  {m.devices:<24} cores {m.cores}  pool {m.pool:<12} {found:<34} "
              f"run {secs['start']:.1f} + {secs['train']:.1f} + {secs['rest']:.1f} "
              f"= {secs['total']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/capacity.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, default=DEFAULT_INPUTS)
    parser.add_argument("--grading-json", type=Path, default=GRADING_JSON,
                        help="benchmarks/grading.py's results, used instead of the inputs' "
                             "phases when present")
    parser.add_argument("--no-bench", action="store_true",
                        help="only the inputs file, even when --grading-json exists")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per arrival pattern")
    parser.add_argument("--mig-scaling", choices=("published", "sm"), default="published",
                        help="a slice's training compute: the profile's published slowdown, "
                             "or the whole GPU's SMs over the slice's (pessimistic)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    try:
        inputs = load_inputs(args.inputs)
    except InputsError as exc:
        print(f"capacity: {exc}", file=sys.stderr)
        return 2
    if not args.no_bench and args.grading_json.is_file():
        try:
            inputs = with_grading_bench(inputs, args.grading_json)
            print(f"this machine's phases from {args.grading_json}")
        except InputsError as exc:
            print(f"capacity: ignored, the inputs file's phases are used: {exc}",
                  file=sys.stderr)
    seeds = range(args.seeds)
    results = [run_config(inputs, config, pattern, seeds, args.mig_scaling)
               for config in default_configs(inputs) for pattern in PATTERNS]
    mins = minimums(inputs, seeds, args.mig_scaling)
    print(f"MIG scaling: {args.mig_scaling}")
    print_results(results, mins)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "definition": {"students": STUDENTS, "window": WINDOW,
                           "verdict_within": VERDICT_WITHIN,
                           "last_by": WINDOW + LAST_AFTER_WINDOW, "seeds": args.seeds,
                           "patterns": list(PATTERNS), "mig_scaling": args.mig_scaling},
            "figures": inputs.figures, "sources": inputs.sources,
            "results": [asdict(r) for r in results],
            "fewest": [asdict(m) for m in mins]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
