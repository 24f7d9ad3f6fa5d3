"""What the host tells the runner, in two typed models both sides share.

The mirror of :mod:`grader.results` (what the runner tells the host). A run's sandboxes can be
started before any submission exists (a warm kit, :mod:`grader.kit`), so the runner learns its
work in two steps: :class:`SessionPlan` (``session.json``, written when the kit starts: which
kernel to drive and what to install in it) and :class:`RunPlan` (``plan.json``, written when a
submission is handed over: the notebook, the budgets, the exports). The runner (``runner.py``,
beside this file) reads both back with the same models, so a field renamed on one side fails at
once on the other instead of reading ``None``.

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
    #: Seed of this run's order of the data sets' training images (drawn by the host for each
    #: kit); ``None``: the file's order (``[runtime] data_order = "file"``).
    data_order: int | None = None
    #: Import TensorFlow and install at once (a warm kit); ``False``: on the first import of
    #: TensorFlow or Keras (a cold run, where nobody should wait for an unused import).
    preload: bool = True


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


class SessionPlan(_Model):
    """The kernel the runner drives and what it installs there before any notebook comes."""

    connection: KernelConnection
    #: Seconds the kernel may take to answer ``kernel_info``.
    startup_timeout: float = 120.0
    #: Seconds for the bootstrap cell.
    bootstrap_timeout: float = 300.0
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    #: The run plan's file name; the runner waits for it once the kernel is ready.
    plan: str = "plan.json"
    out: str = "out"


class RunPlan(_Model):
    """One submission's work; paths are relative to the runner's working directory."""

    notebook: str = "submission.ipynb"
    cell_timeout: float = Field(gt=0)
    #: Notebook cell index -> seconds that cell may run (its budget, derived from the
    #: reference's timings on the host: ``grader/budgets.py``); ``cell_timeout`` for the others.
    cell_budgets: dict[int, float] = Field(default_factory=dict)
    cell_output_bytes: int = Field(gt=0)
    notebook_output_bytes: int = Field(gt=0)
    #: Seconds for each export.
    export_timeout: float = 300.0
    exports: list[ExportStep] = Field(default_factory=list)
