"""The GPUs a grading host can lend to runs: the inventory, and whether a device's memory is free.

A device is named by its UUID: a whole GPU (``GPU-<uuid>``) or a MIG instance (``MIG-<uuid>``,
or ``MIG-GPU-<uuid>/<gi>/<ci>`` from drivers before R470). The inventory comes from settings
(:func:`parse_device_ids`) or from ``nvidia-smi -L`` (:func:`parse_device_list`); a GPU split into
MIG instances is lent instance by instance, never whole (its compute is in the instances).

Which run holds which device is the service's business (its ``gpu_leases`` table); the docker
backend hands the run's devices to Docker as a ``DeviceRequest`` naming those ids
(``DockerSandbox(gpu_devices=...)``). After a run, :meth:`NvidiaSmi.memory_used_mib` tells whether
the device's memory was given back (:func:`is_free`); a device still holding memory is not lent
again until it is.

Every call to ``nvidia-smi`` goes through one seam, a :data:`CommandRunner` (argv in, stdout
out): tests put canned ``nvidia-smi`` output there, and the parsing here is what runs on a GPU
host.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Runs a command and returns its standard output; raises :class:`GpuProbeError` on failure.
CommandRunner = Callable[[Sequence[str]], str]

_HEX_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: A device id as Docker's ``DeviceRequest`` and ``nvidia-smi -i`` take it.
DEVICE_ID = re.compile(rf"^(GPU-{_HEX_UUID}|MIG-{_HEX_UUID}|MIG-GPU-{_HEX_UUID}/\d+/\d+)$")
_GPU_LINE = re.compile(rf"^GPU (\d+): (.*?) \(UUID: (GPU-{_HEX_UUID})\)\s*$")
_MIG_LINE = re.compile(rf"^\s+MIG (.*?)\s+Device\s+(\d+): \(UUID: (MIG-(?:GPU-)?{_HEX_UUID}"
                       r"(?:/\d+/\d+)?)\)\s*$")
#: A device using at most this much memory (MiB) counts as free: the driver keeps a little.
FREE_MIB = 256
#: Seconds an ``nvidia-smi`` call may take.
SMI_TIMEOUT = 20.0


class GpuError(ValueError):
    """A device list that cannot be used (a malformed id in settings); the message says which."""


class GpuProbeError(RuntimeError):
    """``nvidia-smi`` is missing, failed, or said something this module cannot read."""


class NoDriver(GpuProbeError):
    """No ``nvidia-smi`` on this host: it has no NVIDIA driver, so no GPU to lend."""


@dataclass(frozen=True)
class GpuDevice:
    """One device a run can be given."""

    uuid: str
    #: What ``nvidia-smi -L`` calls it (``NVIDIA A100-SXM4-40GB``, ``MIG 1g.5gb``).
    name: str = ""
    #: The GPU a MIG instance belongs to; ``None`` for a whole GPU.
    parent: str | None = None


def check_device_id(value: str) -> str:
    """``value`` if it is a GPU or MIG UUID, else :class:`GpuError` naming it. Indexes (``0``)
    are refused: they change with ``CUDA_VISIBLE_DEVICES`` and across reboots, UUIDs do not."""
    if not DEVICE_ID.match(value):
        raise GpuError(f"{value!r} is not a GPU or MIG UUID (GPU-…, MIG-…; see nvidia-smi -L)")
    return value


def parse_device_ids(value: str) -> tuple[str, ...]:
    """Device ids from a setting: comma- or space-separated UUIDs, each once, in order."""
    ids: list[str] = []
    for part in re.split(r"[,\s]+", value.strip()):
        if part and check_device_id(part) not in ids:
            ids.append(part)
    return tuple(ids)


def parse_device_list(text: str) -> list[GpuDevice]:
    """The devices of ``nvidia-smi -L``: each GPU, or its MIG instances when it has any."""
    gpus: list[tuple[GpuDevice, list[GpuDevice]]] = []
    for line in text.splitlines():
        if gpu := _GPU_LINE.match(line):
            gpus.append((GpuDevice(uuid=gpu.group(3), name=gpu.group(2)), []))
        elif (mig := _MIG_LINE.match(line)) and gpus:
            parent = gpus[-1][0]
            gpus[-1][1].append(GpuDevice(uuid=mig.group(3), name=f"MIG {mig.group(1)}",
                                         parent=parent.uuid))
        elif line.strip():
            raise GpuProbeError(f"nvidia-smi -L: cannot read the line {line.strip()[:200]!r}")
    return [device for gpu, migs in gpus for device in (migs or [gpu])]


def parse_memory_used(text: str) -> int:
    """MiB from ``--query-gpu=memory.used --format=csv,noheader,nounits`` (one device's line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1 or not lines[0].isdigit():
        raise GpuProbeError(f"nvidia-smi: expected one number of MiB, got {text.strip()[:200]!r}")
    return int(lines[0])


def is_free(used_mib: int | None, threshold_mib: int = FREE_MIB) -> bool:
    """Whether a device using ``used_mib`` can be lent; an unknown use (``None``) is not free."""
    return used_mib is not None and used_mib <= threshold_mib


def run_command(argv: Sequence[str]) -> str:
    """The real :data:`CommandRunner`: the command's stdout, or :class:`GpuProbeError`."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=SMI_TIMEOUT,
                              check=False)
    except FileNotFoundError:
        raise NoDriver(f"{argv[0]} not found (no NVIDIA driver on this host)") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GpuProbeError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise GpuProbeError(f"{argv[0]} exited {done.returncode}: {said[0] if said else ''}"[:300])
    return done.stdout


@dataclass(frozen=True)
class NvidiaSmi:
    """What ``nvidia-smi`` says about this host's devices, through one :data:`CommandRunner`."""

    run: CommandRunner = run_command
    executable: str = "nvidia-smi"

    def devices(self) -> list[GpuDevice]:
        """Every device a run can be given (``nvidia-smi -L``); raises :class:`GpuProbeError`."""
        return parse_device_list(self.run([self.executable, "-L"]))

    def memory_used_mib(self, uuid: str) -> int | None:
        """MiB in use on ``uuid``; ``None`` when it cannot be read (the device is then not
        counted as free)."""
        try:
            return parse_memory_used(self.run([
                self.executable, "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                "-i", check_device_id(uuid)]))
        except GpuProbeError:
            return None


def gpu_inventory(setting: str, smi: NvidiaSmi | None = None) -> tuple[str, ...]:
    """The devices a worker may lend: ``""`` none, ``"auto"`` those ``nvidia-smi -L`` lists
    (none when there is no driver), else the UUIDs named. :class:`GpuError` for a bad id,
    :class:`GpuProbeError` when ``nvidia-smi`` is there but fails or cannot be read (a host
    with GPUs must not quietly lend none)."""
    setting = setting.strip()
    if not setting:
        return ()
    if setting.lower() == "auto":
        try:
            return tuple(device.uuid for device in (smi or NvidiaSmi()).devices())
        except NoDriver:
            return ()
    return parse_device_ids(setting)
