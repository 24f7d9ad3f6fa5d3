"""docker-compose.yml: what the file must hold (always run), the grader's work folder that makes
sibling sandboxes possible, and the whole stack brought up on this machine (marker ``compose``):
a notebook uploaded over the API and graded in containers by one of two workers, a second one
graded by the other once the first is stopped (neither shares a folder with the web: the
notebooks are in the database), then nothing of the project left."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests
import yaml

from grader.config import PROJECT_ROOT, GraderConfig
from grader.pipeline import execute_notebook
from grader.sandbox.base import SandboxRequest, SandboxResult
from grader.sandbox.docker_image import image_tag
from grader.sandbox.docker_reaper import OWNER_LABEL, SANDBOX_LABEL
from grader.sandbox.process import error_result
from grader.sandbox.runs import start_launched
from tests.compose_support import COMPOSE_FILE, OVERRIDE_FILE, Stack, compose_command

SECRETS = ("SECRET_KEY", "POSTGRES_PASSWORD")
GRADING = ("worker", "gpu-worker", "gpu-worker-2")
#: The GPU workers of the first machine and of a second one ("host 2").
GPU_WORKERS = ("gpu-worker", "gpu-worker-2")
SOCKET = "/var/run/docker.sock"


DUMMY = {"SECRET_KEY": "0123456789abcdef0123", "POSTGRES_PASSWORD": "pw0123"}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` (what the file uses),
    so the raw file can be checked without a compose command."""
    def value(match: re.Match[str]) -> str:
        name, op, arg = match[1], match[2] or "", match[3] or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", value, text)


def _raw(env: dict[str, str] = DUMMY) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), env))


def _env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def _volume_strings(service: dict[str, Any]) -> list[str]:
    """Each volume as ``source:target[:mode]`` (compose v2's ``config`` writes mappings)."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            volume = f"{volume.get('source')}:{volume['target']}"
        out.append(volume)
    return out


def check_services(config: dict[str, Any]) -> None:
    """The parts the deployment needs, on a parsed compose file (raw or resolved)."""
    services = config["services"]
    assert {"web", *GRADING, "db", "redis"} <= set(services)
    assert services["db"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("web", *GRADING, "db", "redis"):
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], f"{name} has no health check"
    # the database and the notebooks on volumes
    assert any(v.endswith(":/var/lib/postgresql/data") or ":/var/lib/postgresql/data:" in v
               for v in _volume_strings(services["db"]))
    assert {"db-data", "notebooks"} <= set(config.get("volumes", {}))
    # the notebooks and their HTML in the database: no worker shares a folder with the web,
    # which keeps its old folder for `flask blobs move`
    upload_dir = _env_of(services["web"])["UPLOAD_DIR"]
    assert any(v.split(":")[0] == "notebooks" and v.split(":")[1] == upload_dir
               for v in _volume_strings(services["web"]))
    for name in ("web", *GRADING):
        assert _env_of(services[name])["BLOB_STORE"] == "database", name
    for name in GRADING:
        assert not any(v.split(":")[0] == "notebooks" or v.split(":")[1] == upload_dir
                       for v in _volume_strings(services[name])), name
    # only the graders get the daemon; each mounts the host folder at the same path and
    # keeps its work folder and data there
    assert not any(v.startswith(SOCKET) for v in _volume_strings(services["web"]))
    for name in GRADING:
        env = _env_of(services[name])
        volumes = _volume_strings(services[name])
        assert env["GRADER_SANDBOX"] == "docker"
        assert f"{SOCKET}:{SOCKET}" in [":".join(v.split(":")[:2]) for v in volumes]
        same_path = [v.split(":")[0] for v in volumes
                     if v.split(":")[0] == v.split(":")[1] and v.split(":")[0] != SOCKET]
        assert len(same_path) == 1, volumes
        # the CPU slots' and loans' books too: every worker of a host (worker, --scale
        # worker=N, gpu-worker) shares them, or two runs are pinned to one CPU
        for setting in ("GRADER_WORK_DIR", "GRADER_DATA_DIR", "CPU_SLOTS_DIR"):
            assert env[setting].startswith(same_path[0].rstrip("/") + "/"), setting
    # Celery: the CPU workers read the `cpu` queue, the GPU worker `gpu` (and `cpu`) and lends
    # its devices under a fixed host name (docs/gpus.md)
    def queues(name: str) -> list[str]:
        command = services[name]["command"]
        command = command if isinstance(command, list) else command.split()
        assert command[:3] == ["celery", "-A", "service.queue.celery_worker"], command
        return command[command.index("-Q") + 1].split(",")

    assert queues("worker") == ["cpu"]
    assert "GPUS" not in _env_of(services["worker"])
    for name in GPU_WORKERS:
        assert "gpu" in queues(name)
        assert _env_of(services[name])["GPUS"] and _env_of(services[name])["GPU_HOST"]
        # the GPU: reserved for the GPU workers only
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in device["capabilities"] for device in devices)
    assert all(_env_of(services[name])["QUEUE"] == "celery" for name in ("web", *GRADING))
    assert "gpu" in services["gpu-worker"].get("profiles", [])
    # host 2: a profile of its own (never started beside gpu-worker), its own name in the GPU
    # leases and its own host folder, and nothing of the first machine's but the database and
    # the broker (not the web's start: there is none on host 2)
    first, second = (_env_of(services[name]) for name in GPU_WORKERS)
    assert services["gpu-worker-2"].get("profiles") == ["host-2"]
    assert first["GPU_HOST"] != second["GPU_HOST"]
    assert first["GRADER_WORK_DIR"] != second["GRADER_WORK_DIR"]
    assert first["GRADER_DATA_DIR"] != second["GRADER_DATA_DIR"]
    assert first["CPU_SLOTS_DIR"] != second["CPU_SLOTS_DIR"]
    assert _env_of(services["worker"])["CPU_SLOTS_DIR"] == first["CPU_SLOTS_DIR"]
    assert set(services["gpu-worker-2"].get("depends_on", {})) == {"data-2"}
    assert _env_of(services["data-2"])["GRADER_DATA_DIR"] == second["GRADER_DATA_DIR"]
    assert "deploy" not in services["worker"] or "reservations" not in str(
        services["worker"]["deploy"])
    assert "gpu-worker" not in json.dumps(services["worker"].get("depends_on", {}))


def test_compose_file_has_every_part() -> None:
    check_services(_raw())


def test_compose_file_has_no_default_secret() -> None:
    """Every use of a secret refuses to start without it (``${NAME:?message}``), and the example
    env file leaves them empty."""
    for name in SECRETS:
        with pytest.raises(KeyError, match=name):
            _raw({key: value for key, value in DUMMY.items() if key != name})
    text = COMPOSE_FILE.read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses, f"{name} is not used"
        assert all(use.startswith(":?") for use in uses), (name, uses)
    example = (PROJECT_ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert re.search(rf"^{name}=$", example, re.MULTILINE), name
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().split()


def test_override_only_swaps_the_servers() -> None:
    """The tests' override builds PostgreSQL and Redis and changes nothing else."""
    override = yaml.safe_load(OVERRIDE_FILE.read_text())
    assert set(override["services"]) == {"db", "redis"}
    for service in override["services"].values():
        assert set(service) == {"image", "build"}
        assert (PROJECT_ROOT / service["build"]["context"]
                / service["build"]["dockerfile"]).is_file()


def _dummy_env(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "dummy.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def test_compose_config_resolves(tmp_path: Path) -> None:
    """The compose command of this machine accepts the file (with the gpu profile too) and the
    resolved configuration still has every part."""
    if compose_command() is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed "
                    "(make sysdeps-test installs Debian's docker-compose)")
    env = _dummy_env(tmp_path, SECRET_KEY="0123456789abcdef0123", POSTGRES_PASSWORD="pw0123",
                     GRADER_HOST_DIR="/srv/grader-host")
    stack = Stack("grader-config-check", env, files=(COMPOSE_FILE,))
    resolved = yaml.safe_load(stack.run("--profile", "gpu", "--profile", "host-2",
                                        "config").stdout)
    check_services(resolved)
    worker = _env_of(resolved["services"]["worker"])
    assert worker["GRADER_WORK_DIR"] == "/srv/grader-host/jobs"
    assert worker["SECRET_KEY"] == "0123456789abcdef0123"
    with_override = Stack("grader-config-check", env, files=(COMPOSE_FILE, OVERRIDE_FILE))
    assert with_override.run("config", "--quiet").returncode == 0


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    if compose_command() is None:
        pytest.skip("no compose command")
    values = {"SECRET_KEY": "0123456789abcdef0123", "POSTGRES_PASSWORD": "pw0123"}
    del values[missing]
    stack = Stack("grader-config-check", _dummy_env(tmp_path, **values), files=(COMPOSE_FILE,))
    done = stack.run("config", check=False)
    assert done.returncode != 0
    assert missing in done.stderr + done.stdout


# --- the grader's work folder --------------------------------------------------------------

class FailingSandbox:
    """Runs nothing: every request ends as a sandbox error."""

    name = "failing"

    def check(self) -> str | None:
        return None

    def run(self, request: SandboxRequest, on_line: Any = None) -> SandboxResult:
        return error_result("not run")

    def start(self, request: SandboxRequest, on_line: Any = None) -> Any:
        return start_launched(error_result("not run"), on_line)


def test_work_dir_setting_holds_the_run_folders(tmp_path: Path, exercise, solution_nb,
                                                monkeypatch) -> None:
    """GRADER_WORK_DIR: a grading's run folder (its sandboxes' work folders) is made there,
    and the setting's folder itself when missing, then removed: the folder a compose worker
    shares with the host at the same path."""
    from grader import kit
    from grader.sandbox import staging

    work = tmp_path / "jobs"
    config = GraderConfig.from_env({"GRADER_DATA_DIR": str(tmp_path),
                                    "GRADER_WORK_DIR": str(work)})
    assert config.work_dir == work
    assert GraderConfig.from_env({}).work_dir is None
    made: list[Path] = []
    real = staging.create_run_dir

    @contextmanager
    def recording(root: str | None = None) -> Iterator[Path]:
        with real(root) as run_dir:
            made.append(run_dir)
            yield run_dir

    monkeypatch.setattr(kit, "create_run_dir", recording)  # where a kit makes its folder
    execute_notebook(solution_nb, exercise, config, FailingSandbox(), measure=False)
    assert len(made) == 1 and made[0].parent == work
    assert work.is_dir() and list(work.iterdir()) == []


# --- the stack on this machine -------------------------------------------------------------

LABEL_PROJECT = "com.docker.compose.project"
GRADE_TIMEOUT = 300.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check, timeout: float, what: str, stack: Stack, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{what} within {timeout:.0f} s; logs:\n{stack.logs()}")


def _get(url: str, **kwargs: Any) -> requests.Response | None:
    try:
        return requests.get(url, timeout=10, **kwargs)
    except requests.RequestException:
        return None


def _short_notebook(solution_nb: nbformat.NotebookNode) -> bytes:
    """The solution up to its pooling items (about 15 s of grading), marked so that no earlier
    upload of the same student is taken for it."""
    nb = nbformat.from_dict(json.loads(json.dumps(solution_nb)))
    cells, cut = [], False
    for cell in nb.cells:
        if cut and cell.cell_type == "code":
            continue
        cells.append(cell)
        cut = cut or cell.get("id") == "pool3"
    nb.cells = cells
    nb.metadata["compose_test"] = secrets.token_hex(4)
    return nbformat.writes(nb).encode()


def _log_in_and_see_upload_page(base: str, token: str) -> str:
    """Log in on the web form and read the upload page. The session cookie is ``Secure`` in
    production (TLS at the proxy), so it is sent back by hand over this plain-HTTP test link."""
    login = requests.get(f"{base}/login", timeout=10)
    assert login.status_code == 200 and 'name="token"' in login.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert csrf is not None
    cookie = {"Cookie": f"session={login.cookies['session']}"}
    done = requests.post(f"{base}/login", data={"token": token, "csrf_token": csrf[1]},
                         headers=cookie, allow_redirects=False, timeout=10)
    assert done.status_code == 303, done.text[:500]
    page = requests.get(f"{base}/", allow_redirects=False, timeout=10,
                        headers={"Cookie": f"session={done.cookies['session']}"})
    assert page.status_code == 200
    return page.text


UPLOAD_DIR = "/srv/notebook-grader/uploads"
#: Run in the web's container: the worker of every grading run, oldest first.
RUN_WORKERS = ("import os; from sqlalchemy import create_engine, text; "
               "rows = create_engine(os.environ['DATABASE_URL']).connect().execute("
               "text('SELECT worker FROM grading_runs ORDER BY id')); "
               "print('\\n'.join(r[0] or '-' for r in rows))")


def _upload_and_wait(stack: Stack, token: str, notebook: bytes) -> dict[str, Any]:
    """Upload ``notebook`` over the API; its status once graded (failed: the test fails)."""
    answer = requests.post(f"{stack.base_url}/api/submissions", timeout=30,
                           headers={"Authorization": f"Bearer {token}"},
                           data={"exercise": "chap06_cnn"},
                           files={"notebook": ("short.ipynb", notebook)})
    assert answer.status_code == 202, answer.text

    def finished() -> dict[str, Any] | None:
        got = _get(answer.json()["status_url"], headers={"Authorization": f"Bearer {token}"})
        body = got.json() if got is not None and got.status_code == 200 else {}
        return body if body.get("state") in ("graded", "failed") else None

    result = _wait(finished, GRADE_TIMEOUT, "the notebook was not graded", stack, 2.0)
    assert result["state"] == "graded", result.get("reason")
    return result


def _grading_worker(stack: Stack, client: Any, workers: list[str], run: int) -> str:
    """The worker container that graded the ``run``-th grading run (1 first): the run's
    ``worker`` is ``celery:celery@<the container's hostname>:...``."""
    names = stack.run("exec", "-T", "web", "python", "-c", RUN_WORKERS).stdout.split()
    assert len(names) >= run, names
    by_host = {client.inspect_container(c)["Config"]["Hostname"]: c for c in workers}
    found = [c for host, c in by_host.items() if f"@{host}:" in names[run - 1]]
    assert len(found) == 1, (names, by_host)
    return found[0]


def _pid_namespace(client: Any, container: str) -> str:
    pid = client.inspect_container(container)["State"]["Pid"]
    return os.readlink(f"/proc/{pid}/ns/pid").removeprefix("pid:[").removesuffix("]")


def _project_leftovers(client: Any, project: str) -> list[str]:
    label = {"label": f"{LABEL_PROJECT}={project}"}
    return ([f"container {c['Id'][:12]}" for c in client.containers(all=True, filters=label)]
            + [f"network {n['Name']}" for n in client.networks(filters=label)]
            + [f"volume {v['Name']}" for v in client.volumes(filters=label)["Volumes"] or []])


@pytest.fixture
def compose_stack(tmp_path_factory, docker_sandbox, docker_daemon, config: GraderConfig):
    """docker-compose.yml with the tests' override, up on a free port, with a host folder of
    its own (a copy of the MNIST data); brought down with its volumes at the end, and checked
    to leave no container, network or volume of its project."""
    if compose_command() is None:
        pytest.fail("no compose command: make sysdeps-test installs Debian's docker-compose")
    built = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "service_image.py"),
                            "--base", "local"], capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    host = tmp_path_factory.mktemp("compose-host")
    shutil.copytree(config.data_dir, host / "data", symlinks=False)
    port = _free_port()
    env_file = host / "stack.env"
    env_file.write_text(f"SECRET_KEY={secrets.token_hex(24)}\n"
                        f"POSTGRES_PASSWORD={secrets.token_hex(12)}\n"
                        f"GRADER_HOST_DIR={host}\nWEB_PORT={port}\nWEB_CONCURRENCY=2\n"
                        "WARM_POOL=1\n")  # the deployment's default: the worker keeps kits
    env_file.chmod(0o600)
    stack = Stack(f"grader-e2e-{os.getpid()}", env_file)
    try:
        started = time.monotonic()
        stack.run("up", "-d", "--scale", "worker=2", timeout=900)  # two workers
        stack.up_seconds = time.monotonic() - started
        stack.base_url, stack.host = f"http://127.0.0.1:{port}", host
        yield stack
    finally:
        down = stack.run("down", "--volumes", "--remove-orphans", "--timeout", "20",
                         check=False, timeout=300)
        leftovers = _project_leftovers(docker_daemon, stack.project)
        jobs = host / "jobs"  # the workers' run folders, warm kits' included, are gone
        left_jobs = sorted(p.name for p in jobs.iterdir()) if jobs.is_dir() else []
        shutil.rmtree(host, ignore_errors=True)
        assert down.returncode == 0, down.stderr[-2000:]
        assert leftovers == [], leftovers
        assert left_jobs == [], left_jobs


@pytest.mark.compose
@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_stack_grades_an_uploaded_notebook_in_a_container(compose_stack: Stack, docker_daemon,
                                                          solution_nb) -> None:
    stack, client = compose_stack, docker_daemon
    base = stack.base_url
    ready = _wait(lambda: (r := _get(f"{base}/readyz")) is not None and r.status_code == 200,
                  120, "/readyz did not answer 200", stack)
    assert ready
    roster = stack.run("exec", "-T", "web", "flask", "--app", "service", "roster", "import",
                       "/dev/stdin", input="student_id,name,email\ns1,Student One,\n")
    token = next(line.split(",")[2] for line in roster.stdout.splitlines()
                 if line.startswith("s1,"))
    no_tf = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)"
    assert stack.run("exec", "-T", "web", "python", "-c", no_tf, check=False).returncode == 0, \
        "TensorFlow is in the service's image"
    page = _log_in_and_see_upload_page(base, token)
    assert re.search(r"<input[^>]*name=\"notebook\"[^>]*type=\"file\"", page), page[:2000]

    # two workers, neither with a folder shared with the web: the notebooks are in the database
    workers = stack.run("ps", "-q", "worker").stdout.split()
    assert len(workers) == 2, workers
    for container in workers:
        mounts = [m["Destination"] for m in client.inspect_container(container)["Mounts"]]
        assert UPLOAD_DIR not in mounts, mounts

    since = int(time.time()) - 1
    started = time.monotonic()
    result = _upload_and_wait(stack, token, _short_notebook(solution_nb))
    grade_seconds = time.monotonic() - started
    assert result["outcome"] == "graded"
    assert result["score"] > 0
    assert {i["id"]: i["status"] for i in result["items"]}["conv1"] == "correct"
    worker = _grading_worker(stack, client, workers, run=1)

    # the sandboxes were containers of the runtime image, made by that worker (its pid
    # namespace is in their owner label), through the host's daemon
    namespace = _pid_namespace(client, worker)
    made = [event["Actor"]["Attributes"] for event in client.events(
        since=since, until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "event": "create", "label": f"{SANDBOX_LABEL}=1"})]
    ours = [a for a in made if a.get(OWNER_LABEL, "").startswith(f"{namespace}-")]
    assert len(ours) >= 3, made  # the kernel, the runner, the clean room
    assert {a["image"] for a in ours} == {image_tag()}
    # the work folders are on the host folder (the worker's warm pool keeps one kit's there
    # meanwhile); the fixture checks that none is left once the stack is down

    health = _wait(lambda: client.inspect_container(worker)["State"]["Health"]["Status"]
                   == "healthy", 90, "the worker was not healthy", stack, 2.0)
    assert health

    # that worker stopped, the other grades the next notebook, read from the database too
    client.stop(worker, timeout=30)
    again = _upload_and_wait(stack, token, _short_notebook(solution_nb))
    assert again["outcome"] == "graded" and again["score"] > 0, again
    other = _grading_worker(stack, client, workers, run=2)
    assert other != worker, (other, worker)
    print(f"\ncompose: up in {stack.up_seconds:.0f} s, graded in {grade_seconds:.0f} s "
          f"(score {result['score']})")
