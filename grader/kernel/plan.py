"""The run plan: what the host tells the runner to do, as one typed model both sides share.

The mirror of :mod:`grader.results` (what the runner tells the host). The host builds a
:class:`RunPlan` (:func:`grader.notebook_run.run_notebook`) and writes it as ``plan.json`` into
the runner's folder; the runner (``runner.py``, beside this file) reads it back with the same
model, so a field renamed on one side fails at once on the other instead of reading ``None``.

This module lives in ``grader/kernel/`` because that folder is all the runner's sandbox
mounts: the runner imports it as ``plan``, the host as ``grader.kernel.plan``. It therefore
imports nothing of ``grader``, only pydantic. The plan holds no reference answers: only what
to run, what to export after which cell, and the limits.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KernelConnection(_Model):
    """How to reach the student's kernel (its loopback ports and message key), in the layout
    of a Jupyter connection file."""

    ip: str
    transport: str = "tcp"
    shell_port: int
    iopub_port: int
    stdin_port: int
    control_port: int
    hb_port: int
    key: str
    signature_scheme: str = "hmac-sha256"


class BootstrapConfig(_Model):
    """What ``bootstrap.py`` installs in the kernel before the student's first cell."""

    #: Run TensorFlow 1.x code through ``tf.compat.v1``.
    tf1: bool = False
    #: Data set name -> its file as the kernel sees it (``/data/<name>.npz``).
    datasets: dict[str, str] = Field(default_factory=dict)


class ExportStep(_Model):
    """Export ``item``'s answer after the notebook cell ``cell`` ran."""

    item: str
    cell: int = Field(ge=0)
    #: What ``exporter.py`` exports: ``tensor``, ``layer`` or ``model``.
    export: str
    #: Name the cell must assign anew (checked before and after the cell), if any.
    fresh: str | None = None
    #: The export's arguments, from the exercise spec's ``extract`` table.
    args: dict[str, Any] = Field(default_factory=dict)


class RunPlan(_Model):
    """Everything the runner needs; paths are relative to its working directory."""

    notebook: str = "submission.ipynb"
    out: str = "out"
    connection: KernelConnection
    cell_timeout: float = Field(gt=0)
    #: Notebook cell index -> seconds that cell may run (its budget, derived from the
    #: reference's timings on the host: ``grader/budgets.py``); ``cell_timeout`` for the others.
    cell_budgets: dict[int, float] = Field(default_factory=dict)
    cell_output_bytes: int = Field(gt=0)
    notebook_output_bytes: int = Field(gt=0)
    #: Seconds the kernel may take to answer ``kernel_info``.
    startup_timeout: float = 120.0
    #: Seconds for the bootstrap cell, and for each export.
    bootstrap_timeout: float = 300.0
    export_timeout: float = 300.0
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    exports: list[ExportStep] = Field(default_factory=list)
