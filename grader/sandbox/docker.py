"""The docker backend: each run in a fresh container of the runtime image, from outside.

One request, one container (Docker SDK for Python, low-level ``APIClient``), made so:

* the image of this checkout (:func:`~grader.sandbox.docker_image.image_tag`: Python,
  TensorFlow, ipykernel and the in-sandbox code, tagged with a hash of them);
* ``network_mode="none"`` (loopback only), or ``container:<id>`` of the run it joins
  (``join_network``): only the network is shared, every other namespace is its own;
* a host user that owns nothing: 65534 for the student's code, 65533 for the grader's (as with
  bubblewrap; no user namespace, so the ids inside are the host's), every capability dropped,
  ``no-new-privileges``, Docker's default seccomp profile, docker-init as PID 1;
* a read-only root; size-limited tmpfs (``limits.scratch_bytes``) for ``/tmp``, the home,
  ``/dev/shm`` and a work directory that is not on the host;
* only the job's own files: its work directory (given to the run's user, mode 0700) and the
  request's mounts, except the in-sandbox code, which the image carries (same bytes: the tag is
  their hash);
* memory with swap equal to memory (no swap), pids, a CPU quota (``cpu_quota`` per
  ``cpu_period``: the daemon can change that quota later, not one given as ``nano_cpus``), the
  CPUs of its slot (``cpuset_cpus``), ulimits (CPU seconds, file size, no core files);
* with a loan of idle CPUs (``cpu_loan``), the CPUs it borrows too, and the quota sized to all
  of them: the container is made on its slot and widened through the daemon before it starts
  (:meth:`~grader.sandbox.cpus.CpuLoan.confine`, which records it), so a run that leases a
  borrowed CPU narrows it the same way (:mod:`grader.sandbox.loan_records`);
* the wall-clock limit enforced from outside by killing the container, output capped while it
  streams, ``OOMKilled`` read from the daemon (:mod:`grader.sandbox.docker_run`);
* labels naming the run and its grader; a watchdog removes the containers of a grader killed
  with SIGKILL, and a reaper those of graders long gone (:mod:`grader.sandbox.docker_reaper`).

Requests name the grader's interpreter (``sys.executable``) as their command: the image has its
own (:data:`~grader.sandbox.docker_image.IMAGE_PYTHON`, same Python minor version and the same
pinned packages), which replaces it.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.limits import Limits
from grader.sandbox.base import (
    LineCallback,
    SandboxRequest,
    SandboxResult,
    SandboxRun,
    SandboxUser,
)
from grader.sandbox.cpus import CpuLoan, format_cpus
from grader.sandbox.docker_image import IMAGE_PYTHON, ImageVariant, baked_mounts, image_tag
from grader.sandbox.docker_loans import CPU_PERIOD_US, ContainerCpus
from grader.sandbox.docker_reaper import (
    OWNER_LABEL,
    RUN_LABEL,
    SANDBOX_LABEL,
    ensure_watchdog,
    reap_containers,
)
from grader.sandbox.docker_run import ContainerRun
from grader.sandbox.gpus import check_device_id
from grader.sandbox.process import MAX_LINE_BYTES, base_env, error_result, owner_tag
from grader.sandbox.request_checks import give_workdir, request_problem
from grader.sandbox.runs import run_launched, start_launched

logger = logging.getLogger(__name__)

#: Targets a request may not mount over: the container's own ``/proc``, ``/dev``, ``/sys``.
RESERVED_TARGETS = ("/proc", "/dev", "/sys")
_sequence = itertools.count(1)


@dataclass
class DockerSandbox:
    """Runs each request in a fresh container (see the module docstring).

    Every option has a default that works on a host where the grader is root and a daemon
    answers on the default socket (or ``DOCKER_HOST``).
    """

    #: The runtime image; ``None``: this checkout's tag for ``variant``.
    image: str | None = None
    #: Which image variant to use when ``image`` is ``None``.
    variant: ImageVariant = ImageVariant.CPU
    #: The daemon's address; ``None``: ``DOCKER_HOST`` or the default socket.
    base_url: str | None = None
    #: Host ids of the student's code and of the grader's (must differ, as with bubblewrap).
    host_uid: int = 65534
    host_gid: int = 65534
    grader_uid: int = 65533
    grader_gid: int = 65533
    #: The interpreter inside the image, and the host one that requests name.
    python: str = IMAGE_PYTHON
    host_python: str = sys.executable
    hostname: str = "sandbox"
    home: str = "/home/sandbox"
    #: CPUs the run may use at once (CPU quota); ``None``: as many as ``cpu_set`` has, or every
    #: CPU of the host.
    cpus: float | None = None
    #: The host CPUs the container is confined to (``cpuset_cpus``; a slot of
    #: :class:`~grader.sandbox.cpus.CpuSlots`). Empty: every CPU.
    cpu_set: tuple[int, ...] = ()
    #: CPUs the run borrows besides ``cpu_set`` while nobody leases them: each container starts
    #: confined to both (its quota too, unless ``cpus`` is set) and is narrowed through the
    #: daemon's API when one is taken back; ``None``: none. Only with a ``cpu_set``.
    cpu_loan: CpuLoan | None = None
    #: GPU or MIG UUIDs lent to this grading (the service leases them, one run per device):
    #: the student's kernel gets exactly these through a ``DeviceRequest`` (needs the NVIDIA
    #: container toolkit), never ``all``; the runner and the clean room get none. Implies the
    #: ``gpu`` image variant when ``image`` is ``None`` (``tensorflow-cpu`` sees no GPU).
    gpu_devices: tuple[str, ...] = ()
    #: Longest stdout line handed to ``on_line``.
    max_line_bytes: int = MAX_LINE_BYTES
    name: str = field(default="docker", init=False)
    _client: Any = field(default=None, init=False, repr=False)
    _reaped: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.grader_uid == self.host_uid:
            raise ValueError(f"grader_uid must differ from host_uid (both {self.host_uid}): "
                             "the student's code must not run as the grader's user")
        self.gpu_devices = tuple(check_device_id(uuid) for uuid in self.gpu_devices)
        if self.gpu_devices and self.image is None:
            self.variant = ImageVariant.GPU

    @property
    def image_name(self) -> str:
        return self.image or image_tag(self.variant)

    # --- the Sandbox protocol --------------------------------------------------------------

    def check(self) -> str | None:
        """``None`` when a trivial command runs in a container here, else why and the fix."""
        try:
            client = self.client()
            client.ping()
        except ImportError:
            return "the Docker SDK is not installed: pip install -e '.[docker]'"
        except Exception as exc:
            return f"no Docker daemon answers ({_short(exc)}): start dockerd"
        try:
            client.inspect_image(self.image_name)
        except Exception:
            return f"the image {self.image_name} is missing: run `make image`"
        request = SandboxRequest(argv=["true"], workdir=None,
                                 limits=Limits(notebook_timeout=60.0))
        result = self.run(request)
        if result.sandbox_error:
            return f"docker cannot start a sandbox: {result.sandbox_error}"
        if result.exit_code != 0:
            return f"`true` failed in a container (exit {result.exit_code})"
        return None

    def run(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxResult:
        return run_launched(self._launch(request), on_line)

    def start(self, request: SandboxRequest, on_line: LineCallback | None = None) -> SandboxRun:
        return start_launched(self._launch(request), on_line)

    def client(self) -> Any:
        """The low-level Docker client (made on first use; thread-safe for our calls). Raises
        ``docker.errors.DockerException`` when no daemon answers (it asks for the API version)."""
        if self._client is None:
            import docker
            from docker.utils import kwargs_from_env

            options = ({"base_url": self.base_url} if self.base_url
                       else kwargs_from_env())
            self._client = docker.APIClient(version="auto", timeout=120, **options)
        return self._client

    # --- a run ------------------------------------------------------------------------------

    def _launch(self, request: SandboxRequest) -> ContainerRun | SandboxResult:
        started = time.monotonic()
        problem = request_problem(request, RESERVED_TARGETS)
        if problem:
            return error_result(problem, started)
        if request.join_network is not None and (
                request.join_network.backend != "docker" or not request.join_network.container):
            return error_result(
                f"cannot join the network of a {request.join_network.backend!r} run", started)
        try:
            client = self.client()
        except ImportError:
            return error_result("the Docker SDK is not installed", started)
        except Exception as exc:  # the client asks the daemon for its API version
            return error_result(f"no Docker daemon answers ({_short(exc)})", started)
        owner = owner_tag()
        if not self._reaped:
            reap_containers(client)
            self._reaped = True
        uid, gid = self.host_ids(request.user)
        container = None
        try:
            if request.workdir is not None and os.geteuid() == 0:
                give_workdir(request.workdir, uid, gid)
            ensure_watchdog(owner, self.base_url)
            container = client.create_container(**self._spec(client, request, owner))["Id"]
            wall = self._borrow(container)
            sock = client.attach_socket(container, params={"stdout": 1, "stderr": 1,
                                                           "stream": 1})
            client.start(container)
        except Exception as exc:
            if container is not None:
                try:
                    client.remove_container(container, force=True)
                except Exception as removal:
                    logger.warning("container %s not removed: %s", container[:12], removal)
            return error_result(f"docker: {_short(exc)}", started)
        return ContainerRun(client, container, sock, started=started, limits=request.limits,
                            max_line_bytes=self.max_line_bytes, wall=wall)

    def _borrow(self, container: str) -> ContainerCpus | None:
        """The container (made, not started) widened to the CPUs the loan holds now and
        recorded in it, so a take-back narrows it; its wall, ``None`` when it is not pinned. A
        daemon that refuses leaves it on its slot."""
        if not self.cpu_set:
            return None
        wall = ContainerCpus(container=container, daemon=self.base_url, quota=self.cpus is None)
        if self.cpu_loan is not None:
            try:
                self.cpu_loan.confine([wall])
            except OSError as exc:  # the run still has its slot
                logger.warning("container %s not lent the idle CPUs: %s", container[:12], exc)
        return wall

    def host_ids(self, user: SandboxUser) -> tuple[int, int]:
        """The host ``(uid, gid)`` a request of ``user`` runs as."""
        if user == SandboxUser.GRADER:
            return self.grader_uid, self.grader_gid
        return self.host_uid, self.host_gid

    def _spec(self, client: Any, request: SandboxRequest, owner: str) -> dict[str, Any]:
        """``create_container``'s arguments for ``request``."""
        from docker.types import DeviceRequest, LogConfig, Ulimit

        limits = request.limits
        uid, gid = self.host_ids(request.user)
        gpus = list(self.gpu_devices) if request.user == SandboxUser.STUDENT else []
        scratch = int(limits.scratch_bytes)
        tmpfs = {
            "/tmp": f"rw,nosuid,nodev,size={scratch},mode=1777",
            self.home: f"rw,nosuid,nodev,size={scratch},mode=0700,uid={uid},gid={gid}",
        }
        binds: dict[str, dict[str, str]] = {}
        if request.workdir is None:
            tmpfs[request.workdir_target] = (
                f"rw,nosuid,nodev,size={scratch},mode=0700,uid={uid},gid={gid}")
        else:
            binds[os.path.realpath(request.workdir)] = {"bind": request.workdir_target,
                                                        "mode": "rw"}
        baked = baked_mounts()
        for mount in request.mounts:
            in_image = baked.get(mount.target)
            if in_image is not None and Path(mount.source).resolve() == in_image.resolve():
                continue  # the image carries these very bytes
            binds[os.path.realpath(mount.source)] = {
                "bind": mount.target, "mode": "rw" if mount.writable else "ro"}
        network = ("none" if request.join_network is None
                   else f"container:{request.join_network.container}")
        host_config = client.create_host_config(
            binds=binds,
            tmpfs=tmpfs,
            shm_size=scratch,
            network_mode=network,
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,
            mem_limit=int(limits.memory_bytes),
            memswap_limit=int(limits.memory_bytes),
            pids_limit=int(limits.max_processes),
            cpu_period=CPU_PERIOD_US,
            cpu_quota=int((self.cpus or len(self.cpu_set) or os.cpu_count() or 1)
                          * CPU_PERIOD_US),
            cpuset_cpus=format_cpus(self.cpu_set) if self.cpu_set else None,
            ulimits=[Ulimit(name="cpu", soft=int(limits.cpu_seconds),
                            hard=int(limits.cpu_seconds)),
                     Ulimit(name="fsize", soft=int(limits.file_size_bytes),
                            hard=int(limits.file_size_bytes)),
                     Ulimit(name="core", soft=0, hard=0)],
            log_config=LogConfig(type="none"),
            device_requests=([DeviceRequest(device_ids=gpus, capabilities=[["gpu"]])]
                             if gpus else None),
        )
        argv = list(request.argv)
        if argv[0] == self.host_python:
            argv[0] = self.python
        env = base_env(self.home, "/tmp", self.python)
        env.update(request.env)
        # the NVIDIA runtime reads this too: exactly the lent devices, or none ("void")
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(gpus) or "void"
        spec: dict[str, Any] = {
            "image": self.image_name,
            "command": argv,
            "user": f"{uid}:{gid}",
            "working_dir": request.workdir_target,
            "environment": env,
            "labels": {SANDBOX_LABEL: "1", OWNER_LABEL: owner,
                       RUN_LABEL: f"{owner}-{next(_sequence)}-{request.user}"},
            "host_config": host_config,
            "stdin_open": False,
            "tty": False,
        }
        if request.join_network is None:
            spec["hostname"] = self.hostname
        return spec


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
