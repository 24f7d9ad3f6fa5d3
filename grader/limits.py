"""Resource limits for one grading run, as a value object passed down (never read from globals).

An exercise's ``[limits]`` table is read into :class:`Limits`; the CLI and tests may override
fields with :meth:`Limits.replace`. The sandbox backends turn it into cgroup settings, rlimits and
timers; the in-sandbox runner uses the per-cell timeout and the output caps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Limits:
    #: Wall-clock seconds one cell may run before the run stops with the outcome ``timeout``.
    cell_timeout: float = 600.0
    #: The least time budget a cell gets from the reference's timings (``grader.budgets``:
    #: ``min(cell_timeout, max(budget_floor, 3 x reference + 30))``).
    budget_floor: float = 60.0
    #: Wall-clock seconds for the whole notebook, kernel start and answer extraction included.
    notebook_timeout: float = 1500.0
    #: CPU seconds for every process of the run together (RLIMIT_CPU on each process; TensorFlow
    #: uses every core, so this is roughly ``cores x wall``).
    cpu_seconds: int = 6000
    #: Memory for every process of the run together (cgroup; RLIMIT_AS breaks TensorFlow).
    memory_bytes: int = 6 * GiB
    #: Processes and threads the run may hold at once (cgroup pids controller).
    max_processes: int = 512
    #: Largest file the notebook may write (RLIMIT_FSIZE).
    file_size_bytes: int = 256 * MiB
    #: Size of each private tmpfs of a sandbox (``/tmp``, the home, a work directory that is
    #: not on the host); their pages also count against ``memory_bytes``.
    scratch_bytes: int = 1 * GiB
    #: Bytes of stdout/stderr/display output kept per cell in the executed notebook.
    cell_output_bytes: int = 64 * 1024
    #: Bytes of output kept for the whole notebook; later output is dropped with a marker.
    notebook_output_bytes: int = 1 * MiB
    #: Bytes of the runner's own stdout/stderr the host keeps while they stream.
    log_bytes: int = 256 * 1024

    def replace(self, **changes: float | int) -> Limits:
        """A copy with some fields changed, checked like the original."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"limit {field.name} must be a positive number, got {value!r}")
