"""The sandbox backends: the bubblewrap one against the real kernel, the unsafe one for the
plumbing they share (output caps, streaming, the wall clock).

Tests marked ``sandbox`` need bubblewrap and root (for cgroups); they are skipped where those
are missing, and fail (never skip) when the backend itself is broken.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
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
    SandboxRequest,
    SandboxResult,
    UnsafeLocalSandbox,
    UnsafeSandboxWarning,
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
from grader.sandbox.process import owner_gone, owner_tag, pid_alive, runtime_paths
from grader.sandbox.staging import STAGE_PREFIX, create_stage, sweep_stages
from grader.sandbox.unsafe import translate_paths

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent
FAST = Limits(notebook_timeout=20.0)


def python_request(
    code: str,
    workdir: Path,
    limits: Limits = FAST,
    *,
    args: Sequence[str] = (),
    mounts: Sequence[Mount] = (),
    env: Mapping[str, str] | None = None,
) -> SandboxRequest:
    """The venv's Python running ``code`` (dedented) with ``args``."""
    return SandboxRequest(
        argv=[PYTHON, "-c", textwrap.dedent(code), *args],
        workdir=workdir,
        mounts=mounts,
        env=env or {},
        limits=limits,
    )


def last_json(result: SandboxResult) -> Any:
    """The JSON document on the last stdout line of a run that must have succeeded."""
    assert result.sandbox_error is None, result.sandbox_error
    assert result.exit_code == 0, result.stderr.decode()
    return json.loads(result.stdout.decode().splitlines()[-1])


# --- pure helpers ---------------------------------------------------------------------------


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="bwrap, unsafe"):
        get_sandbox("docker")


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


# --- bubblewrap backend ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cgroup_parent() -> Iterator[str]:
    """A parent of its own, so the test can see its run's cgroup come and go."""
    parent = f"grader-test-{uuid.uuid4().hex[:8]}"
    yield parent
    try:
        layout = find_layout()
    except CgroupError:
        return
    for root in {layout.memory_root, layout.pids_root}:
        try:
            (root / parent).rmdir()
        except FileNotFoundError:
            pass


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
from pathlib import Path
from grader.limits import Limits
from grader.sandbox import BubblewrapSandbox, SandboxRequest

sandbox = BubblewrapSandbox(cgroup_parent=sys.argv[1], stage_root=sys.argv[2])
request = SandboxRequest(
    argv=[sys.executable, "-c", "import time; print('running', flush=True); time.sleep(60)"],
    workdir=Path(sys.argv[3]),
    limits=Limits(notebook_timeout=60.0),
)
sandbox.run(request, on_line=lambda line: print(line, flush=True))
"""


@pytest.mark.sandbox
def test_leftovers_of_a_sigkilled_grader_are_swept(
    bwrap: BubblewrapSandbox, cgroup_parent: str, stage_root: Path, tmp_path: Path
) -> None:
    """A real grader is SIGKILLed mid-run: its cgroup and staging directory stay behind until
    a sweep, which a run of another grader (this process) does first."""
    grader = subprocess.Popen(
        [PYTHON, "-c", GRADER_KILLED_MID_RUN, cgroup_parent, str(stage_root), str(tmp_path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert grader.stdout is not None
    assert grader.stdout.readline() == b"running\n"
    tag = tag_of(grader.pid)
    grader.send_signal(signal.SIGKILL)
    grader.wait()
    grader.stdout.close()
    left = [p.name for p in stage_root.iterdir()]
    assert [n for n in left if n.startswith(f"{STAGE_PREFIX}{tag}-")] == left != []
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
    cgroup_parent: str, stage_root: Path, tmp_path: Path
) -> None:
    """Service workers sweep while others run: mid-run, another process sweeps the same
    cgroup parent and stage root; the run keeps its cgroup and staging directory."""
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

    result = sandbox.run(python_request("print('ready')", tmp_path), on_line=on_line)
    assert result.exit_code == 0, result.stderr
    removed, cgroups, stages = seen
    assert removed == []
    assert len(cgroups) == 1 and cgroups[0].startswith(f"run-{owner_tag()}-")
    assert len(stages) == 1 and stages[0].startswith(f"{STAGE_PREFIX}{owner_tag()}-")
    assert sweep_leftovers(cgroup_parent, str(stage_root)) == []
    assert run_cgroups(cgroup_parent) == [] and list(stage_root.iterdir()) == []
