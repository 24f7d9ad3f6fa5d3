"""The GPU leases' SQL: which run holds which device of which host, decided by the database.

Each device (a GPU or MIG UUID of :func:`inventory`) of a grading host has one ``gpu_leases``
row (:func:`register`). Like the run claims (``service.queue.claims``), every change is one
compare-and-set statement, so however many workers of a host race, a device is lent to one run
at a time:

- :func:`acquire`: ``UPDATE … SET worker = me WHERE id = ? AND NOT dirty AND (worker IS NULL OR
  expires_at < now)``; the row count says who won. A lease that ran out (its worker died) is
  taken only after the device's memory is found free: the dead worker's run may still hold it;
- :func:`attach`: the run now graded on the device;
- :func:`renew`: extended with the run's lease (``service.queue.leases.LeaseKeeper``);
- :func:`release`: given back when the run ends, ``dirty`` when its memory is not free then;
- :func:`refresh_dirty`: a dirty device whose memory is free again can be lent again.

Memory is read through ``grader.sandbox.gpus.NvidiaSmi`` (the setting ``GPU_PROBE`` when set:
tests put one with a fake command runner there).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, false, or_, select, true, update
from sqlalchemy.exc import IntegrityError

from grader.sandbox import GpuProbeError, NvidiaSmi, gpu_inventory, is_free
from service.extensions import DbSession, rowcount
from service.models import GpuLease, utcnow
from service.settings import SettingsError

log = logging.getLogger(__name__)

def inventory(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The devices this host's workers lend (setting ``GPUS`` of an app's ``config``); read once
    per worker process, by its grading host (``service.queue.host``). A host with GPUs must
    grade in containers: only the docker backend can hand a run one device."""
    try:
        known = gpu_inventory(config.get("GPUS", ""), probe(config))
    except (ValueError, GpuProbeError) as exc:
        raise SettingsError(f"GPUS: {exc}") from None
    sandbox = config["GRADER"].sandbox
    if known and sandbox != "docker":
        raise SettingsError("GPUS needs GRADER_SANDBOX=docker: only the docker backend "
                            f"lends a run one device (the sandbox is {sandbox!r})")
    if known:
        log.info("GPUs lent by this host (%s): %s", config["GPU_HOST"], ", ".join(known))
    return known


def probe(config: Mapping[str, Any]) -> NvidiaSmi:
    """What reads the devices' memory (``GPU_PROBE``, else the real ``nvidia-smi``)."""
    return config.get("GPU_PROBE") or NvidiaSmi()


def register(session: DbSession, host: str, devices: tuple[str, ...]) -> None:
    """Make the rows of ``host``'s devices that have none (racing workers: one insert wins)."""
    known = set(session.execute(
        select(GpuLease.device).where(GpuLease.host == host)).scalars())
    for device in devices:
        if device in known:
            continue
        session.add(GpuLease(host=host, device=device))
        try:
            session.commit()
        except IntegrityError:  # made meanwhile by another worker of this host
            session.rollback()


def _free_now(smi: NvidiaSmi, device: str, free_mib: int) -> tuple[bool, int | None]:
    used = smi.memory_used_mib(device)
    return is_free(used, free_mib), used


def acquire(session: DbSession, host: str, devices: tuple[str, ...], worker: str,
            seconds: int, smi: NvidiaSmi, free_mib: int) -> str | None:
    """Lease a free device of ``host`` to ``worker`` for ``seconds``: its UUID, or ``None``
    when every device is held or dirty."""
    now = utcnow()
    takeable = and_(GpuLease.dirty == false(),
                    or_(GpuLease.worker.is_(None), GpuLease.expires_at < now))
    candidates = session.execute(
        select(GpuLease.id, GpuLease.device, GpuLease.worker)
        .where(GpuLease.host == host, GpuLease.device.in_(devices), takeable)
        .order_by(GpuLease.device)
    ).all()
    session.rollback()
    for lease_id, device, holder in candidates:
        if holder is not None:  # its worker died: is the device's memory given back?
            free, used = _free_now(smi, device, free_mib)
            if not free:
                session.execute(update(GpuLease).where(GpuLease.id == lease_id, takeable)
                                .values(dirty=True, worker=None, run_id=None, expires_at=None,
                                        used_mib=used, checked_at=utcnow()))
                session.commit()
                log.warning("GPU %s of a dead worker (%s) holds %s MiB: not lent until free",
                            device, holder, used)
                continue
        won = rowcount(session.execute(
            update(GpuLease).where(GpuLease.id == lease_id, takeable)
            .values(worker=worker, run_id=None,
                    expires_at=utcnow() + dt.timedelta(seconds=seconds))
        ))
        session.commit()
        if won == 1:
            return device
    return None


def attach(session: DbSession, host: str, device: str, worker: str, run_id: int) -> bool:
    """Note the run graded on a device ``worker`` holds."""
    changed = rowcount(session.execute(
        update(GpuLease).where(GpuLease.host == host, GpuLease.device == device,
                               GpuLease.worker == worker).values(run_id=run_id)))
    session.commit()
    return changed == 1


def renew(session: DbSession, host: str, worker: str, seconds: int) -> int:
    """Extend every lease ``worker`` holds on ``host``; how many it holds."""
    changed = rowcount(session.execute(
        update(GpuLease).where(GpuLease.host == host, GpuLease.worker == worker)
        .values(expires_at=utcnow() + dt.timedelta(seconds=seconds))))
    session.commit()
    return changed


def release(session: DbSession, host: str, device: str, worker: str,
            used_mib: int | None = None, dirty: bool = False) -> bool:
    """Give a device back (``dirty``: its memory was not free after the run). ``False`` when
    ``worker`` no longer held it (its lease ran out and another took it)."""
    changed = rowcount(session.execute(
        update(GpuLease).where(GpuLease.host == host, GpuLease.device == device,
                               GpuLease.worker == worker)
        .values(worker=None, run_id=None, expires_at=None, dirty=dirty, used_mib=used_mib,
                checked_at=utcnow())))
    session.commit()
    return changed == 1


def release_after_run(session: DbSession, host: str, device: str, worker: str,
                      smi: NvidiaSmi, free_mib: int) -> bool:
    """Give a device back after a run on it, dirty unless its memory is free now. Returns
    whether it was clean."""
    free, used = _free_now(smi, device, free_mib)
    if not free:
        log.warning("GPU %s holds %s MiB after a run: not lent again until free", device, used)
    release(session, host, device, worker, used_mib=used, dirty=not free)
    return free


def refresh_dirty(session: DbSession, host: str, smi: NvidiaSmi, free_mib: int) -> list[str]:
    """Check again the dirty devices of ``host``; those free now can be lent. Returns them."""
    dirty = session.execute(
        select(GpuLease.id, GpuLease.device)
        .where(GpuLease.host == host, GpuLease.dirty == true(), GpuLease.worker.is_(None))
    ).all()
    session.rollback()
    cleaned = []
    for lease_id, device in dirty:
        free, used = _free_now(smi, device, free_mib)
        session.execute(update(GpuLease).where(GpuLease.id == lease_id,
                                               GpuLease.worker.is_(None))
                        .values(dirty=not free, used_mib=used, checked_at=utcnow()))
        session.commit()
        if free:
            cleaned.append(device)
    return cleaned


def leases(session: DbSession) -> list[GpuLease]:
    """Every device row, by host and device (for the CLI and the people looking)."""
    return list(session.execute(
        select(GpuLease).order_by(GpuLease.host, GpuLease.device)).scalars())
