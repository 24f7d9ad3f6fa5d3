"""The tests' throwaway servers (``tests/servers.py``): they answer on their own port, a
PostgreSQL cluster keeps its data across a restart and a Redis server does not, nothing is left
once they are removed, and none outlives a process killed before it could tear them down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis

from grader.config import PROJECT_ROOT
from tests.servers import ThrowawayPostgres, ThrowawayRedis, sqlalchemy_url


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.processes
def test_a_throwaway_postgres_keeps_its_data_across_a_restart_and_leaves_nothing():
    with ThrowawayPostgres() as server:
        assert server.port != 5432
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
        server.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.admin_url, connect_timeout=2)
        server.start()
        with psycopg.connect(server.admin_url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]
        folder, url = server.dir, server.admin_url
        assert folder.is_dir()

    assert not folder.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


@pytest.mark.processes
def test_a_throwaway_redis_comes_back_empty_after_a_kill_and_leaves_nothing():
    with ThrowawayRedis() as server:
        assert server.port != 6379
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        client.set("message", "held")
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert client.get("message") is None
        folder = server.dir
        assert folder.is_dir()

    assert not folder.exists()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()


OWNER = """
import json, sys, time
from tests.servers import ThrowawayPostgres, ThrowawayRedis
pg, rd = ThrowawayPostgres(), ThrowawayRedis()
pg.start()
rd.start()
print(json.dumps({"pids": [pg.proc.pid, rd.proc.pid], "dirs": [str(pg.dir), str(rd.dir)]}),
      flush=True)
time.sleep(600)
"""


@pytest.mark.processes
def test_no_server_outlives_the_process_that_started_it():
    """``kill -9`` of the owner (pytest itself, say): no teardown runs, and yet both servers
    stop rather than linger on their ports."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=PROJECT_ROOT,
                             env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
                             stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    started = json.loads(owner.stdout.readline() or "{}")
    pids: list[int] = started.get("pids", [])
    try:
        assert len(pids) == 2 and all(map(pid_alive, pids)), started
        owner.kill()
        owner.wait(timeout=10)
        deadline = time.monotonic() + 30
        while any(map(pid_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(pid_alive, pids)), "a server outlived its owner"
    finally:
        owner.kill()
        for pid in filter(pid_alive, pids):
            os.kill(pid, signal.SIGKILL)
        for folder in started.get("dirs", []):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(("conninfo", "expected"), [
    ("postgresql://postgres@127.0.0.1:5433/postgres",
     "postgresql+psycopg://postgres@127.0.0.1:5433/grader"),
    ("host=10.0.0.7 user=ci password=s3cret dbname=postgres",
     "postgresql+psycopg://ci:s3cret@10.0.0.7/grader"),
    ("postgresql:///postgres?host=/run/pg&user=me",
     "postgresql+psycopg://me@/grader?host=%2Frun%2Fpg"),
])
def test_a_database_url_keeps_the_servers_user_password_host_and_port(conninfo, expected):
    assert sqlalchemy_url(conninfo, "grader") == expected
