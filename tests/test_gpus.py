"""GPUs without a GPU: the inventory read from ``nvidia-smi -L`` and from settings, the memory
check, the request the docker backend sends to Docker for a lent device, the spec's
``runtime.gpu`` and the ``gpu_out_of_memory`` status.

``nvidia-smi`` is faked only at its seam (:data:`grader.sandbox.gpus.CommandRunner`: argv in,
stdout out) with output in the shape the real tool prints; the parsing under it is the real
one. The Docker request is the ``create_container`` arguments the backend builds, with the SDK's
own ``create_host_config`` (an ``APIClient`` given its API version asks no daemon anything): a
container with a ``DeviceRequest`` cannot start on a host without the NVIDIA toolkit, so
``scripts/gpu-check`` covers the rest on a GPU host.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from grader.outcome import classify_run
from grader.report import Outcome
from grader.results import RunnerResult
from grader.sandbox.base import SandboxRequest, SandboxResult, SandboxUser
from grader.sandbox.gpus import (
    GpuError,
    GpuProbeError,
    NoDriver,
    NvidiaSmi,
    gpu_inventory,
    is_free,
    parse_device_ids,
    parse_device_list,
    run_command,
)
from grader.spec import SpecError, load_exercise

GPU_A = "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"
GPU_B = "GPU-0e6b2c11-7f3a-4c55-9d2e-1a2b3c4d5e6f"
MIG_1 = "MIG-c6d4f1ef-42e4-5de3-91c7-45d71585b4f1"
MIG_2 = "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb"
OLD_MIG = f"MIG-{GPU_B}/1/0"

SMI_L = f"""GPU 0: NVIDIA A100-SXM4-40GB (UUID: {GPU_A})
  MIG 1g.5gb      Device  0: (UUID: {MIG_1})
  MIG 1g.5gb      Device  1: (UUID: {MIG_2})
GPU 1: Tesla T4 (UUID: {GPU_B})
GPU 2: NVIDIA A30 (UUID: GPU-11111111-2222-3333-4444-555555555555)
  MIG 2g.12gb     Device  0: (UUID: {OLD_MIG})
"""


class FakeSmi:
    """The command seam: canned stdout per subcommand, and every argv it was given."""

    def __init__(self, listing: str = SMI_L, used: dict[str, str] | None = None):
        self.listing, self.used, self.calls = listing, used or {}, []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        if list(argv[1:]) == ["-L"]:
            return self.listing
        if "--query-gpu=memory.used" in argv:
            device = argv[argv.index("-i") + 1]
            if device not in self.used:
                raise GpuProbeError(f"No devices were found matching {device}")
            return self.used[device]
        raise AssertionError(f"unexpected nvidia-smi call {argv}")


def test_nvidia_smi_listing_lends_mig_instances_instead_of_their_gpu():
    devices = parse_device_list(SMI_L)
    assert [d.uuid for d in devices] == [MIG_1, MIG_2, GPU_B, OLD_MIG]
    assert devices[0].parent == GPU_A and devices[0].name == "MIG 1g.5gb"
    assert devices[2].parent is None and devices[2].name == "Tesla T4"
    assert parse_device_list("") == []


def test_an_unreadable_listing_is_an_error_not_an_empty_inventory():
    with pytest.raises(GpuProbeError, match="cannot read"):
        parse_device_list("GPU 0: Tesla T4 (UUID: not-a-uuid)\n")
    broken = NvidiaSmi(run=FakeSmi(listing="Failed to initialize NVML: Driver mismatch\n"))
    with pytest.raises(GpuProbeError):
        gpu_inventory("auto", broken)


def test_settings_name_uuids_never_indexes_nor_all():
    assert parse_device_ids(f" {GPU_A}, {MIG_1} {GPU_A}") == (GPU_A, MIG_1)
    assert parse_device_ids(OLD_MIG) == (OLD_MIG,)
    for bad in ("0", "all", "GPU-1234", f"{GPU_A},1", f"{GPU_A}x"):
        with pytest.raises(GpuError):
            parse_device_ids(bad)


def test_inventory_from_settings_or_nvidia_smi():
    smi = FakeSmi()
    assert gpu_inventory("", NvidiaSmi(run=smi)) == ()
    assert gpu_inventory(GPU_B, NvidiaSmi(run=smi)) == (GPU_B,)
    assert smi.calls == []  # named devices: nvidia-smi is not asked
    assert gpu_inventory("auto", NvidiaSmi(run=smi)) == (MIG_1, MIG_2, GPU_B, OLD_MIG)
    assert smi.calls == [["nvidia-smi", "-L"]]

    def no_driver(argv: Sequence[str]) -> str:
        raise NoDriver("nvidia-smi not found")

    assert gpu_inventory("auto", NvidiaSmi(run=no_driver)) == ()


def test_the_real_runner_without_nvidia_smi_says_no_driver():
    if shutil.which("nvidia-smi"):
        pytest.skip("this host has nvidia-smi")
    with pytest.raises(NoDriver, match="no NVIDIA driver"):
        run_command(["nvidia-smi", "-L"])
    assert gpu_inventory("auto") == ()
    assert NvidiaSmi().memory_used_mib(GPU_A) is None


def test_memory_is_read_per_device_and_unknown_is_not_free():
    smi = FakeSmi(used={GPU_A: "3\n", GPU_B: "5120\n", MIG_1: "N/A\n"})
    probe = NvidiaSmi(run=smi)
    assert probe.memory_used_mib(GPU_A) == 3
    assert smi.calls[-1] == ["nvidia-smi", "--query-gpu=memory.used",
                             "--format=csv,noheader,nounits", "-i", GPU_A]
    assert probe.memory_used_mib(GPU_B) == 5120
    assert probe.memory_used_mib(MIG_1) is None  # not a number
    assert probe.memory_used_mib(MIG_2) is None  # nvidia-smi failed
    assert is_free(3) and is_free(256) and not is_free(257) and not is_free(None)
    assert is_free(300, threshold_mib=512)


# --- the request sent to Docker ---------------------------------------------------------------

docker = pytest.importorskip("docker")


def _spec(sandbox, user: SandboxUser) -> dict:
    client = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    request = SandboxRequest(argv=["true"], workdir=None, user=user)
    return sandbox._spec(client, request, "owner-1")


def test_the_kernel_gets_exactly_the_leased_device_and_nothing_more():
    from grader.sandbox.docker import DockerSandbox
    from grader.sandbox.docker_image import ImageVariant

    sandbox = DockerSandbox(gpu_devices=(MIG_1,))
    assert sandbox.variant is ImageVariant.GPU  # tensorflow-cpu would not see the device
    spec = _spec(sandbox, SandboxUser.STUDENT)
    host = spec["host_config"]
    assert host["DeviceRequests"] == [{"Driver": "", "Count": 0, "DeviceIDs": [MIG_1],
                                       "Capabilities": [["gpu"]], "Options": {}}]
    assert host["CapDrop"] == ["ALL"]  # MKNOD among them: no device node can be made
    assert not host.get("CapAdd") and not host.get("Privileged")  # the SDK omits False
    assert not host.get("Devices")  # no /dev node passed through by path
    assert "no-new-privileges" in host["SecurityOpt"]
    assert spec["environment"]["NVIDIA_VISIBLE_DEVICES"] == MIG_1
    assert not any("all" == str(v).lower() for v in spec["environment"].values())
    assert ":gpu-" in spec["image"]


@pytest.mark.parametrize("devices", [(), (GPU_A,)])
def test_the_grader_sandboxes_and_cpu_runs_get_no_gpu(devices):
    from grader.sandbox.docker import DockerSandbox

    sandbox = DockerSandbox(gpu_devices=devices)
    users = [SandboxUser.GRADER] + ([SandboxUser.STUDENT] if not devices else [])
    for user in users:
        spec = _spec(sandbox, user)
        assert not spec["host_config"].get("DeviceRequests")
        assert spec["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
        assert spec["host_config"]["CapDrop"] == ["ALL"]


def test_a_device_is_named_by_uuid():
    from grader.sandbox.docker import DockerSandbox

    for bad in ("0", "all", "GPU-0"):
        with pytest.raises(GpuError):
            DockerSandbox(gpu_devices=(bad,))
    assert DockerSandbox(gpu_devices=(GPU_A,), image="custom:1").image_name == "custom:1"


# --- the spec and the status ------------------------------------------------------------------

def _exercise(tmp_path: Path, config, runtime_line: str | None):
    target = tmp_path / "exercises" / "chap06_cnn"
    shutil.copytree(config.exercises_root / "chap06_cnn", target)
    spec = target / "exercise.toml"
    if runtime_line is not None:
        spec.write_text(spec.read_text().replace("[runtime]\n", f"[runtime]\n{runtime_line}\n"))
    return load_exercise(target)


def test_runtime_gpu_in_the_spec(tmp_path, config):
    assert _exercise(tmp_path / "a", config, None).runtime.gpu == "none"
    for need in ("required", "preferred", "none"):
        assert _exercise(tmp_path / need, config, f'gpu = "{need}"').runtime.gpu == need
    with pytest.raises(SpecError, match=r"runtime\.gpu"):
        _exercise(tmp_path / "bad", config, 'gpu = "yes"')
    with pytest.raises(SpecError, match=r"runtime\.gpu"):
        _exercise(tmp_path / "bool", config, "gpu = true")


def _ended(**changes) -> SandboxResult:
    values = dict(exit_code=0, signal=None, wall_seconds=1.0, timed_out=False,
                  oom_killed=False, stdout=b"", stderr=b"")
    return SandboxResult(**{**values, **changes})


def _runner(*cells: dict) -> RunnerResult:
    return RunnerResult.model_validate({"version": 2, "status": "completed",
                                        "cells": list(cells)})


OOM = {"index": 7, "status": "error", "ename": "ResourceExhaustedError",
       "evalue": "OOM when allocating tensor with shape[60000,28,28,32] on "
                 "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc"}


def test_resource_exhausted_on_a_gpu_run_is_its_own_status():
    runner = _runner({"index": 3, "status": "ok"}, OOM, {"index": 9, "status": "error",
                                                         "ename": "NameError", "evalue": "x"})
    outcome = classify_run(_ended(), _ended(), runner, None, 9, 600.0, gpu=True)
    assert outcome.outcome is Outcome.GPU_OUT_OF_MEMORY
    assert outcome.cell_index == 7
    assert outcome.reason is not None
    assert "GPU" in outcome.reason.en and "cell 8" in outcome.reason.en
    assert "GPU" in outcome.reason.ja and outcome.reason.ja != outcome.reason.en
    xla = _runner({"index": 2, "status": "error", "ename": "XlaRuntimeError",
                   "evalue": "RESOURCE_EXHAUSTED: Out of memory while trying to allocate"})
    assert classify_run(_ended(), _ended(), xla, None, 2, 600.0,
                        gpu=True).outcome is Outcome.GPU_OUT_OF_MEMORY


def test_without_a_gpu_or_without_the_error_the_run_is_graded():
    oom = _runner(OOM)
    assert classify_run(_ended(), _ended(), oom, None, 7, 600.0).outcome is Outcome.GRADED
    other = _runner({"index": 7, "status": "error", "ename": "ValueError",
                     "evalue": "mentions ResourceExhausted later, not at the start"})
    assert classify_run(_ended(), _ended(), other, None, 7, 600.0,
                        gpu=True).outcome is Outcome.GRADED
    # the host's facts come first: a kernel killed by the memory cgroup stays out_of_memory
    assert classify_run(_ended(oom_killed=True), _ended(), oom, None, 7, 600.0,
                        gpu=True).outcome is Outcome.OUT_OF_MEMORY


def test_gpu_check_says_there_is_no_gpu_and_fails_here():
    if shutil.which("nvidia-smi"):
        pytest.skip("this host has nvidia-smi: scripts/gpu-check is the real check there")
    import subprocess

    script = Path(__file__).resolve().parent.parent / "scripts" / "gpu-check"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "GPUS"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "NO GPU on this host" in done.stdout
