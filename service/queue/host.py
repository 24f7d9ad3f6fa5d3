"""What a grading worker process holds, and what one run holds: the grading host and its seats.

**A worker process holds** (one :class:`GradingHost`, opened once by its carrier: the embedded
threads of ``python -m service`` and ``flask worker`` in ``service.queue.embedded``, or a Celery
child at ``worker_process_init`` in ``service.queue.celery_worker``):

- what its runs need of the service, taken from the app once, when the host is made, as
  typed things: the database sessions (``service.extensions.Sessions``), the blob store
  (``service.blobs.BlobSessions``), what grade passback needs
  (``service.lti.passback.RunPassback``) and the config its settings are read from at its
  opening; the host keeps no app, and nothing under ``service/queue`` reaches for one while a
  run is taken (``tests/service/test_host_no_app.py``);
- its settings, read from that config once (:class:`HostSettings`), the GPU inventory
  among them (``GPUS``: which devices its workers may lease; the leases themselves are rows of
  the database, ``service.queue.gpu_leases``); a bad ``GPUS`` stops the opening before
  anything starts;
- the heartbeat of its workers, when the carrier asks for one (the embedded threads, and a
  Celery child for itself: ``service.queue.heartbeats``);
- the host's CPU slots (:class:`grader.sandbox.cpus.CpuSlots`): ``RUNS_PER_HOST`` runs go side
  by side, each confined to CPUs of its own, and a run past that number waits for a slot (its
  lease is renewed meanwhile). A run holding a GPU gets a slot too: the GPU count only caps how
  many GPU runs go at once. ``PIN_CPUS=0``: no slots, every run on every CPU. The slots are
  the one place that says which CPUs a run may use; with ``LEND_IDLE_CPUS`` (bubblewrap and
  docker) a run also borrows the CPUs of slots nobody holds, until a run leases one of them
  (:class:`grader.sandbox.cpus.CpuLoan`, taken in :meth:`Seat.pin`);
- the warm pool (``WARM_POOL``, ``service.queue.warm_kits``), whose kits are pinned to those
  slots;
- a spare render child (``service.notebook_html.SpareRenderer``), started ahead.

They are opened in that order and closed in the reverse one, each in turn even when another's
closing raises (an :class:`~contextlib.ExitStack`, as nbclient sets a kernel up and tears it
down): nothing of the process is left behind by a clean stop.

**A run holds** a :class:`Seat` (``GradingHost.seat``), from its claim until its result is
stored: the GPU leased before the claim, if any, given back when the seat is left (dirty if
its memory is not free then); and, while the grader works (:meth:`Seat.pin`), a CPU slot
(preferring one whose warm kit for the exercise is ready), that kit if there is one, and the
sandbox pinned to the slot (and lent the GPU). Leaving the pin gives back the kit (a used kit
is closed, never reused: off the verdict's path, by the pool's :class:`~grader.kit.KitClosers`,
which the pool waits for at its close) and then the slot, before the store, so the next run
can start while this one's HTML is rendered.

**Who closes what**: the host closes what it opened; a seat gives back what its run held; a
kit taken from the pool is closed by the seat that took it, a kit started cold by the grader
that started it (``grader.pipeline.execute_notebook``), and a kit never taken by the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from grader import GraderConfig, Kit, PoolSettings, WarmPool, get_sandbox
from grader.sandbox import CpuSlots, NvidiaSmi, Sandbox
from service.blobs import BlobSessions, blob_sessions
from service.extensions import DbSession, Sessions, sessions_of
from service.lti.passback import RunPassback
from service.notebook_html import SpareRenderer
from service.queue import gpu_leases, warm_kits
from service.queue.heartbeats import BEAT_SECONDS, Heartbeat
from service.queue.rendering import RenderAhead, RenderCaps
from service.states import WorkerKind

log = logging.getLogger(__name__)

#: The backends whose sandboxes a loan of idle CPUs widens and narrows (bubblewrap's cgroup
#: cpusets, docker's containers through the daemon; not ``unsafe``, which confines nothing).
LENDING_BACKENDS = frozenset({"bwrap", "docker"})


@dataclass(frozen=True)
class HostSettings:
    """What a grading host needs of the service's settings (``service.settings``), read once."""

    #: The grader's configuration (``GRADER``): exercises, data, the sandbox backend.
    grader: GraderConfig
    #: ``LEASE_SECONDS``: a run's lease, renewed every third of it (and its GPU's with it).
    lease_seconds: int
    #: ``MAX_ATTEMPTS``: claims of one run before it is failed.
    max_attempts: int
    #: ``HTML_*``: the executed notebook's rendering caps.
    render: RenderCaps
    #: ``GPU_HOST``: this host's name in the GPU leases.
    gpu_host: str
    #: ``GPUS``, resolved: the devices this host's workers lend (``()``: none).
    gpus: tuple[str, ...]
    #: ``GPU_FREE_MIB``: a device using more after a run is not lent again until it uses less.
    gpu_free_mib: int
    #: Reads the devices' memory (``GPU_PROBE``, else ``nvidia-smi``).
    gpu_probe: NvidiaSmi
    #: ``RUNS_PER_HOST`` slots when ``PIN_CPUS``, else ``None`` (no slots).
    cpu_slots: int | None
    #: ``CPU_SLOTS_DIR``: the slots' lock files, shared by every worker of the host.
    cpu_slots_dir: Path | None
    #: ``LEND_IDLE_CPUS``: a run borrows the CPUs of idle slots (:data:`LENDING_BACKENDS`).
    lend_cpus: bool
    #: ``WARM_POOL`` and its bounds; ``None`` when ``WARM_POOL`` is 0.
    warm_pool: PoolSettings | None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> HostSettings:
        """Read from an app's ``config``; a bad ``GPUS`` raises
        :class:`~service.settings.SettingsError`."""
        size = config["WARM_POOL"]
        lock_dir = config["CPU_SLOTS_DIR"]
        return cls(
            grader=config["GRADER"],
            lease_seconds=config["LEASE_SECONDS"],
            max_attempts=config["MAX_ATTEMPTS"],
            render=RenderCaps.of(config),
            gpu_host=config["GPU_HOST"],
            gpus=gpu_leases.inventory(config),
            gpu_free_mib=config["GPU_FREE_MIB"],
            gpu_probe=gpu_leases.probe(config),
            cpu_slots=config["RUNS_PER_HOST"] if config["PIN_CPUS"] else None,
            cpu_slots_dir=Path(lock_dir) if lock_dir else None,
            lend_cpus=bool(config.get("LEND_IDLE_CPUS", False))
            and config["GRADER"].sandbox in LENDING_BACKENDS,
            warm_pool=None if size <= 0 else PoolSettings(
                size=size, max_idle=config["WARM_POOL_MAX_IDLE"],
                min_available_bytes=config["WARM_POOL_MIN_FREE_MB"] * 1024 * 1024),
        )


@dataclass(frozen=True)
class Pinned:
    """What a run grades with (:meth:`Seat.pin`)."""

    #: The CPUs of its slot (``()``: not pinned).
    cpus: tuple[int, ...]
    #: A warm kit for its exercise, taken from the pool, else ``None`` (the grader starts one).
    kit: Kit | None
    #: The backend, pinned to ``cpus`` and lent the seat's GPU.
    sandbox: Sandbox


class Seat:
    """What one run holds (see the module's docstring); made by :meth:`GradingHost.seat`."""

    def __init__(self, host: GradingHost, worker: str, device: str | None) -> None:
        self.host, self.worker = host, worker
        #: The GPU the run is graded on, if any (leased before the claim).
        self.device = device

    @contextmanager
    def pin(self, exercise: str) -> Iterator[Pinned]:
        """A CPU slot (waits for one; one whose kit for ``exercise`` is ready first), that kit,
        and the sandbox, held until the block ends; then the kit is closed and the slot given
        back. A run with a GPU never takes a warm kit (its sandboxes need the device). With
        ``LEND_IDLE_CPUS``, the run also borrows the idle slots' CPUs: the kit's sandboxes are
        widened to them, a cold kit's start with them, until another run leases them."""
        host = self.host
        pool = None if self.device else host.pool
        with ExitStack() as held:
            cpus: tuple[int, ...] = ()
            options: dict[str, Any] = {}
            loan = None
            if host.cpus is not None:
                prefer = pool.ready_slots(exercise) if pool is not None else []
                lease = held.enter_context(host.cpus.lease(
                    prefer=prefer, borrow=host.settings.lend_cpus))
                cpus, loan = lease.cpus, lease.loan
            kit = pool.take(exercise, cpus) if pool is not None else None
            if kit is not None and pool is not None:  # used once, closed off the verdict's
                held.callback(kit.close, pool.closers)  # path, by the pool's closers
                if loan is not None:  # before its work comes, so TensorFlow sees every CPU
                    try:
                        loan.confine(kit.cpu_walls())
                    except OSError:  # the run still has its slot
                        log.warning("the warm kit was not lent the idle CPUs", exc_info=True)
            if self.device:
                options["gpu_devices"] = (self.device,)
            if cpus:
                options["cpu_set"] = cpus
            if loan is not None:
                options["cpu_loan"] = loan
            yield Pinned(cpus, kit, get_sandbox(host.settings.grader.sandbox, **options))

    def render_ahead(self) -> RenderAhead:
        """The run's rendering, with the host's spare render child."""
        spare = self.host.renderer
        return RenderAhead(self.host.settings.render, spare.take if spare else None)


class GradingHost:
    """The per-process grading resources of one worker process (see the module's docstring).

    ``app`` is read here only (what runs need, as typed things; the settings' config); the host
    keeps no app. ``heartbeat``: the kind of workers this host beats for (the embedded
    threads', a Celery child's), or ``None``; ``spare_renderer``: keep a render child started
    ahead; ``passback_bell``: wakes the grade passback sender of this process (its
    ``PassbackSender.ring``) when a run's score is queued."""

    def __init__(self, app: Flask, *, heartbeat: WorkerKind | None = None,
                 heartbeat_seconds: float = BEAT_SECONDS, spare_renderer: bool = True,
                 passback_bell: Callable[[], None] | None = None) -> None:
        #: Read by :meth:`open` (:class:`HostSettings`), once.
        self._config: Mapping[str, Any] = app.config
        # The app stays in use behind the sessions only: each opens an app context of its own,
        # which Flask-SQLAlchemy's session is bound to and the LMS comment's translations
        # (Flask-Babel) read their settings from (``service.lti.passback.RunPassback``).
        self._sessions = sessions_of(app)
        #: The blob store, each use in a short session of its own (``with host.blobs() as b``).
        self.blobs: BlobSessions = blob_sessions(app)
        #: What queuing a run's score for the LMS needs (``passback.queue_after_run``).
        self.passback = RunPassback.of(app, passback_bell)
        self._heartbeat_kind, self._heartbeat_seconds = heartbeat, heartbeat_seconds
        self._spare_renderer = spare_renderer
        self._stack = ExitStack()
        self._settings: HostSettings | None = None
        self._closed = False
        self.heartbeat: Heartbeat | None = None
        self.cpus: CpuSlots | None = None
        self.pool: WarmPool | None = None
        self.renderer: SpareRenderer | None = None

    @property
    def settings(self) -> HostSettings:
        if self._settings is None:
            raise RuntimeError("the grading host is not open")
        return self._settings

    # --- life ---------------------------------------------------------------------------------

    def open(self) -> GradingHost:
        """Read the settings, then open each resource in turn (a failure closes those opened).
        A host is opened once: again while open, it is itself; after its close, an error."""
        if self._closed:
            raise RuntimeError("a grading host is opened once; this one is closed")
        if self._settings is not None:
            return self
        settings = HostSettings.of(self._config)
        self._settings = settings
        try:
            if self._heartbeat_kind is not None:
                self.heartbeat = Heartbeat(self._sessions, self._heartbeat_kind,
                                           self._heartbeat_seconds)
                self.heartbeat.start()
                self._stack.callback(self.heartbeat.stop, forget_workers=True)
            if settings.cpu_slots is not None:
                self.cpus = CpuSlots(settings.cpu_slots, lock_dir=settings.cpu_slots_dir)
            if settings.warm_pool is not None:
                config = settings.grader
                pool = WarmPool(config, lambda: warm_kits.wanted(self._sessions, config),
                                lambda cpus: warm_kits.sandbox_for(config, cpus),
                                slots=self.cpus, settings=settings.warm_pool)
                self._stack.callback(pool.close)
                self.pool = pool.start()
                log.info("warm pool: %d kit(s) per open exercise and CPU slot, %d keys",
                         settings.warm_pool.size, len(pool.keys()))
            if self._spare_renderer:
                self.renderer = self._stack.enter_context(SpareRenderer())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close what :meth:`open` opened, in reverse order; each is closed even when another
        raised (logged). Idempotent."""
        self._closed = self._settings is not None
        try:
            self._stack.close()
        except Exception:
            log.exception("the grading host did not close cleanly")
        finally:  # the CPU slots hold nothing open: a run still under way stays pinned
            self.heartbeat = self.pool = self.renderer = None

    def __enter__(self) -> GradingHost:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what a run holds ---------------------------------------------------------------------

    @property
    def session(self) -> Sessions:
        """A database session of the service, removed at the end (``with host.session()``):
        what the run and its background threads get instead of the app."""
        return self._sessions

    def lend_gpu(self, session: DbSession, worker: str) -> str | None:
        """A free GPU of this host leased to ``worker`` (before it claims a run), or ``None``."""
        settings = self.settings
        if not settings.gpus:
            return None
        gpu_leases.register(session, settings.gpu_host, settings.gpus)
        gpu_leases.refresh_dirty(session, settings.gpu_host, settings.gpu_probe,
                                 settings.gpu_free_mib)
        return gpu_leases.acquire(session, settings.gpu_host, settings.gpus, worker,
                                  settings.lease_seconds, settings.gpu_probe,
                                  settings.gpu_free_mib)

    @contextmanager
    def seat(self, worker: str, device: str | None = None) -> Iterator[Seat]:
        """What a run ``worker`` has claimed holds until its result is stored; ``device``: the
        GPU leased for it, given back when the block ends (see the module's docstring)."""
        try:
            yield Seat(self, worker, device)
        finally:
            if device is not None:
                self._give_back_gpu(device, worker)

    def _give_back_gpu(self, device: str, worker: str) -> None:
        """Release the run's GPU, dirty unless its memory is free now. Never raises: a lease
        not given back runs out, and is taken again only once the device is found free."""
        settings = self.settings
        with self.session() as session:
            try:
                gpu_leases.release_after_run(session, settings.gpu_host, device, worker,
                                             settings.gpu_probe, settings.gpu_free_mib)
            except Exception:
                log.exception("GPU %s not given back; its lease will run out", device)
                session.rollback()
