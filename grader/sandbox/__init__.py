"""Sandbox backends, chosen by name from configuration.

* ``bwrap``: :class:`BubblewrapSandbox`, namespaces + an unprivileged user + a per-run cgroup
  + a seccomp filter.
* ``docker``: :class:`~grader.sandbox.docker.DockerSandbox`, a fresh container of the runtime
  image per run (imported on first use: the Docker SDK is the ``docker`` extra).
* ``unsafe``: :class:`UnsafeLocalSandbox`, no isolation, for development only.

A backend runs a :class:`SandboxRequest` to its end (``run``) or starts it (``start``, giving a
:class:`SandboxRun`) so that another request can join its network (``join_network``) as
another host user (:class:`SandboxUser`).

:class:`CpuSlots` hands out the host's CPUs, one slot per concurrent run (``cpus``); the GPUs a
worker may lend are read from ``nvidia-smi`` (``gpus``: :func:`gpu_inventory`, :func:`is_free`).

:func:`create_run_dir` makes a submission's private directory for its sandboxes' work
directories. :func:`sweep_leftovers` removes what graders killed with SIGKILL left on the host
(run cgroups, staging and run directories); every bubblewrap run calls it first.

The docker backend's containers left by a killed grader are removed by its watchdog and by
:func:`~grader.sandbox.docker_reaper.reap_containers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grader.sandbox.base import (
    LineCallback,
    Mount,
    NetworkPeer,
    Sandbox,
    SandboxError,
    SandboxRequest,
    SandboxResult,
    SandboxRun,
    SandboxUser,
)
from grader.sandbox.bwrap import BubblewrapSandbox, sweep_leftovers
from grader.sandbox.cgroups import CgroupError
from grader.sandbox.cpus import CpuSlots, runs_per_host, usable_cpus
from grader.sandbox.gpus import GpuProbeError, NvidiaSmi, gpu_inventory, is_free
from grader.sandbox.staging import create_run_dir
from grader.sandbox.unsafe import UnsafeLocalSandbox, UnsafeSandboxWarning


def _docker_sandbox(**options: Any) -> Sandbox:
    from grader.sandbox.docker import DockerSandbox

    return DockerSandbox(**options)


#: Backend name -> factory taking the backend's options as keyword arguments.
BACKENDS: dict[str, Callable[..., Sandbox]] = {
    "bwrap": BubblewrapSandbox,
    "docker": _docker_sandbox,
    "unsafe": UnsafeLocalSandbox,
}


def get_sandbox(name: str, **options: Any) -> Sandbox:
    """The backend called ``name``, built with ``options`` (its documented fields)."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown sandbox backend {name!r}; known: {known}") from None
    return factory(**options)


__all__ = [
    "BACKENDS",
    "BubblewrapSandbox",
    "CgroupError",
    "CpuSlots",
    "GpuProbeError",
    "LineCallback",
    "Mount",
    "NetworkPeer",
    "NvidiaSmi",
    "Sandbox",
    "SandboxError",
    "SandboxRequest",
    "SandboxResult",
    "SandboxRun",
    "SandboxUser",
    "UnsafeLocalSandbox",
    "UnsafeSandboxWarning",
    "create_run_dir",
    "get_sandbox",
    "gpu_inventory",
    "is_free",
    "runs_per_host",
    "sweep_leftovers",
    "usable_cpus",
]
