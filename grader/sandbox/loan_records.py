"""The books of a CPU loan: what a ``loan-*.json`` record says, and how each wall is narrowed.

A run that borrows idle CPUs (:class:`~grader.sandbox.cpus.CpuLoan`) writes a record beside the
slots' locks: its own CPUs, the CPUs it borrows now, and *what confines it*, its walls
(:data:`Wall`): one per sandbox, whichever backend made it:

* :class:`CpusetFile`: the ``cpuset.cpus`` file of a bubblewrap run's cgroup, narrowed by
  writing the CPU list into it (the kernel moves the cgroup's tasks off the CPUs it loses);
* :class:`~grader.sandbox.docker_loans.ContainerCpus`: a docker container, narrowed through the
  daemon's API (:mod:`grader.sandbox.docker_loans`, where the Docker SDK is imported on use).

Either way :func:`narrow` is the one call the take-back, the loan's end and the reaping of a
dead borrower make (:func:`confine_walls` when a loan widens a wall), and a wall that is gone
(a cgroup removed, a container removed with its run) is no error: it is dropped from the record.
A record is read with a size cap and validated (:meth:`LoanRecord.load`): the folder is the
host's, root's and the grader's alone, but a borrower killed while writing leaves half a record,
which reads as malformed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from grader.sandbox.docker_loans import ContainerCpus

logger = logging.getLogger(__name__)

#: Largest record read (a few hundred bytes per sandbox).
MAX_RECORD_BYTES = 256 * 1024
#: Most walls one loan records (a run starts a handful of sandboxes).
MAX_WALLS = 256

_Cpu = Annotated[int, Field(ge=0, le=65_535)]
_Cpus = Annotated[tuple[_Cpu, ...], Field(max_length=4096)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CpusetFile(_Model):
    """A bubblewrap run's cgroup, by its ``cpuset.cpus`` file."""

    kind: Literal["cpuset"] = "cpuset"
    path: str = Field(min_length=2, max_length=4096, pattern=r"^/.*/cpuset\.cpus$")

    def confine(self, cpus: Sequence[int], cpu_list: str) -> bool:
        """Write ``cpu_list`` (``cpus`` as the kernel writes them) into the file; ``False``
        when the cgroup is gone (the file is not made). Raises ``OSError`` otherwise."""
        del cpus  # the kernel needs only the list
        try:
            # no O_CREAT: the file of a removed cgroup raises FileNotFoundError, and is not made
            fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            os.write(fd, cpu_list.encode())
        finally:
            os.close(fd)
        return True


#: What confines a borrower: one of its sandboxes, by backend (a record says which, ``kind``).
Wall = CpusetFile | ContainerCpus
_TaggedWall = Annotated[Wall, Field(discriminator="kind")]


class LoanRecord(_Model):
    """What a loan's file says: the borrower's own CPUs, those it borrows now, and the walls
    of its sandboxes (each confined to ``own + borrowed``)."""

    own: _Cpus
    borrowed: _Cpus
    walls: tuple[_TaggedWall, ...] = Field(default=(), max_length=MAX_WALLS)

    @property
    def cpus(self) -> tuple[int, ...]:
        return tuple(sorted({*self.own, *self.borrowed}))

    def dump(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def load(cls, data: bytes) -> LoanRecord:
        """Parse a record; raises ``ValueError`` when it is too large or malformed."""
        if len(data) > MAX_RECORD_BYTES:
            raise ValueError(f"a loan record of {len(data)} bytes (at most {MAX_RECORD_BYTES})")
        return cls.model_validate_json(data)



def confine_walls(walls: Sequence[Wall], cpus: Sequence[int], cpu_list: str
                  ) -> tuple[tuple[Wall, ...], list[tuple[Wall, OSError]]]:
    """Confine each wall to ``cpus`` (written ``cpu_list``, as the kernel writes them): the
    walls confined, and those that could not be, with why. A wall that is gone is in neither.
    One client per daemon."""
    clients: dict[str | None, Any] = {}
    done: list[Wall] = []
    failed: list[tuple[Wall, OSError]] = []
    try:
        for wall in walls:
            try:
                if isinstance(wall, ContainerCpus):
                    if wall.daemon not in clients:
                        clients[wall.daemon] = wall.client()
                    there = wall.confine(cpus, cpu_list, clients[wall.daemon])
                else:
                    there = wall.confine(cpus, cpu_list)
            except OSError as exc:
                failed.append((wall, exc))
                continue
            if there:
                done.append(wall)
    finally:
        for client in clients.values():
            client.close()
    return tuple(done), failed


def narrow(walls: Sequence[Wall], cpus: Sequence[int], cpu_list: str) -> tuple[Wall, ...]:
    """Confine each wall to ``cpus`` (a take-back, a loan's end); returns those still there. A
    wall that cannot be narrowed is logged and kept: the next take-back tries it again."""
    done, failed = confine_walls(walls, cpus, cpu_list)
    for wall, exc in failed:
        logger.warning("cannot narrow %s to %s: %s", wall_name(wall), cpu_list, exc)
    kept = {id(wall) for wall in (*done, *(w for w, _ in failed))}
    return tuple(wall for wall in walls if id(wall) in kept)


def wall_name(wall: Wall) -> str:
    """The wall, for a log line."""
    return wall.path if isinstance(wall, CpusetFile) else f"container {wall.container[:12]}"
