"""The sandbox backends: the bubblewrap one against the real kernel, the unsafe one for the
plumbing they share (output caps, streaming, the wall clock, started runs).

Tests marked ``sandbox`` need bubblewrap and root (for cgroups); they are skipped where those
are missing, and fail (never skip) when the backend itself is broken.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from grader.limits import Limits, MiB
from grader.sandbox import (
    BubblewrapSandbox,
    Mount,
    NetworkPeer,
    SandboxError,
    SandboxRequest,
    SandboxResult,
    SandboxUser,
    UnsafeLocalSandbox,
    UnsafeSandboxWarning,
    create_run_dir,
    get_sandbox,
    sweep_leftovers,
)
from grader.sandbox.cgroups import (
    CgroupError,
    CgroupLayout,
    RunCgroup,
    find_layout,
    parse_keyed,
    sweep_cgroups,
)
from grader.sandbox.launch import JOINED_NAMESPACES, LaunchFds, launch_argv, tool
from grader.sandbox.process import owner_gone, owner_tag, pid_alive, runtime_paths
from grader.sandbox.seccomp import seccomp_program
from grader.sandbox.staging import (
    RUN_DIR_PREFIX,
    STAGE_PREFIX,
    create_stage,
    sweep_run_dirs,
    sweep_stages,
)
from grader.sandbox.unsafe import translate_paths

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent
FAST = Limits(notebook_timeout=20.0)


def python_request(
    code: str,
    workdir: Path | None,
    limits: Limits = FAST,
    *,
    args: Sequence[str] = (),
    mounts: Sequence[Mount] = (),
    env: Mapping[str, str] | None = None,
    user: SandboxUser = SandboxUser.STUDENT,
    join_network: NetworkPeer | None = None,
) -> SandboxRequest:
    """The venv's Python running ``code`` (dedented) with ``args``."""
    return SandboxRequest(
        argv=[PYTHON, "-c", textwrap.dedent(code), *args],
        workdir=workdir,
        mounts=mounts,
        env=env or {},
        limits=limits,
        user=user,
        join_network=join_network,
    )


def last_json(result: SandboxResult) -> Any:
    """The JSON document on the last stdout line of a run that must have succeeded."""
    assert result.sandbox_error is None, result.sandbox_error
    assert result.exit_code == 0, result.stderr.decode()
    return json.loads(result.stdout.decode().splitlines()[-1])


# --- pure helpers ---------------------------------------------------------------------------


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="bwrap, docker, unsafe"):
        get_sandbox("firecracker")


def test_get_sandbox_passes_options() -> None:
    sandbox = get_sandbox("bwrap", hostname="box", require_cgroup=False)
    assert isinstance(sandbox, BubblewrapSandbox)
    assert (sandbox.name, sandbox.hostname, sandbox.require_cgroup) == ("bwrap", "box", False)


def test_translate_paths_only_at_path_starts() -> None:
    mapping = {"/work": "/h/w", "/work/data": "/h/d"}
    assert translate_paths("/work/a.json", mapping) == "/h/w/a.json"
    assert translate_paths("/work/data/x", mapping) == "/h/d/x"
    assert translate_paths("--out=/work", mapping) == "--out=/h/w"
    assert translate_paths("/a:/work/data:/b", mapping) == "/a:/h/d:/b"
    assert translate_paths("/workshop/x", mapping) == "/workshop/x"
    assert translate_paths("/x/work/y", mapping) == "/x/work/y"


def test_runtime_paths_cover_venv_and_base_interpreter() -> None:
    paths = runtime_paths(PYTHON)
    assert sys.prefix in paths
    assert os.path.realpath(sys.base_prefix) in [os.path.realpath(p) for p in paths]


def test_find_layout_prefers_v1_with_both_controllers(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
        "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"
    )
    assert find_layout(mounts) == CgroupLayout(
        1, Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids")
    )


def test_find_layout_v2_needs_memory_and_pids(tmp_path: Path) -> None:
    root = tmp_path / "unified"
    root.mkdir()
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {root} cgroup2 rw 0 0\n")
    (root / "cgroup.controllers").write_text("cpu io memory\n")
    with pytest.raises(CgroupError, match="memory and pids"):
        find_layout(mounts)
    (root / "cgroup.controllers").write_text("cpu io memory pids\n")
    assert find_layout(mounts) == CgroupLayout(2, root, root)


def test_v2_counters_are_read_from_memory_events_and_peak(tmp_path: Path) -> None:
    cgroup = RunCgroup(CgroupLayout(2, tmp_path, tmp_path), tmp_path, tmp_path)
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert not cgroup.oom_killed()
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    assert cgroup.oom_killed()
    assert cgroup.peak_memory_bytes() is None
    (tmp_path / "memory.peak").write_text("123456\n")
    assert cgroup.peak_memory_bytes() == 123456


def test_v1_without_oom_kill_counter_falls_back_to_failcnt_and_sigkill(tmp_path: Path) -> None:
    cgroup = RunCgroup(CgroupLayout(1, tmp_path, tmp_path), tmp_path, tmp_path)
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    (tmp_path / "memory.failcnt").write_text("5\n")
    assert cgroup.oom_killed(9)
    assert not cgroup.oom_killed(None)
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert not cgroup.oom_killed(9)


def test_parse_keyed_ignores_junk() -> None:
    assert parse_keyed("oom 1\nbogus\noom_kill 2\nname x\n") == {"oom": 1, "oom_kill": 2}


def test_requests_run_as_the_student_in_a_network_of_their_own_by_default(tmp_path: Path) -> None:
    request = SandboxRequest(argv=["true"], workdir=tmp_path)
    assert request.user is SandboxUser.STUDENT and request.join_network is None


def test_sandbox_users_map_to_distinct_host_ids() -> None:
    sandbox = BubblewrapSandbox()
    assert sandbox.host_ids(SandboxUser.STUDENT) == (65534, 65534)
    assert sandbox.host_ids(SandboxUser.GRADER) == (65533, 65533)
    custom = BubblewrapSandbox(host_uid=5000, host_gid=5001, grader_uid=6000, grader_gid=6001)
    assert custom.host_ids(SandboxUser.STUDENT) == (5000, 5001)
    assert custom.host_ids(SandboxUser.GRADER) == (6000, 6001)
    with pytest.raises(ValueError, match="must differ"):
        BubblewrapSandbox(grader_uid=65534)


def test_launch_of_a_joining_grader_request(tmp_path: Path) -> None:
    """As root: nsenter into the peer's network first, the grader's ids for setpriv, bwrap's
    own namespaces but the network, sized tmpfs, and bwrap's options only in the memfd."""
    request = SandboxRequest(
        argv=["true"],
        workdir=None,
        user=SandboxUser.GRADER,
        join_network=NetworkPeer("bwrap", pid=1, namespace=2),
        limits=FAST.replace(scratch_bytes=8 * MiB),
    )
    fds = LaunchFds(args=7, info=8, seccomp=9, network=10)
    argv, options = launch_argv(BubblewrapSandbox(python=None), request, None, tmp_path, True, fds)
    assert argv[:3] == [tool("nsenter"), "--net=/proc/self/fd/10", "--"]
    script = argv[-1]
    assert "--reuid=65533" in script and "--regid=65533" in script
    assert script.endswith("--args 7 -- /bin/sh -c 'printf x >&0; exec </dev/null; exec \"$@\"' sh true")
    assert "--setenv" not in script and str(tmp_path) not in script.split("bwrap")[-1]
    assert "--unshare-all" not in options and "--unshare-net" not in options
    assert all(option in options for option in JOINED_NAMESPACES)
    for target in ("/tmp", "/home/sandbox", "/work"):
        at = options.index(target)
        assert options[at - 3:at] == ["--size", str(8 * MiB), "--tmpfs"], target
    assert options[options.index("--info-fd") + 1] == "8"
    assert options[options.index("--seccomp") + 1] == "9"


def test_seccomp_program_is_built_once() -> None:
    program = seccomp_program()
    assert program is seccomp_program()
    assert len(program) % 8 == 0 and len(program) > 8 * 50  # struct sock_filter is 8 bytes


# --- unsafe backend -------------------------------------------------------------------------


@pytest.fixture
def unsafe() -> UnsafeLocalSandbox:
    with pytest.warns(UnsafeSandboxWarning, match="no isolation"):
        return UnsafeLocalSandbox()


def test_unsafe_warns_when_constructed() -> None:
    with pytest.warns(UnsafeSandboxWarning, match="development only"):
        get_sandbox("unsafe")


def test_unsafe_maps_targets_to_host_paths(unsafe: UnsafeLocalSandbox, tmp_path: Path) -> None:
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    data.mkdir()
    (data / "in.txt").write_text("input")
    request = python_request(
        """
        import os, sys
        text = open(os.environ["DATA"] + "/in.txt").read()
        open(sys.argv[1], "w").write(text + " " + os.getcwd())
        """,
        work,
        args=["/work/out.txt"],
        mounts=[Mount(data, "/data")],
        env={"DATA": "/data"},
    )
    result = unsafe.run(request)
    assert result.exit_code == 0, result.stderr
    assert (work / "out.txt").read_text() == f"input {work}"


def test_unsafe_caps_output_and_keeps_reading(unsafe: UnsafeLocalSandbox, tmp_path: Path) -> None:
    code = """
        import sys
        for _ in range(200):
            sys.stdout.write("x" * 100_000)
            sys.stderr.write("y" * 100_000)
    """
    result = unsafe.run(python_request(code, tmp_path, FAST.replace(log_bytes=1000)))
    assert result.exit_code == 0 and not result.timed_out
    assert result.stdout == b"x" * 1000 and result.stdout_truncated
    assert result.stderr == b"y" * 1000 and result.stderr_truncated


def test_unsafe_wall_clock(unsafe: UnsafeLocalSandbox, tmp_path: Path) -> None:
    result = unsafe.run(python_request("import time; time.sleep(60)", tmp_path,
                                       FAST.replace(notebook_timeout=1.0)))
    assert result.timed_out and result.signal == 9
    assert result.wall_seconds < 5


def test_unsafe_cuts_long_lines(unsafe: UnsafeLocalSandbox, tmp_path: Path) -> None:
    lines: list[str] = []
    code = "print('a'); print('b' * 200_000); print('c', end='')"
    result = unsafe.run(python_request(code, tmp_path), on_line=lines.append)
    assert result.exit_code == 0
    assert lines == ["a", "b" * 64 * 1024, "c"]


def test_unsafe_missing_mount_source(unsafe: UnsafeLocalSandbox, tmp_path: Path) -> None:
    result = unsafe.run(python_request("pass", tmp_path, mounts=[Mount(tmp_path / "no", "/d")]))
    assert result.sandbox_error and "does not exist" in result.sandbox_error


def test_unsafe_start_follows_in_the_background_and_stops(unsafe: UnsafeLocalSandbox) -> None:
    lines: queue.Queue[str] = queue.Queue()
    code = "import time; print('up', flush=True); time.sleep(60)"
    with unsafe.start(python_request(code, None), on_line=lines.put) as run:
        peer = run.network_peer()
        assert peer == NetworkPeer(backend="unsafe")
        assert lines.get(timeout=10) == "up"
        with pytest.raises(TimeoutError):
            run.wait(timeout=0.2)
        joined = unsafe.run(python_request("print('joined')", None, join_network=peer))
        run.stop()
        run.stop()
        result = run.wait(timeout=10)
    assert joined.exit_code == 0 and joined.stdout == b"joined\n"
    assert result.stopped and not result.timed_out and result.sandbox_error is None
    assert result.signal == signal.SIGKILL and result.stdout == b"up\n"


# --- bubblewrap backend ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bwrap(cgroup_parent: str) -> BubblewrapSandbox:
    """Fails, not skips, where the machine lacks what the backend needs: `make test` installs
    bubblewrap and runs as root, and a grader that cannot sandbox must not look green."""
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: apt-get install bubblewrap")
    if os.geteuid() != 0:
        pytest.fail("per-run cgroups need root")
    return BubblewrapSandbox(cgroup_parent=cgroup_parent)


@pytest.mark.sandbox
def test_check_passes(bwrap: BubblewrapSandbox) -> None:
    assert bwrap.check() is None


@pytest.mark.sandbox
def test_network_is_loopback_only(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    code = """
        import json, socket
        out = {"interfaces": [name for _, name in socket.if_nameindex()]}
        s = socket.socket()
        s.settimeout(3)
        try:
            s.connect(("1.1.1.1", 53))
            out["outside"] = "connected"
        except OSError as e:
            out["outside"] = e.errno
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname(), timeout=3)
        conn, _ = server.accept()
        client.sendall(b"ping")
        out["loopback"] = conn.recv(4).decode()
        print(json.dumps(out))
    """
    out = last_json(bwrap.run(python_request(code, tmp_path)))
    assert out["interfaces"] == ["lo"]
    assert out["outside"] in (errno.ENETUNREACH, errno.EHOSTUNREACH), out
    assert out["loopback"] == "ping"


@pytest.mark.sandbox
def test_runs_unprivileged_and_results_reach_the_host(
    bwrap: BubblewrapSandbox, tmp_path: Path
) -> None:
    (tmp_path / "input.txt").write_text("from host")
    code = """
        import json, os
        status = dict(line.split(":\\t", 1) for line in open("/proc/self/status")
                      if ":\\t" in line)
        try:
            open("/etc/passwd", "a")
            etc = "writable"
        except OSError as e:
            etc = e.errno
        open("/work/result.txt", "w").write(open("/work/input.txt").read() + " and back")
        print(json.dumps({"uid": os.getuid(), "cap_eff": status["CapEff"], "etc": etc,
                          "fds": sorted(os.listdir("/proc/self/fd"))}))
    """
    out = last_json(bwrap.run(python_request(code, tmp_path)))
    assert out["uid"] == bwrap.sandbox_uid
    assert int(out["cap_eff"], 16) == 0
    assert out["etc"] in (errno.EACCES, errno.EROFS)
    assert len(out["fds"]) <= 4, out["fds"]  # stdin, stdout, stderr and listdir's own
    result = tmp_path / "result.txt"
    assert result.read_text() == "from host and back"
    assert result.stat().st_uid == bwrap.host_uid != 0


@pytest.mark.sandbox
def test_host_files_outside_the_mounts_are_invisible(
    bwrap: BubblewrapSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    beside = tmp_path / "secret.txt"
    beside.write_text("secret")
    in_repo = REPO / f".sandbox-probe-{uuid.uuid4().hex[:8]}"
    in_repo.write_text("secret")
    monkeypatch.setenv("GRADER_SECRET", "secret")
    try:
        code = f"""
            import json, os
            print(json.dumps({{
                "seen": [p for p in [{str(beside)!r}, {str(in_repo)!r}] if os.path.exists(p)],
                "root": sorted(os.listdir("/root")),
                "env": sorted(os.environ),
            }}))
        """
        out = last_json(bwrap.run(python_request(code, workdir, env={"EXTRA": "1"})))
    finally:
        in_repo.unlink()
    assert out["seen"] == []
    under_root = {p.split("/")[2] for p in runtime_paths(PYTHON) if p.startswith("/root/")}
    assert set(out["root"]) == under_root  # nothing of /root but the interpreter's path
    assert set(out["env"]) <= {"HOME", "TMPDIR", "PATH", "LANG", "PWD", "EXTRA"}
    assert "EXTRA" in out["env"]


@pytest.mark.sandbox
def test_runtime_is_read_only(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    code = """
        import json, os, sys
        errors = []
        for prefix in (sys.prefix, sys.base_prefix):
            try:
                open(os.path.join(prefix, "probe.txt"), "w")
                errors.append("written")
            except OSError as e:
                errors.append(e.errno)
        print(json.dumps(errors))
    """
    result = bwrap.run(python_request(code, tmp_path))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [errno.EROFS, errno.EROFS]


@pytest.mark.sandbox
def test_memory_limit_ends_in_oom_kill(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    code = "block = bytearray(b'x') * (1 << 30)\nprint('survived')"
    result = bwrap.run(python_request(code, tmp_path, FAST.replace(memory_bytes=200 * MiB)))
    assert result.oom_killed
    assert result.signal == 9 and result.exit_code is None
    assert result.stdout == b""
    assert result.peak_memory_bytes is not None
    assert 100 * MiB < result.peak_memory_bytes <= 200 * MiB


@pytest.mark.sandbox
def test_small_run_is_not_reported_as_oom(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    result = bwrap.run(python_request("block = bytearray(b'x') * (50 << 20)", tmp_path,
                                      FAST.replace(memory_bytes=200 * MiB)))
    assert result.exit_code == 0 and not result.oom_killed
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes > 50 * MiB


@pytest.mark.sandbox
def test_process_limit_stops_forks(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    code = """
        import json, os, time
        children, error = 0, None
        try:
            for _ in range(64):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
        except OSError as e:
            error = e.errno
        print(json.dumps({"children": children, "error": error}))
    """
    out = last_json(bwrap.run(python_request(code, tmp_path, FAST.replace(max_processes=16))))
    assert out["error"] == errno.EAGAIN
    assert 0 < out["children"] < 16


@pytest.mark.sandbox
def test_file_size_limit(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    code = """
        import json
        try:
            with open("/work/big.bin", "wb") as f:
                f.write(b"x" * (2 << 20))
            print(json.dumps("written"))
        except OSError as e:
            print(json.dumps(e.errno))
    """
    out = last_json(bwrap.run(python_request(code, tmp_path, FAST.replace(file_size_bytes=MiB))))
    assert out == errno.EFBIG
    assert (tmp_path / "big.bin").stat().st_size <= MiB


@pytest.mark.sandbox
def test_wall_clock_kills_the_whole_run(
    bwrap: BubblewrapSandbox, tmp_path: Path, cgroup_parent: str
) -> None:
    code = """
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         start_new_session=True)
        print("started", flush=True)
        time.sleep(60)
    """
    started = time.monotonic()
    result = bwrap.run(python_request(code, tmp_path, FAST.replace(notebook_timeout=2.0)))
    assert result.timed_out
    assert result.signal == 9
    assert result.stdout == b"started\n"
    assert 2.0 <= result.wall_seconds < 5 and time.monotonic() - started < 6
    assert run_cgroups(cgroup_parent) == []


@pytest.mark.sandbox
def test_stdout_cap_truncates_without_blocking(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    code = """
        import sys
        for _ in range(500):
            sys.stdout.write("x" * 100_000)
            sys.stderr.write("y" * 100_000)
        open("/work/finished", "w").close()
    """
    result = bwrap.run(python_request(code, tmp_path, FAST.replace(log_bytes=1000)))
    assert result.exit_code == 0 and not result.timed_out
    assert result.stdout == b"x" * 1000 and result.stdout_truncated
    assert result.stderr == b"y" * 1000 and result.stderr_truncated
    assert (tmp_path / "finished").exists()


@pytest.mark.sandbox
def test_lines_arrive_while_the_command_runs(
    bwrap: BubblewrapSandbox, tmp_path: Path, cgroup_parent: str
) -> None:
    """The command waits for a file the callback creates on its first line: only streaming
    lets it finish with ``go``. The callback also sees the run's cgroup while it exists."""
    code = """
        import os, time
        print("ready", flush=True)
        deadline = time.monotonic() + 10
        while not os.path.exists("/work/go") and time.monotonic() < deadline:
            time.sleep(0.02)
        print("go" if os.path.exists("/work/go") else "no go")
        print("z" * 100_000)
    """
    lines: list[str] = []
    during: list[list[str]] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "ready":
            during.append(run_cgroups(cgroup_parent))
            (tmp_path / "go").touch()

    result = bwrap.run(python_request(code, tmp_path), on_line=on_line)
    assert result.exit_code == 0, result.stderr
    assert lines == ["ready", "go", "z" * 64 * 1024]
    assert len(during[0]) == 1
    assert run_cgroups(cgroup_parent) == []


@pytest.mark.sandbox
def test_missing_mount_source_is_a_sandbox_error(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    result = bwrap.run(python_request("pass", tmp_path, mounts=[Mount(tmp_path / "no", "/data")]))
    assert result.sandbox_error and "does not exist" in result.sandbox_error
    assert result.exit_code is None


@pytest.mark.sandbox
def test_bwrap_setup_failure_is_a_sandbox_error(
    bwrap: BubblewrapSandbox, tmp_path: Path, cgroup_parent: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = bwrap.run(python_request("pass", tmp_path / "data", mounts=[Mount(data, "/usr/x")]))
    assert result.sandbox_error and result.sandbox_error.startswith("sandbox did not start: bwrap")
    assert run_cgroups(cgroup_parent) == []


@pytest.mark.sandbox
def test_mounts_are_read_only_unless_writable(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    work, ro, rw = tmp_path / "work", tmp_path / "ro", tmp_path / "rw"
    for d in (work, ro, rw):
        d.mkdir()
    (ro / "data.txt").write_text("data")
    os.chmod(rw, 0o777)
    code = """
        import json
        out = {"read": open("/data/data.txt").read()}
        for target in ("/data/new.txt", "/scratch/new.txt"):
            try:
                open(target, "w").close()
                out[target] = "ok"
            except OSError as e:
                out[target] = e.errno
        print(json.dumps(out))
    """
    mounts = [Mount(ro, "/data"), Mount(rw, "/scratch", writable=True)]
    out = last_json(bwrap.run(python_request(code, work, mounts=mounts)))
    assert out == {"read": "data", "/data/new.txt": errno.EROFS, "/scratch/new.txt": "ok"}


@pytest.mark.sandbox
def test_cgroup_failure_is_a_sandbox_error_unless_allowed(tmp_path: Path) -> None:
    strict = BubblewrapSandbox(cgroup_parent="../escape")
    result = strict.run(python_request("print('ran')", tmp_path))
    assert result.sandbox_error and "cgroup" in result.sandbox_error

    lenient = BubblewrapSandbox(cgroup_parent="../escape", require_cgroup=False)
    result = lenient.run(python_request("print('ran')", tmp_path))
    assert result.sandbox_error is None and result.stdout == b"ran\n"
    assert result.peak_memory_bytes is None and not result.oom_killed


@pytest.mark.sandbox
def test_started_run_is_followed_in_the_background_until_stopped(
    bwrap: BubblewrapSandbox, tmp_path: Path, cgroup_parent: str
) -> None:
    lines: queue.Queue[str] = queue.Queue()
    code = "import time; print('up', flush=True); time.sleep(60)"
    started = time.monotonic()
    fds = open_fds()
    with bwrap.start(python_request(code, tmp_path), on_line=lines.put) as run:
        assert lines.get(timeout=20) == "up"
        assert len(run_cgroups(cgroup_parent)) == 1
        with pytest.raises(TimeoutError):
            run.wait(timeout=0.2)
        run.stop()
        run.stop()
        result = run.wait(timeout=10)
    assert result.stopped and not result.timed_out and result.sandbox_error is None
    assert result.signal == signal.SIGKILL and result.stdout == b"up\n"
    assert time.monotonic() - started < 15
    assert run_cgroups(cgroup_parent) == []
    assert open_fds() == fds


@pytest.mark.sandbox
def test_leaving_a_started_run_kills_it_and_a_finished_one_gives_its_result(
    bwrap: BubblewrapSandbox, tmp_path: Path, cgroup_parent: str
) -> None:
    with bwrap.start(python_request("import time; time.sleep(60)", tmp_path)) as run:
        run.network_peer()
    assert run_cgroups(cgroup_parent) == []
    assert run.wait(timeout=0).stopped
    with bwrap.start(python_request("print('done')", tmp_path)) as run:
        result = run.wait(timeout=20)
    assert (result.exit_code, result.stdout, result.stopped) == (0, b"done\n", False)


@pytest.mark.sandbox
def test_a_run_that_cannot_start_has_its_error_as_result(
    bwrap: BubblewrapSandbox, tmp_path: Path
) -> None:
    with bwrap.start(python_request("pass", tmp_path / "missing")) as run:
        with pytest.raises(SandboxError, match="did not start"):
            run.network_peer()
        result = run.wait()
    assert result.sandbox_error and "does not exist" in result.sandbox_error


JOIN_SERVER = """
    import json, os, socket, sys
    server = socket.create_server(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    server.settimeout(30)
    conn, _ = server.accept()
    conn.settimeout(30)
    marker = conn.recv(100).decode()  # the runner is alive until it gets an answer
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                    found.append(pid)
            except OSError:
                pass
    for top in ("/work", "/tmp", os.environ["HOME"]):
        for path, dirs, files in os.walk(top):
            found += [os.path.join(path, n) for n in dirs + files if marker in n]
    open("/work/from-kernel.txt", "w").write("kernel")
    conn.sendall(b"pong")
    print(json.dumps({"marker": marker, "found": found,
                      "runner_dir": os.path.exists(sys.argv[1])}))
"""

JOIN_CLIENT = """
    import json, os, socket, sys, time
    port, marker = int(sys.argv[1]), sys.argv[2]
    open(f"/work/{marker}", "w").write("runner")
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(marker.encode())
    reply = client.recv(4).decode()
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=3)
        outside = "connected"
    except OSError as e:
        outside = e.errno
    deadline = time.monotonic() + 20
    while not os.path.exists("/work/go") and time.monotonic() < deadline:
        time.sleep(0.02)
    print(json.dumps({"reply": reply, "outside": outside,
                      "interfaces": [name for _, name in socket.if_nameindex()],
                      "pids": sorted(p for p in os.listdir("/proc") if p.isdigit())}))
"""


def host_uid_of(pid: int) -> int:
    """The real uid of host process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


@pytest.mark.sandbox
def test_a_grader_sandbox_joins_the_student_network_and_nothing_else(
    bwrap: BubblewrapSandbox, tmp_path: Path
) -> None:
    """The runner (grader) reaches a server in the kernel's sandbox (student) over loopback,
    and still not the outside; the kernel sees neither the runner's processes nor its files;
    they run as different host users and each one's files are its own, mode 0700."""
    kernel_dir, runner_dir = tmp_path / "kernel", tmp_path / "runner"
    kernel_dir.mkdir()
    runner_dir.mkdir()
    marker = f"runner-marker-{uuid.uuid4().hex}"
    lines: queue.Queue[str] = queue.Queue()
    kernel_request = python_request(JOIN_SERVER, kernel_dir, args=[str(runner_dir)])
    with bwrap.start(kernel_request, on_line=lines.put) as kernel:
        peer = kernel.network_peer()
        kernel_uid = host_uid_of(peer.pid or 0)
        port = lines.get(timeout=20)
        runner_request = python_request(JOIN_CLIENT, runner_dir, args=[port, marker],
                                        user=SandboxUser.GRADER, join_network=peer)
        with bwrap.start(runner_request) as runner:
            runner_peer = runner.network_peer()
            runner_uid = host_uid_of(runner_peer.pid or 0)
            kernel_result = kernel.wait(timeout=30)
            (runner_dir / "go").touch()
            runner_result = runner.wait(timeout=30)
    kernel_out, runner_out = last_json(kernel_result), last_json(runner_result)
    assert runner_out["reply"] == "pong" and kernel_out["marker"] == marker
    assert runner_out["outside"] in (errno.ENETUNREACH, errno.EHOSTUNREACH), runner_out
    assert runner_out["interfaces"] == ["lo"]
    assert runner_out["pids"] == ["1", "2"]  # bwrap and itself: a PID namespace of its own
    assert runner_peer.namespace == peer.namespace
    assert kernel_out["found"] == [] and kernel_out["runner_dir"] is False
    assert (kernel_uid, runner_uid) == (bwrap.host_uid, bwrap.grader_uid)
    assert (kernel_dir / "from-kernel.txt").stat().st_uid == bwrap.host_uid
    assert (runner_dir / marker).stat().st_uid == bwrap.grader_uid
    for directory, uid in ((kernel_dir, bwrap.host_uid), (runner_dir, bwrap.grader_uid)):
        info = directory.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (uid, 0o700)


RUNNER_CLIENT = """
    import json
    from jupyter_client import BlockingKernelClient
    client = BlockingKernelClient()
    client.load_connection_file("/conn/kernel.json")
    client.start_channels()
    client.wait_for_ready(timeout=60)
    texts = []

    def collect(message):
        if message["msg_type"] == "stream":
            texts.append(message["content"]["text"])

    reply = client.execute_interactive("import os; print(6 * 7, os.getuid())", timeout=60,
                                       output_hook=collect)
    client.stop_channels()
    print(json.dumps({"status": reply["content"]["status"], "output": "".join(texts)}))
"""


@pytest.mark.sandbox
def test_a_runner_drives_the_student_kernel_across_sandboxes(
    bwrap: BubblewrapSandbox, tmp_path: Path
) -> None:
    """The real layout: an ipykernel in the student's sandbox, a jupyter_client in the
    grader's, joined over loopback ZMQ (the seccomp filter on in both)."""
    kernel_dir, conn_dir, runner_dir = tmp_path / "kernel", tmp_path / "conn", tmp_path / "runner"
    for directory in (kernel_dir, conn_dir, runner_dir):
        directory.mkdir()
    ports = dict(zip(("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"),
                     range(40101, 40106), strict=True))
    connection = {**ports, "ip": "127.0.0.1", "key": uuid.uuid4().hex, "transport": "tcp",
                  "signature_scheme": "hmac-sha256", "kernel_name": "python3"}
    for directory in (kernel_dir, conn_dir):
        (directory / "kernel.json").write_text(json.dumps(connection))
    (conn_dir / "kernel.json").chmod(0o644)
    kernel_request = SandboxRequest(
        argv=[PYTHON, "-m", "ipykernel_launcher", "-f", "/work/kernel.json"],
        workdir=kernel_dir,
        limits=FAST.replace(notebook_timeout=120.0, memory_bytes=1024 * MiB),
    )
    with bwrap.start(kernel_request) as kernel:
        runner_request = python_request(
            RUNNER_CLIENT, runner_dir, FAST.replace(notebook_timeout=90.0),
            mounts=[Mount(conn_dir, "/conn")], user=SandboxUser.GRADER,
            join_network=kernel.network_peer())
        runner_result = bwrap.run(runner_request)
        kernel.stop()
        kernel_result = kernel.wait(timeout=10)
    assert last_json(runner_result) == {"status": "ok", "output": f"42 {bwrap.sandbox_uid}\n"}
    assert kernel_result.stopped and kernel_result.sandbox_error is None


@pytest.mark.sandbox
def test_joining_is_refused_without_root_or_a_live_peer(
    bwrap: BubblewrapSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bwrap.start(python_request("pass", tmp_path)) as first:
        peer = first.network_peer()
        assert first.wait(timeout=20).exit_code == 0
    fds = open_fds()
    gone = bwrap.run(python_request("pass", tmp_path, join_network=peer))
    assert gone.sandbox_error and "gone" in gone.sandbox_error
    unsafe_peer = NetworkPeer(backend="unsafe")
    other = bwrap.run(python_request("pass", tmp_path, join_network=unsafe_peer))
    assert other.sandbox_error and "'unsafe'" in other.sandbox_error
    assert open_fds() == fds  # nothing leaked by the launches that failed
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    unprivileged = bwrap.run(python_request("pass", tmp_path, join_network=peer))
    assert unprivileged.sandbox_error and "needs root" in unprivileged.sandbox_error


def open_fds() -> list[str]:
    """File descriptors open in this process."""
    return sorted(os.listdir("/proc/self/fd"))


ENVIRONMENT_PROBE = """
    import json, os, time
    texts = {"os.environ": json.dumps(dict(os.environ))}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for name in ("environ", "cmdline"):
                try:
                    data = open(f"/proc/{pid}/{name}", "rb").read()
                except OSError:
                    continue
                texts[f"{pid}/{name}"] = data.decode("utf-8", "replace")
    print(json.dumps(texts), flush=True)
    deadline = time.monotonic() + 20
    while not os.path.exists("/work/go") and time.monotonic() < deadline:
        time.sleep(0.02)
"""


@pytest.mark.sandbox
def test_nothing_of_the_host_environment_or_paths_reaches_the_sandbox(
    cgroup_parent: str, stage_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read from inside (every /proc/*/environ and cmdline, bwrap as PID 1 included) and from
    the host (the sandbox's first process and the bwrap outside that launched it)."""
    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("GRADER_TEST_CANARY", canary)
    sandbox = BubblewrapSandbox(cgroup_parent=cgroup_parent, stage_root=str(stage_root))
    host_side: dict[str, bytes] = {}
    with sandbox.start(python_request(ENVIRONMENT_PROBE, tmp_path)) as run:
        pid = run.network_peer().pid
        ppid = int(Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0])
        for process in (pid, ppid):
            for name in ("environ", "cmdline"):
                host_side[f"{process}/{name}"] = Path(f"/proc/{process}/{name}").read_bytes()
        (tmp_path / "go").touch()
        result = run.wait(timeout=30)
    inside = last_json(result)
    assert inside["1/environ"] == "" and "bwrap" in inside["1/cmdline"]
    assert host_side[f"{pid}/environ"] == host_side[f"{ppid}/environ"] == b""
    texts = [*inside.values(), *(v.decode("utf-8", "replace") for v in host_side.values())]
    for text in texts:
        assert canary not in text
        assert str(stage_root) not in text and str(tmp_path) not in text


SCRATCH_PROBE = """
    import json, os, sys
    out = {}
    for directory in ("/work", "/tmp", os.environ["HOME"]):
        path = os.path.join(directory, sys.argv[1])
        try:
            with open(path, "wb") as f:
                for _ in range(32):
                    f.write(b"x" * (1 << 20))
                    f.flush()
            out[directory] = "written"
        except OSError as e:
            out[directory] = e.errno
        out[directory + ":size"] = os.path.getsize(path)
    print(json.dumps(out))
"""


@pytest.mark.sandbox
def test_scratch_places_are_sized_tmpfs_off_the_host(
    cgroup_parent: str, stage_root: Path
) -> None:
    """Without a work directory, /work is a tmpfs like /tmp and the home: each holds at most
    ``scratch_bytes`` (ENOSPC beyond), and nothing written there appears on the host."""
    sandbox = BubblewrapSandbox(cgroup_parent=cgroup_parent, stage_root=str(stage_root))
    name = f"scratch-{uuid.uuid4().hex}"
    limits = FAST.replace(scratch_bytes=8 * MiB)
    out = last_json(sandbox.run(python_request(SCRATCH_PROBE, None, limits, args=[name])))
    for directory in ("/work", "/tmp", "/home/sandbox"):
        assert out[directory] == errno.ENOSPC, out
        assert 7 * MiB <= out[directory + ":size"] <= 8 * MiB
    for root in {tempfile.gettempdir(), str(stage_root), str(REPO)}:
        for _, dirs, files in os.walk(root):
            assert name not in dirs + files


SYSCALL_PROBE = """
    import ctypes, json
    libc = ctypes.CDLL(None, use_errno=True)

    def call(number, *args):
        ctypes.set_errno(0)
        result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
        return 0 if result >= 0 else ctypes.get_errno()

    print(json.dumps({
        "unshare": call(272, 0x10000000),  # CLONE_NEWUSER
        "mount": call(165, 0, 0, 0, 0, 0),
        "keyctl": call(250, 0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
        "ptrace": call(101, 16, 999_999, 0, 0),  # PTRACE_ATTACH to a pid that does not exist
        "bpf": call(321, 0, 0, 0),
        "perf_event_open": call(298, 0, 0, -1, -1, 0),
        "userfaultfd": call(323, 1),  # UFFD_USER_MODE_ONLY: allowed unprivileged
        "personality": call(135, 0x0040000),  # ADDR_NO_RANDOMIZE
        "personality query": call(135, 0xFFFFFFFF),
        "x32 getpid": call(0x40000000 + 39),
        "clone3": call(435, 0, 0),
        "getpid": call(39),
    }))
"""


@pytest.mark.sandbox
def test_seccomp_refuses_dangerous_syscalls(
    cgroup_parent: str, tmp_path: Path
) -> None:
    """The same probe with and without the filter: with it every dangerous call gets EPERM
    (``clone3`` ENOSYS so glibc falls back to ``clone``); without it several succeed or fail
    otherwise, so the filter is what refuses them."""
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86-64 syscall numbers")
    filtered, unfiltered = (
        last_json(BubblewrapSandbox(cgroup_parent=cgroup_parent, seccomp=on).run(
            python_request(SYSCALL_PROBE, tmp_path)))
        for on in (True, False)
    )
    harmless = {"getpid": 0, "personality query": 0, "clone3": errno.ENOSYS}
    assert filtered == {**{name: errno.EPERM for name in filtered}, **harmless}
    for name in ("unshare", "ptrace", "perf_event_open", "userfaultfd", "personality",
                 "x32 getpid", "clone3"):
        assert unfiltered[name] != filtered[name], (name, unfiltered)


@pytest.mark.sandbox
def test_tensorflow_works_under_the_filter(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    code = """
        import json
        import tensorflow as tf
        print(json.dumps(float(tf.reduce_sum(tf.matmul(tf.ones((2, 3)), tf.ones((3, 2)))))))
    """
    limits = FAST.replace(notebook_timeout=180.0, memory_bytes=2048 * MiB)
    assert bwrap.seccomp
    assert last_json(bwrap.run(python_request(code, tmp_path, limits))) == 12.0


def run_cgroups(parent: str) -> list[str]:
    """Run cgroups currently under ``parent`` in the memory hierarchy."""
    directory = find_layout().memory_root / parent
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir())


@pytest.mark.sandbox
def test_a_jupyter_kernel_runs_inside(bwrap: BubblewrapSandbox, tmp_path: Path) -> None:
    """The real workload: nbclient talks to an ipykernel over loopback ZMQ, HOME is writable."""
    code = """
        import json, nbformat
        from nbclient import NotebookClient
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
        NotebookClient(nb, kernel_name="python3", timeout=30).execute()
        print(json.dumps(nb.cells[0].outputs[0]["text"]))
    """
    assert last_json(bwrap.run(python_request(code, tmp_path, FAST.replace(
        memory_bytes=1024 * MiB)))) == "42\n"


# --- leftovers of killed graders ------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def tag_of(pid: int) -> str:
    """The owner tag a grader with ``pid`` in this PID namespace writes into names."""
    return f"{owner_tag().split('-')[0]}-{pid}"


@pytest.fixture
def other_grader() -> Iterator[int]:
    """The pid of another live process: a grader still running its sandbox."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def stage_root() -> Iterator[Path]:
    """A staging root the sandbox user can traverse (pytest's ``tmp_path`` is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="grader-test-stages-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("real cgroups and mounts need root")


def test_owner_gone_only_for_dead_processes_of_this_namespace(other_grader: int) -> None:
    assert not owner_gone(owner_tag())
    assert not owner_gone(tag_of(other_grader))
    assert owner_gone(tag_of(dead_pid()))
    namespace = int(owner_tag().split("-")[0])
    assert not owner_gone(f"{namespace + 1}-{dead_pid()}")  # another container's grader
    assert not owner_gone("run-12")


def test_sweep_stages_removes_only_stages_of_dead_graders(
    tmp_path: Path, other_grader: int
) -> None:
    dead = tmp_path / f"{STAGE_PREFIX}{tag_of(dead_pid())}-k2x9_q1a"
    (dead / "etc").mkdir(parents=True)
    (dead / "etc" / "passwd").write_text("sandbox:x:1000:1000::/home/sandbox:/bin/sh\n")
    (dead / "m0").mkdir()
    live = tmp_path / f"{STAGE_PREFIX}{tag_of(other_grader)}-a1b2c3d4"
    live.mkdir()
    old_style = tmp_path / f"{STAGE_PREFIX}8nhuwgid"  # no owner recorded: never touched
    old_style.mkdir()
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    link = tmp_path / f"{STAGE_PREFIX}{tag_of(dead_pid())}-linklink"
    link.symlink_to(elsewhere)
    with create_stage(str(tmp_path)) as own:
        assert own.name.startswith(f"{STAGE_PREFIX}{owner_tag()}-")
        assert sweep_stages(str(tmp_path)) == [dead]
        assert own.is_dir()
    assert not own.exists()
    assert not dead.exists()
    assert live.is_dir() and old_style.is_dir() and link.is_symlink()
    assert (elsewhere / "keep.txt").read_text() == "keep"


def test_run_dir_is_private_to_the_grader_and_removed(tmp_path: Path) -> None:
    with create_run_dir(str(tmp_path)) as run_dir:
        assert run_dir.parent == tmp_path
        assert run_dir.name.startswith(f"{RUN_DIR_PREFIX}{owner_tag()}-")
        info = run_dir.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o700)
        (run_dir / "kernel" / "out").mkdir(parents=True)
        (run_dir / "kernel" / "out" / "result.json").write_text("{}")
    assert not run_dir.exists()


def test_sweep_run_dirs_removes_only_those_of_dead_graders(
    tmp_path: Path, other_grader: int
) -> None:
    dead = tmp_path / f"{RUN_DIR_PREFIX}{tag_of(dead_pid())}-k2x9_q1a"
    (dead / "kernel").mkdir(parents=True)
    (dead / "kernel" / "result.json").write_text("{}")
    live = tmp_path / f"{RUN_DIR_PREFIX}{tag_of(other_grader)}-a1b2c3d4"
    live.mkdir()
    foreign = tmp_path / f"{RUN_DIR_PREFIX}x8nhuwgid"  # the old pipeline's mkdtemp names
    foreign.mkdir()
    stage = tmp_path / f"{STAGE_PREFIX}{tag_of(dead_pid())}-k2x9_q1a"  # not a run directory
    stage.mkdir()
    with create_run_dir(str(tmp_path)) as own:
        assert sweep_run_dirs(str(tmp_path)) == [dead]
        assert own.is_dir()
    assert not dead.exists()
    assert live.is_dir() and foreign.is_dir() and stage.is_dir()


@pytest.mark.sandbox
def test_sweep_stages_never_deletes_through_a_mount(tmp_path: Path) -> None:
    require_root()
    source = tmp_path / "work"
    source.mkdir()
    (source / "answer.json").write_text("{}")
    dead = tmp_path / f"{STAGE_PREFIX}{tag_of(dead_pid())}-mounted"
    (dead / "m0").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(source), str(dead / "m0")], check=True)
    try:
        assert sweep_stages(str(tmp_path)) == []
    finally:
        subprocess.run(["umount", str(dead / "m0")], check=True)
    assert (source / "answer.json").read_text() == "{}"
    assert sweep_stages(str(tmp_path)) == [dead]


@pytest.mark.sandbox
def test_sweep_cgroups_removes_only_empty_cgroups_of_dead_graders(
    cgroup_parent: str, other_grader: int
) -> None:
    require_root()
    layout = find_layout()
    roots = list(dict.fromkeys((layout.memory_root, layout.pids_root)))
    names = {
        "dead": f"run-{tag_of(dead_pid())}-0123456789ab",
        "live": f"run-{tag_of(other_grader)}-0123456789ab",
        "busy": f"run-{tag_of(dead_pid())}-b0b0b0b0b0b0",  # a process is still inside
        "old": "run-fa0f5de52a09",  # no owner recorded: never touched
    }
    dirs = {key: [root / cgroup_parent / name for root in roots] for key, name in names.items()}
    for directory in (d for ds in dirs.values() for d in ds):
        directory.mkdir(parents=True)
    inside = subprocess.Popen(["sleep", "60"])
    try:
        for directory in dirs["busy"]:
            (directory / "cgroup.procs").write_text(str(inside.pid))
        assert sorted(sweep_cgroups(cgroup_parent)) == sorted(dirs["dead"])
        assert not any(d.exists() for d in dirs["dead"])
        assert all(d.is_dir() for key in ("live", "busy", "old") for d in dirs[key])
    finally:
        inside.kill()
        inside.wait()
        for directory in (d for ds in dirs.values() for d in ds):
            if directory.exists():
                RunCgroup(layout, directory, directory).remove()


GRADER_KILLED_MID_RUN = """
import sys
from grader.limits import Limits
from grader.sandbox import BubblewrapSandbox, SandboxRequest, create_run_dir

sandbox = BubblewrapSandbox(cgroup_parent=sys.argv[1], stage_root=sys.argv[2])
with create_run_dir(sys.argv[2]) as run_dir:
    (run_dir / "kernel").mkdir()
    request = SandboxRequest(
        argv=[sys.executable, "-c", "import time; print('running', flush=True); time.sleep(60)"],
        workdir=run_dir / "kernel",
        limits=Limits(notebook_timeout=60.0),
    )
    sandbox.run(request, on_line=lambda line: print(line, flush=True))
"""


@pytest.mark.sandbox
def test_leftovers_of_a_sigkilled_grader_are_swept(
    bwrap: BubblewrapSandbox, cgroup_parent: str, stage_root: Path, tmp_path: Path
) -> None:
    """A real grader is SIGKILLed mid-run: its cgroup, staging directory and run directory
    stay behind until a sweep, which a run of another grader (this process) does first.
    Meanwhile what it left is readable by no other host user."""
    grader = subprocess.Popen(
        [PYTHON, "-c", GRADER_KILLED_MID_RUN, cgroup_parent, str(stage_root)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert grader.stdout is not None
    assert grader.stdout.readline() == b"running\n"
    tag = tag_of(grader.pid)
    grader.send_signal(signal.SIGKILL)
    grader.wait()
    grader.stdout.close()
    left = sorted(stage_root.iterdir())
    assert [p.name.rsplit("-", 1)[0] for p in left] == [f"{STAGE_PREFIX}{tag}",
                                                        f"{RUN_DIR_PREFIX}{tag}"]
    run_dir = left[1]
    assert (run_dir.stat().st_uid, stat.S_IMODE(run_dir.stat().st_mode)) == (0, 0o700)
    kernel = (run_dir / "kernel").stat()
    assert (kernel.st_uid, stat.S_IMODE(kernel.st_mode)) == (bwrap.host_uid, 0o700)
    assert [n for n in run_cgroups(cgroup_parent) if n.startswith(f"run-{tag}-")] != []

    sandbox = BubblewrapSandbox(cgroup_parent=cgroup_parent, stage_root=str(stage_root))
    deadline = time.monotonic() + 5  # the sandbox dies with its grader, but not instantly
    while run_cgroups(cgroup_parent) and time.monotonic() < deadline:
        assert sandbox.run(python_request("pass", tmp_path)).exit_code == 0
        time.sleep(0.05)
    assert run_cgroups(cgroup_parent) == []
    assert list(stage_root.iterdir()) == []


SWEEP_FROM_ANOTHER_GRADER = """
import json, sys
from grader.sandbox import sweep_leftovers
print(json.dumps([str(p) for p in sweep_leftovers(sys.argv[1], sys.argv[2])]))
"""


@pytest.mark.sandbox
def test_a_sweep_by_another_grader_spares_a_live_run(
    cgroup_parent: str, stage_root: Path
) -> None:
    """Service workers sweep while others run: mid-run, another process sweeps the same
    cgroup parent and stage root; the run keeps its cgroup, staging and run directories."""
    require_root()
    sandbox = BubblewrapSandbox(cgroup_parent=cgroup_parent, stage_root=str(stage_root))
    seen: list[Any] = []

    def on_line(line: str) -> None:
        sweep = subprocess.run(
            [PYTHON, "-c", SWEEP_FROM_ANOTHER_GRADER, cgroup_parent, str(stage_root)],
            capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
        )
        seen.append(json.loads(sweep.stdout))
        seen.append(run_cgroups(cgroup_parent))
        seen.append([p.name for p in stage_root.iterdir()])

    with create_run_dir(str(stage_root)) as run_dir:
        (run_dir / "kernel").mkdir()
        result = sandbox.run(python_request("print('ready')", run_dir / "kernel"),
                             on_line=on_line)
    assert result.exit_code == 0, result.stderr
    removed, cgroups, names = seen
    assert removed == []
    assert len(cgroups) == 1 and cgroups[0].startswith(f"run-{owner_tag()}-")
    assert sorted(n.rsplit("-", 1)[0] for n in names) == [f"{STAGE_PREFIX}{owner_tag()}",
                                                          f"{RUN_DIR_PREFIX}{owner_tag()}"]
    assert sweep_leftovers(cgroup_parent, str(stage_root)) == []
    assert run_cgroups(cgroup_parent) == [] and list(stage_root.iterdir()) == []


def test_unsafe_gives_each_run_a_tmp_of_its_own(unsafe: UnsafeLocalSandbox, tmp_path: Path) -> None:
    """The real sandbox's /tmp is private; a kernel told to keep its connection file in
    /tmp/jupyter-runtime must not find (and load) one an earlier run left on the host."""
    work = tmp_path / "work"
    work.mkdir()
    name = f"grader-test-{os.getpid()}-{time.monotonic_ns()}"
    request = python_request(
        """
        import os, sys
        os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
        seen = os.path.exists(sys.argv[1])
        open(sys.argv[1], "w").write("mine")
        print(seen, os.environ["TMPDIR"], sys.argv[1])
        """,
        work,
        args=[f"/tmp/{name}/kernel.json"],
        env={"TMPDIR": "/tmp"},
    )
    first, second = unsafe.run(request), unsafe.run(request)
    assert first.exit_code == second.exit_code == 0, first.stderr
    assert second.stdout.startswith(b"False")  # the first run's file is not there
    assert not Path("/tmp", name).exists()
    _, tmpdir, path = first.stdout.decode().split()
    assert path.startswith(tmpdir + "/") and tmpdir != "/tmp"
