"""The docker backend: its image's inputs, its containers' walls and limits, what a hostile
process inside can and cannot do, its leftovers, and parity with bubblewrap on real notebooks.

The tests that run containers use the ``docker_sandbox`` fixture (tests/conftest.py): a daemon
that answers, or one started for the session (as root), and this checkout's image, built once
when missing (about two minutes without a registry; then cached by its tag).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from importlib import metadata

import pytest

from grader.config import PROJECT_ROOT
from grader.limits import Limits, MiB
from grader.sandbox import Mount, SandboxRequest, SandboxUser
from grader.sandbox.docker_image import (
    DOCKER_DIR,
    IMAGE_PYTHON,
    ImageVariant,
    image_inputs,
    image_tag,
    pip_config_text,
)
from grader.sandbox.docker_reaper import OWNER_LABEL, SANDBOX_LABEL, reap_containers
from grader.sandbox.docker_run import FrameReader

SHORT = Limits(notebook_timeout=60.0, memory_bytes=512 * MiB, max_processes=64,
               scratch_bytes=16 * MiB, file_size_bytes=1 * MiB, log_bytes=64 * 1024)


# --- without a daemon ------------------------------------------------------------------------

def test_the_image_holds_only_the_dockerfile_the_pins_and_the_in_sandbox_code():
    names = set(image_inputs(ImageVariant.CPU))
    assert {"Dockerfile", "requirements.txt", "requirements-cpu.txt",
            "kernel/runner.py", "kernel/exporter.py", "cleanroom/main.py"} <= names
    assert {n.split("/")[0] for n in names} <= {
        "Dockerfile", "requirements.txt", "requirements-cpu.txt", "kernel", "cleanroom"}
    assert not any("reference" in n or "service" in n or n.endswith(".json") for n in names)
    assert image_tag(ImageVariant.CPU) != image_tag(ImageVariant.GPU)
    assert image_tag(ImageVariant.CPU).startswith("notebook-grader-runtime:cpu-")


def test_the_image_pins_are_the_versions_the_grader_runs():
    """The docker and bwrap backends must run the same packages (bwrap runs this venv)."""
    pins = {}
    for name in ("requirements.txt", "requirements-cpu.txt"):
        for line in (DOCKER_DIR / name).read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                package, _, version = line.partition("==")
                pins[package.split("[")[0].strip()] = version.strip()
    pins["tensorflow"] = pins.pop("tensorflow-cpu")
    for package, version in pins.items():
        assert metadata.version(package) == version, package


def test_the_builds_pip_config_keeps_network_indexes_and_drops_host_paths():
    text = pip_config_text({"PIP_INDEX_URL": "https://mirror.example/simple",
                            "PIP_EXTRA_INDEX_URL": "file:///opt/pypi/simple https://b.example/s",
                            "PIP_FIND_LINKS": "/opt/wheels", "PIP_CERT": "/etc/ssl/x.crt",
                            "PIP_TIMEOUT": "30"})
    assert "index-url = https://mirror.example/simple" in text
    assert "extra-index-url = https://b.example/s" in text
    assert "file:" not in text and "/opt/" not in text and "cert" not in text


def test_frames_of_the_attach_stream_are_split_whatever_the_chunks():
    stream = b"".join(bytes([n, 0, 0, 0]) + len(p).to_bytes(4, "big") + p
                      for n, p in ((1, b"out\n"), (2, b"err"), (1, b"x" * 70000)))
    reader = FrameReader()
    frames = []
    for start in range(0, len(stream), 7):
        frames += reader.feed(stream[start:start + 7])
    assert frames == [(1, b"out\n"), (2, b"err"), (1, b"x" * 70000)]


# --- containers ------------------------------------------------------------------------------


PROBE = r'''
import json, os, socket, sys
facts = {"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "env": sorted(os.environ)}
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\t" in line)
facts["caps"] = [status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd")]
facts["no_new_privs"] = status["NoNewPrivs"].strip()
facts["seccomp"] = status["Seccomp"].strip()
writes = {}
for path in ("/usr/evil", "/etc/evil", "/opt/grader/kernel/evil", "/data/evil", "/tmp/ok",
             "/home/sandbox/ok", "/job/ok", "/dev/shm/ok"):
    try:
        with open(path, "w") as f:
            f.write("x")
        writes[path] = "written"
    except OSError as e:
        writes[path] = e.errno
facts["writes"] = writes
facts["net"] = sorted(os.listdir("/sys/class/net"))
try:
    socket.create_connection(("1.1.1.1", 53), timeout=3)
    facts["internet"] = True
except OSError:
    facts["internet"] = False
facts["visible"] = {p: os.path.exists(p) for p in (
    "/job/mine.txt", "/job/../sibling", "/work", "/root/.ssh", "/var/run/docker.sock",
    "/opt/grader/kernel/runner.py", "/data/mnist.npz", "/reference", "/etc/shadow-")}
try:
    os.setuid(0)
    facts["setuid"] = "worked"
except OSError as e:
    facts["setuid"] = e.errno
try:
    os.chroot("/tmp")
    facts["chroot"] = "worked"
except OSError as e:
    facts["chroot"] = e.errno
try:
    os.mknod("/tmp/disk", 0o600 | 0o060000, os.makedev(8, 0))
    facts["mknod"] = "worked"
except OSError as e:
    facts["mknod"] = e.errno
facts["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps(facts))
'''


def _request(argv, workdir=None, limits=SHORT, **options) -> SandboxRequest:
    return SandboxRequest(argv=argv, workdir=workdir, workdir_target="/job", limits=limits,
                          **options)


def _our_containers(client) -> list[dict]:
    return client.containers(all=True, filters={"label": SANDBOX_LABEL})


@pytest.mark.sandbox
@pytest.mark.docker
def test_a_hostile_process_meets_every_wall(docker_sandbox, config, tmp_path, monkeypatch):
    from grader.data import sandbox_data_dir

    monkeypatch.setenv("GRADER_TEST_SECRET", "hunter2")
    job = tmp_path / "run" / "job"
    job.mkdir(parents=True)
    (job / "mine.txt").write_text("mine")
    (tmp_path / "run" / "sibling").write_text("another sandbox's")
    code = docker_sandbox.client()
    before = len(_our_containers(code))
    result = docker_sandbox.run(_request(
        [sys.executable, "-c", PROBE], job,
        mounts=[Mount(sandbox_data_dir(config.data_dir), "/data")]))
    assert result.exit_code == 0, result.stderr.decode()[-2000:]
    facts = json.loads(result.stdout)
    assert (facts["uid"], facts["gid"]) == (65534, 65534)
    assert facts["cwd"] == "/job"
    assert facts["caps"] == ["0000000000000000"] * 3  # every capability dropped
    assert facts["no_new_privs"] == "1" and facts["seccomp"] == "2"
    assert facts["writes"] == {
        "/usr/evil": 30, "/etc/evil": 30, "/opt/grader/kernel/evil": 30,  # EROFS
        "/data/evil": 30, "/tmp/ok": "written", "/home/sandbox/ok": "written",
        "/job/ok": "written", "/dev/shm/ok": "written"}
    assert facts["net"] == ["lo"] and facts["internet"] is False
    assert facts["visible"] == {
        "/job/mine.txt": True, "/job/../sibling": False, "/work": False, "/root/.ssh": False,
        "/var/run/docker.sock": False, "/opt/grader/kernel/runner.py": True,
        "/data/mnist.npz": True, "/reference": False, "/etc/shadow-": False}
    assert "GRADER_TEST_SECRET" not in facts["env"]
    assert facts["setuid"] == 1 and facts["chroot"] == 1 and facts["mknod"] == 1  # EPERM
    assert len(facts["processes"]) <= 3  # docker-init, the probe: nothing of the host
    assert (job / "ok").read_text() == "x" and (job / "ok").stat().st_uid == 65534
    assert len(_our_containers(code)) == before  # removed once it ended


@pytest.mark.sandbox
@pytest.mark.docker
def test_limits_hold_from_outside(docker_sandbox):
    started = time.monotonic()
    slow = docker_sandbox.run(_request(["sleep", "300"], limits=SHORT.replace(
        notebook_timeout=3)))
    assert slow.timed_out and slow.signal == signal.SIGKILL
    assert time.monotonic() - started < 15

    hog = docker_sandbox.run(_request(
        [IMAGE_PYTHON, "-c", "b = bytearray(900 * 2**20)\nb[::4096] = b'x' * len(b[::4096])"]))
    assert hog.oom_killed and not hog.timed_out

    flood = docker_sandbox.run(_request([IMAGE_PYTHON, "-c", "print('x' * 10_000_000)"]))
    assert flood.stdout_truncated and len(flood.stdout) == SHORT.log_bytes

    forks = docker_sandbox.run(_request([IMAGE_PYTHON, "-c", textwrap.dedent("""
        import threading, time
        n = 0
        try:
            while True:
                threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
                n += 1
        except RuntimeError:
            print(n)
        """)]))
    assert int(forks.stdout) < SHORT.max_processes

    big = docker_sandbox.run(_request([IMAGE_PYTHON, "-c", textwrap.dedent("""
        try:
            open('/job/big', 'wb').write(b'x' * (2 * 2**20))
        except OSError as e:
            print(e.errno)
        """)]))
    assert big.stdout.strip() == b"27"  # EFBIG: over the file size limit

    scratch = docker_sandbox.run(_request([IMAGE_PYTHON, "-c", textwrap.dedent("""
        try:
            open('/tmp/fill', 'wb').write(b'x' * (900 * 1024) * 30)
        except OSError as e:
            print(e.errno)
        """)], limits=SHORT.replace(file_size_bytes=64 * MiB)))
    assert scratch.stdout.strip() == b"28"  # ENOSPC: /tmp holds scratch_bytes


@pytest.mark.sandbox
@pytest.mark.docker
def test_a_joined_network_shares_only_loopback(docker_sandbox, tmp_path):
    listener = textwrap.dedent("""
        import socket, os
        s = socket.socket(); s.bind(("127.0.0.1", 47001)); s.listen()
        print("ready", flush=True)
        c, _ = s.accept(); c.sendall(str(os.getuid()).encode()); c.close()
        import time; time.sleep(30)
        """)
    client = textwrap.dedent("""
        import socket, os, time
        for _ in range(100):
            try:
                c = socket.create_connection(("127.0.0.1", 47001)); break
            except OSError:
                time.sleep(0.1)
        procs = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        print(c.recv(10).decode(), os.getuid(), len(procs))
        """)
    with docker_sandbox.start(_request([IMAGE_PYTHON, "-c", listener])) as kernel:
        peer = kernel.network_peer()
        assert peer.backend == "docker" and peer.container
        joined = docker_sandbox.run(_request([IMAGE_PYTHON, "-c", client],
                                             user=SandboxUser.GRADER, join_network=peer))
        kernel.stop()
        assert kernel.wait().stopped
    student_uid, grader_uid, processes = joined.stdout.split()
    assert (student_uid, grader_uid) == (b"65534", b"65533")
    assert int(processes) <= 3  # its own pid namespace: the listener is not there


@pytest.mark.sandbox
@pytest.mark.docker
def test_no_container_outlives_a_grader_killed_with_sigkill(docker_sandbox, tmp_path):
    client = docker_sandbox.client()
    script = textwrap.dedent("""
        import sys
        from grader.limits import Limits
        from grader.sandbox import SandboxRequest
        from grader.sandbox.docker import DockerSandbox
        box = DockerSandbox()
        run = box.start(SandboxRequest(argv=["sleep", "600"], workdir=None,
                                       limits=Limits(notebook_timeout=600)))
        print(run._launched.container, flush=True)
        import time; time.sleep(600)
        """)
    grader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert grader.stdout is not None
    container = grader.stdout.readline().decode().strip()
    assert client.inspect_container(container)["State"]["Running"]
    grader.kill()
    grader.wait()
    deadline = time.monotonic() + 30
    while any(c["Id"] == container for c in _our_containers(client)):
        assert time.monotonic() < deadline, "the killed grader's container is still there"
        time.sleep(0.5)


@pytest.mark.sandbox
@pytest.mark.docker
def test_the_reaper_removes_only_containers_of_graders_that_are_gone(docker_sandbox):
    client = docker_sandbox.client()
    namespace = os.stat("/proc/self/ns/pid").st_ino
    made = {}
    for owner in (f"{namespace}-999999999", f"{namespace}-{os.getpid()}"):
        made[owner] = client.create_container(
            docker_sandbox.image_name, ["true"],
            labels={SANDBOX_LABEL: "1", OWNER_LABEL: owner})["Id"]
    try:
        removed = reap_containers(client)
        assert made[f"{namespace}-999999999"] in removed
        assert made[f"{namespace}-{os.getpid()}"] not in removed
    finally:
        for container in made.values():
            try:
                client.remove_container(container, force=True)
            except Exception:
                pass


@pytest.mark.sandbox
@pytest.mark.docker
def test_doctor_says_which_backends_work_and_the_image(docker_sandbox):
    done = subprocess.run([sys.executable, "-m", "grader", "doctor", "--sandbox", "docker"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    lines = done.stdout.splitlines()
    assert "sandbox docker (selected): ok" in lines
    assert any(line.startswith("sandbox bwrap: ") for line in lines)
    assert f"image {image_tag(ImageVariant.CPU)}: present" in lines


def test_doctor_says_why_docker_cannot_run_without_a_daemon():
    from grader.sandbox.docker import DockerSandbox

    reason = DockerSandbox(base_url="unix:///nonexistent/docker.sock").check()
    assert reason is not None and "no Docker daemon answers" in reason
    # and the image's line does not claim it missing: without a daemon nobody can tell
    done = subprocess.run([sys.executable, "-m", "grader", "doctor"], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT),
                               "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    lines = done.stdout.splitlines()
    assert any(line.startswith("sandbox docker: unavailable: no Docker daemon answers")
               for line in lines), lines
    assert f"image {image_tag(ImageVariant.CPU)}: unknown (no Docker daemon answers to ask)" in lines


WARM_HOLDER = """
import sys, time
from grader.config import GraderConfig
from grader.sandbox.docker import DockerSandbox
from grader.warm_pool import PoolSettings, WarmPool
box = DockerSandbox()
pool = WarmPool(GraderConfig.from_env(), ["chap06_cnn"], lambda cpus: box,
                settings=PoolSettings(size=1, min_available_bytes=0)).start()
assert pool.wait_ready(timeout=300)
print("ready", flush=True)
time.sleep(3600)
"""


@pytest.mark.sandbox
@pytest.mark.docker
def test_a_warm_kit_of_containers_serves_one_submission(docker_sandbox, config, exercise):
    """The warm pool on the docker backend: a kit's three containers wait, one submission
    runs in them, and none of them is left once the kit is used and the pool closed."""
    import nbformat

    from grader.pipeline import grade_notebook
    from grader.report import Outcome
    from grader.warm_pool import PoolSettings, WarmPool

    client = docker_sandbox.client()
    before = {c["Id"] for c in _our_containers(client)}
    pool = WarmPool(config, ["chap06_cnn"], lambda cpus: docker_sandbox,
                    settings=PoolSettings(size=1, min_available_bytes=0))
    with pool:
        assert pool.wait_ready(timeout=300), pool.stats()
        # read before the take: once a kit is taken the pool starts its replacement, whose
        # containers stay while the pool is open (a kit that failed to warm is closed before)
        waiting = {c["Id"] for c in _our_containers(client)} - before
        assert len(waiting) >= 3  # kernel, runner and clean room, before any notebook
        kit = pool.take("chap06_cnn")
        assert kit is not None
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
        with kit:  # taken from the pool: ours to close
            report = grade_notebook(nbformat.writes(nb).encode(), exercise, config,
                                    docker_sandbox, kit=kit)
        assert report.outcome is Outcome.GRADED, report.reason
        assert "42" in (report.executed_notebook or "")
        assert report.timings["kit_age"] > 0
        assert pool.closers.wait()
        assert not waiting & {c["Id"] for c in _our_containers(client)}
    deadline = time.monotonic() + 30
    while {c["Id"] for c in _our_containers(client)} - before:
        assert time.monotonic() < deadline, "the closed pool's containers are still there"
        time.sleep(0.5)


@pytest.mark.sandbox
@pytest.mark.docker
def test_no_warm_container_outlives_a_pool_killed_with_sigkill(docker_sandbox):
    client = docker_sandbox.client()
    before = {c["Id"] for c in _our_containers(client)}
    holder = subprocess.Popen([sys.executable, "-c", WARM_HOLDER], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().decode().strip() == "ready"
        assert len({c["Id"] for c in _our_containers(client)} - before) >= 3
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 30
    while {c["Id"] for c in _our_containers(client)} - before:
        assert time.monotonic() < deadline, "the killed pool's containers are still there"
        time.sleep(0.5)
