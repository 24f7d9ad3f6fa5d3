"""Service settings: embedded defaults for `make run`, overridden by environment variables.

| variable | default | meaning |
| --- | --- | --- |
| ``DATABASE_URL`` | ``sqlite:///<repo>/var/grader.db`` | SQLAlchemy URL (``postgresql+psycopg://…``) |
| ``GRADER_ENV`` | ``development`` | ``production`` refuses to start without ``SECRET_KEY`` |
| ``SECRET_KEY`` | random per start (development) | signs sessions and CSRF tokens |
| ``BLOB_STORE`` | ``folder`` | where uploaded notebooks and executed HTML are kept (``service.blobs``): ``folder`` (files in ``UPLOAD_DIR``, a folder every worker must share with the web) or ``database`` (the ``blobs`` table: workers on other machines need only the database); ``flask blobs move --to …`` copies them over |
| ``UPLOAD_DIR`` | ``<repo>/var/uploads`` | the folder blob store's folder: content-addressed notebooks and executed HTML |
| ``MAX_UPLOAD_BYTES`` | 20 MiB | larger uploads get 413 |
| ``QUEUE`` | ``embedded`` | ``embedded`` (database as queue, workers in the service) or ``celery`` |
| ``CORES_PER_RUN`` | 1 | CPUs each grading run gets (its slot: docs/sandbox.md, "Parallel runs") |
| ``RUNS_PER_HOST`` | the usable CPUs // ``CORES_PER_RUN`` (at least 1) | grading runs at once on this host, each pinned to a slot of its own; more workers wait for a slot |
| ``PIN_CPUS`` | 1 | ``0``: runs are not pinned (every run on every CPU) |
| ``LEND_IDLE_CPUS`` | 1 | a run also borrows the CPUs of slots no run holds, given back when a run leases one (bubblewrap and docker; docs/sandbox.md, "Parallel runs") |
| ``CPU_SLOTS_DIR`` | ``/run/grader-cpus`` (root) | the slots' lock files; the same for every worker of the host |
| ``WORKERS`` | ``RUNS_PER_HOST`` | embedded worker threads |
| ``WARM_POOL`` | 1 | warm kits (sandboxes with the kernel, TensorFlow and the clean room ready) kept per open exercise and CPU slot by each worker process; ``0``: every run starts cold (docs/sandbox.md, "Warm pool") |
| ``WARM_POOL_MAX_IDLE`` | 900 | seconds a warm kit may wait for a submission before it is replaced |
| ``WARM_POOL_MIN_FREE_MB`` | 4096 | no warm kit is started unless the host's available memory stays above this |
| ``CELERY_BROKER_URL`` | ``redis://127.0.0.1:6379/0`` | for ``QUEUE=celery`` |
| ``RATE_LIMIT`` | ``10/600`` | submissions per student per seconds |
| ``COURSE_TIMEZONE`` | ``Asia/Tokyo`` | the course's time zone (IANA name): dates on the pages, where a day starts; a schedule may name its own (docs/course-rules.md) |
| ``DUPLICATE_WINDOW`` | 120 | the same notebook from the same student within this many seconds is the earlier submission |
| ``UPLOAD_MAX_CELLS`` | 1000 | cells in an uploaded notebook |
| ``UPLOAD_MAX_CELL_BYTES`` | 4 MiB | bytes of one cell, outputs included |
| ``UPLOAD_MAX_OUTPUT_BYTES`` | 16 MiB | bytes of all the outputs together |
| ``UPLOAD_MAX_DEPTH`` | 64 | nesting of JSON arrays and objects |
| ``UPLOAD_MAX_VALUES`` | 200000 | JSON values (a source line is one), counted before parsing |
| ``UPLOAD_CHECK_SECONDS`` | 2 | deadline of the notebook's check in the request, in seconds of the request thread's CPU (checked between cells) |
| ``LEASE_SECONDS`` | 120 | a running job whose worker stops renewing its lease for this long is run again |
| ``MAX_ATTEMPTS`` | 3 | runs of one job before it is marked failed |
| ``HTML_MAX_CELLS`` | 2000 | an executed notebook with more cells is not rendered as HTML |
| ``HTML_MAX_BYTES`` | 8 MiB | ... nor one larger than this (its JSON) |
| ``HTML_RENDER_SECONDS`` | 60 | rendering is stopped after this long (it runs in a child process) |
| ``HTML_RENDER_MEMORY`` | 2 GiB | address space of that child (beyond, no HTML); it runs at niceness 19 |
| ``METRICS_TOKEN`` | unset | when set, ``/metrics`` answers only ``Authorization: Bearer <it>`` (else 401) |
| ``GPUS`` | (none) | the GPUs this host's workers lend to runs: ``auto`` (``nvidia-smi -L``) or GPU/MIG UUIDs, comma-separated; needs ``GRADER_SANDBOX=docker`` (docs/gpus.md) |
| ``GPU_HOST`` | the hostname | names this host in the GPU leases (the same UUIDs on two hosts are two devices) |
| ``PUBLIC_URL`` | the address each request came to | the service's address as browsers and LMSs reach it (``https://grader.example.org``), used in the LTI settings an LMS administrator pastes (docs/lti.md) |
| ``GPU_FREE_MIB`` | 256 | a device using more memory than this after a run is not lent again until it uses less |

The ``UPLOAD_*`` limits bound the work one upload costs a request thread before anything is
stored (``service.domain.submissions``, ``grader.notebook.ReadLimits``); each is capped at the
grader's own, so the grader can always read again what the service accepted. Past one, the
upload gets 413 (400 for nesting) with the limit said.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from grader import PROJECT_ROOT
from grader.sandbox import runs_per_host, usable_cpus
from service.states import WorkerKind


class SettingsError(RuntimeError):
    """The service cannot start with these settings; the message says what to set."""


def _timezone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"COURSE_TIMEZONE: unknown time zone {name!r} (an IANA name such "
                            "as Asia/Tokyo)") from None
    return name


def _public_url(value: str) -> str | None:
    value = value.strip().rstrip("/")
    if value and not value.startswith(("https://", "http://")):
        raise SettingsError(f"PUBLIC_URL must be an absolute http(s) URL such as "
                            f"https://grader.example.org, got {value!r}")
    return value or None


#: The values of ``BLOB_STORE`` (``service.blobs``).
BLOB_STORES = ("folder", "database")


def _blob_store(value: str) -> str:
    if value not in BLOB_STORES:
        raise SettingsError(f"BLOB_STORE must be one of {', '.join(BLOB_STORES)}, "
                            f"got {value!r}")
    return value


def load_settings(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Flask config values from the environment."""
    env = os.environ if environ is None else environ
    production = env.get("GRADER_ENV", "development") == "production"
    secret = env.get("SECRET_KEY", "")
    if production and len(secret) < 16:
        raise SettingsError(
            "GRADER_ENV=production needs SECRET_KEY (16+ random characters); "
            "there is no default secret key in production"
        )
    var = PROJECT_ROOT / "var"
    rate = env.get("RATE_LIMIT", "10/600")
    try:
        count, window = (int(part) for part in rate.split("/"))
    except ValueError:
        raise SettingsError(f"RATE_LIMIT must look like 10/600, got {rate!r}") from None
    cores_per_run = int(env.get("CORES_PER_RUN", "1"))
    try:
        runs = int(env.get("RUNS_PER_HOST") or runs_per_host(len(usable_cpus()), cores_per_run))
    except ValueError as exc:
        raise SettingsError(f"CORES_PER_RUN / RUNS_PER_HOST: {exc}") from None
    return {
        "SECRET_KEY": secret or secrets.token_hex(32),
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL") or f"sqlite:///{var / 'grader.db'}",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "BLOB_STORE": _blob_store(env.get("BLOB_STORE") or "folder"),
        "UPLOAD_DIR": env.get("UPLOAD_DIR") or str(var / "uploads"),
        "MAX_CONTENT_LENGTH": int(env.get("MAX_UPLOAD_BYTES", str(20 * 1024 * 1024))),
        "QUEUE": env.get("QUEUE", WorkerKind.EMBEDDED),
        "WORKERS": int(env.get("WORKERS") or runs),
        "CORES_PER_RUN": cores_per_run,
        "RUNS_PER_HOST": runs,
        "PIN_CPUS": env.get("PIN_CPUS", "1") not in ("0", "false", "no", ""),
        "CPU_SLOTS_DIR": env.get("CPU_SLOTS_DIR") or None,
        "LEND_IDLE_CPUS": env.get("LEND_IDLE_CPUS", "1") not in ("0", "false", "no", ""),
        "WARM_POOL": int(env.get("WARM_POOL", "1")),
        "WARM_POOL_MAX_IDLE": float(env.get("WARM_POOL_MAX_IDLE", "900")),
        "WARM_POOL_MIN_FREE_MB": int(env.get("WARM_POOL_MIN_FREE_MB", "4096")),
        "CELERY_BROKER_URL": env.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
        "COURSE_TIMEZONE": _timezone(env.get("COURSE_TIMEZONE") or "Asia/Tokyo"),
        "RATE_LIMIT_COUNT": count,
        "RATE_LIMIT_WINDOW": window,
        "LEASE_SECONDS": int(env.get("LEASE_SECONDS", "120")),
        "MAX_ATTEMPTS": int(env.get("MAX_ATTEMPTS", "3")),
        "DUPLICATE_WINDOW": int(env.get("DUPLICATE_WINDOW", "120")),
        "HTML_MAX_CELLS": int(env.get("HTML_MAX_CELLS", "2000")),
        "HTML_MAX_BYTES": int(env.get("HTML_MAX_BYTES", str(8 * 1024 * 1024))),
        "HTML_RENDER_SECONDS": float(env.get("HTML_RENDER_SECONDS", "60")),
        "HTML_RENDER_MEMORY": int(env.get("HTML_RENDER_MEMORY", str(2 * 1024 * 1024 * 1024))),
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        "PUBLIC_URL": _public_url(env.get("PUBLIC_URL", "")),
        "UPLOAD_MAX_CELLS": int(env.get("UPLOAD_MAX_CELLS", "1000")),
        "UPLOAD_MAX_CELL_BYTES": int(env.get("UPLOAD_MAX_CELL_BYTES", str(4 * 1024 * 1024))),
        "UPLOAD_MAX_OUTPUT_BYTES": int(env.get("UPLOAD_MAX_OUTPUT_BYTES",
                                               str(16 * 1024 * 1024))),
        "UPLOAD_MAX_DEPTH": int(env.get("UPLOAD_MAX_DEPTH", "64")),
        "UPLOAD_MAX_VALUES": int(env.get("UPLOAD_MAX_VALUES", "200000")),
        "UPLOAD_CHECK_SECONDS": float(env.get("UPLOAD_CHECK_SECONDS", "2")),
        "GPUS": env.get("GPUS", ""),
        "GPU_HOST": env.get("GPU_HOST") or socket.gethostname(),
        "GPU_FREE_MIB": int(env.get("GPU_FREE_MIB", "256")),
        "PRODUCTION": production,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
    }
