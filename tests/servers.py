"""Throwaway PostgreSQL and Redis servers for the tests: each in a temporary folder of its own
(data, log, unix socket), on a free port of 127.0.0.1, removed afterwards. The machine's servers
are never touched.

Debian's packages provide the binaries (``scripts/install-sysdeps.sh --test`` installs
``postgresql`` and ``redis-server`` when missing, and leaves no server of theirs running).
PostgreSQL refuses to run as root, so from root the cluster is made and run as the ``postgres``
user (the package creates it); any other user runs it as itself.

Each server is the direct child of the process that started it, through ``setpriv
--pdeathsig``: should that process die without tearing down (``kill -9`` of pytest), the server
is signalled and stops rather than lingering on its port.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import redis
from sqlalchemy.engine import URL

#: Seconds a server gets to answer after it was started, or to stop.
STARTUP_SECONDS = 60.0

#: How PostgreSQL is run: no fsync (the data is thrown away), a socket in its own folder.
POSTGRES_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class ServerError(RuntimeError):
    """A throwaway server could not be made, started or stopped; the message says why and
    holds the end of its log."""


#: Where a throwaway cluster's files go when they may be lost: memory (tmpfs), where ``CREATE
#: DATABASE ... TEMPLATE``'s checkpoints cost a third of what they cost on disk (0.06 s against
#: 0.15 s per test database on the 2-core machine), if it has room for a few clusters.
MEMORY_DIR = Path("/dev/shm")
MEMORY_DIR_FREE = 2 << 30


def memory_dir() -> Path | None:
    """:data:`MEMORY_DIR` when it is a writable folder with :data:`MEMORY_DIR_FREE` bytes free,
    else ``None`` (the system's temporary folder is used)."""
    try:
        found = os.statvfs(MEMORY_DIR)
    except OSError:
        return None
    room = found.f_bavail * found.f_frsize
    return MEMORY_DIR if room >= MEMORY_DIR_FREE and os.access(MEMORY_DIR, os.W_OK) else None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sqlalchemy_url(conninfo: str, dbname: str) -> str:
    """The SQLAlchemy URL (psycopg 3) of database ``dbname`` on the server of the libpq
    connection string ``conninfo``, with its user, password, host and port."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    host = str(info.get("host") or "127.0.0.1")
    socket_dir = host.startswith("/")
    port = info.get("port")
    url = URL.create(
        "postgresql+psycopg",
        username=str(info.get("user") or getpass.getuser()),
        password=str(info["password"]) if info.get("password") else None,
        host=None if socket_dir else host,
        port=int(port) if port else None,
        database=dbname,
        query={"host": host} if socket_dir else {},
    )
    return url.render_as_string(hide_password=False)


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():
        if proc.poll() is not None:
            raise ServerError(f"{what} exited ({proc.returncode}):\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise ServerError(f"{what} did not answer in {STARTUP_SECONDS:.0f} s:\n{_tail(log)}")
        time.sleep(0.05)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


def _stop(proc: subprocess.Popen | None, sig: int) -> None:
    """Send ``sig`` and wait; SIGKILL if the process is still there after the wait."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STARTUP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class _Throwaway:
    """A server of the tests' own: started on entering a ``with``, removed on leaving it (and
    removed too when it fails to start)."""

    def start(self) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.remove()


class ThrowawayPostgres(_Throwaway):
    """A PostgreSQL cluster of its own: ``initdb`` (trust authentication, superuser
    ``postgres``) when made, then ``start``/``stop`` as often as a test likes, and ``remove``.
    As a context manager: started on entry, removed on exit."""

    def __init__(self, durable: bool = False) -> None:
        #: Flush to disk as a production server does (benchmarks); tests throw the data away.
        self.durable = durable
        initdbs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                         key=lambda p: int(p.parent.parent.name))
        if not initdbs:
            raise ServerError("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): "
                              "`make sysdeps-test` installs Debian's postgresql")
        self.bin = initdbs[-1].parent
        self.owner = "postgres" if os.geteuid() == 0 else None
        self.dir = Path(tempfile.mkdtemp(prefix="grader-pg-",
                                         dir=None if durable else memory_dir()))
        self.data, self.log, self.port = self.dir / "data", self.dir / "postgres.log", free_port()
        self.proc: subprocess.Popen | None = None
        try:
            if self.owner is not None:
                self.dir.chmod(0o755)
                shutil.chown(self.dir, self.owner, self.owner)
            done = subprocess.run(
                [*self._as_owner(), str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                 "-U", "postgres", "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync"],
                cwd=self.dir, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise ServerError(f"initdb failed:\n{done.stdout}{done.stderr}")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _as_owner(self, pdeathsig: str | None = None) -> list[str]:
        argv = ["setpriv"]
        if self.owner is not None:
            argv += ["--reuid", self.owner, "--regid", self.owner, "--clear-groups"]
        if pdeathsig is not None:
            argv += ["--pdeathsig", pdeathsig]
        return argv

    @property
    def admin_url(self) -> str:
        """libpq connection string of the superuser's ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        """The same database as a SQLAlchemy URL."""
        return sqlalchemy_url(self.admin_url, "postgres")

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        chosen = ({"listen_addresses": POSTGRES_SETTINGS["listen_addresses"]} if self.durable
                  else POSTGRES_SETTINGS)
        settings = [arg for key, value in chosen.items() for arg in ("-c", f"{key}={value}")]
        argv = [*self._as_owner(pdeathsig="INT"), str(self.bin / "postgres"), "-D",
                str(self.data), "-p", str(self.port), "-k", str(self.dir), *settings]
        with open(self.log, "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        _wait_until(self._answers, self.proc, "PostgreSQL", self.log)

    def _answers(self) -> bool:
        try:
            psycopg.connect(self.admin_url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """A fast shutdown (SIGINT): clients are disconnected, the data is kept."""
        _stop(self.proc, signal.SIGINT)

    def remove(self) -> None:
        """Stop the server if it runs and delete its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class ThrowawayRedis(_Throwaway):
    """A ``redis-server`` of its own without persistence: killed and started again, it comes
    back empty (every message it held is lost: the worst case for a broker). As a context
    manager: started on entry, removed on exit."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServerError("no redis-server: `make sysdeps-test` installs Debian's redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="grader-redis-"))
        self.log, self.port = self.dir / "redis.log", free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        assert self.binary is not None
        argv = ["setpriv", "--pdeathsig", "KILL", self.binary, "--port", str(self.port),
                "--bind", "127.0.0.1", "--unixsocket", str(self.dir / "redis.sock"),
                "--dir", str(self.dir), "--save", "", "--appendonly", "no"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        _wait_until(self._answers, self.proc, "redis-server", self.log)

    def _answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: whatever the server held is gone."""
        _stop(self.proc, signal.SIGKILL)

    def remove(self) -> None:
        try:
            _stop(self.proc, signal.SIGTERM)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
