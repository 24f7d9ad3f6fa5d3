"""A docker container as a loan of idle CPUs records it, and narrowed through the daemon.

The docker backend's wall in a loan record (:mod:`grader.sandbox.loan_records`): a container is
widened to the CPUs a run borrows, and narrowed when one is taken back, by
``update_container`` (its ``cpuset_cpus``, and its CPU quota when the quota follows the CPUs),
never by writing its cgroup files: a worker that runs in a container itself (docker-compose's
workers) cannot reach them, and the daemon would not know of the change. So what a take-back
needs is the daemon's API, nothing of the host's cgroups. The Docker SDK is imported on use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The CFS period a container's CPU quota is counted in (``cpu_period``, microseconds): the
#: quota of ``n`` CPUs is ``n`` periods per period, as Docker's ``--cpus`` makes it. A quota
#: given as ``nano_cpus`` cannot be changed later (the daemon refuses), this one can.
CPU_PERIOD_US = 100_000
#: Seconds a take-back waits for the daemon.
DAEMON_TIMEOUT = 30


class ContainerCpus(BaseModel):
    """A docker container, by its id and the daemon that runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["docker"] = "docker"
    container: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: The daemon's address (``DockerSandbox.base_url``); ``None``: ``DOCKER_HOST`` or the
    #: default socket, as the sandbox found it.
    daemon: str | None = Field(default=None, max_length=2048)
    #: Whether the container's CPU quota follows its CPUs (``DockerSandbox.cpus`` unset), so a
    #: narrowing lowers it too.
    quota: bool = True

    def confine(self, cpus: Sequence[int], cpu_list: str, client: Any) -> bool:
        """Set the container's ``cpuset_cpus`` to ``cpu_list`` (and its quota to ``len(cpus)``
        CPUs); ``False`` when the container is gone. Raises ``OSError`` when the daemon
        refuses or does not answer. ``client``: a ``docker.APIClient`` of :attr:`daemon`
        (:meth:`client`)."""
        import docker

        options: dict[str, Any] = {"cpuset_cpus": cpu_list}
        if self.quota:
            options["cpu_quota"] = max(len(cpus), 1) * CPU_PERIOD_US
        try:
            client.update_container(self.container, **options)
        except docker.errors.NotFound:
            return False  # removed with its run
        except docker.errors.DockerException as exc:  # requests' errors are OSErrors already
            raise OSError(f"docker cannot confine container {self.container[:12]}: "
                          f"{str(exc).strip()[:300]}") from exc
        return True

    def client(self) -> Any:
        """A client of :attr:`daemon` (made as :meth:`DockerSandbox.client` makes its own)."""
        try:
            import docker
            from docker.utils import kwargs_from_env
        except ImportError as exc:
            raise OSError("no Docker SDK here: a container cannot be narrowed") from exc
        options = {"base_url": self.daemon} if self.daemon else kwargs_from_env()
        try:
            return docker.APIClient(version="auto", timeout=DAEMON_TIMEOUT, **options)
        except docker.errors.DockerException as exc:
            raise OSError(f"no Docker daemon answers at {self.daemon or 'DOCKER_HOST'}: "
                          f"{str(exc).strip()[:300]}") from exc
