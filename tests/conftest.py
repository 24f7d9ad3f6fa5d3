"""Shared fixtures: the real exercise, notebooks built from cells, the real sandbox, and the
PostgreSQL and Redis servers of the tests that need them."""

from __future__ import annotations

import copy
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pytest
from hypothesis import settings

from grader.config import PROJECT_ROOT, GraderConfig
from grader.reference import read_expected
from grader.spec import Exercise, load_exercise
from tests.servers import ThrowawayPostgres, ThrowawayRedis

if TYPE_CHECKING:
    from tests.migrated import PostgresTemplate

FIXTURES = Path(__file__).parent / "fixtures"

# The service's warm pool starts kits (TensorFlow imported, ~1 GiB each) beside every set of
# workers; the tests that are about it turn it on (tests/test_warm_pool.py,
# tests/service/test_service_warm.py), the others keep their workers cold and light.
os.environ.setdefault("WARM_POOL", "0")


#: ``make test-unit``'s hypothesis profile (``--hypothesis-profile=unit``): a fifth of the
#: default's examples, for the property tests that scale theirs on it (tests/service/test_final_grade.py);
#: ``make test`` runs hypothesis' default.
settings.register_profile("unit", max_examples=20)


# --- pytest-xdist ------------------------------------------------------------------------------

#: The modules that run containers on the machine's Docker daemon: under ``make test``'s workers
#: they run in one process, one after the other (a test counting the sandbox's containers must
#: not see another's). Every test marked ``docker`` or ``compose`` must be in one of them.
DOCKER_MODULES = frozenset({"tests/test_docker.py", "tests/test_docker_parity.py", "tests/test_cpus.py",
                            "tests/test_compose.py", "tests/test_docker_cpu_loans.py"})

#: The modules whose tests import TensorFlow into the pytest process (the ``tensorflow``
#: fixture): under the workers they run in one process, which imports it once (5 s of CPU and
#: about 1 GiB each time). Every test using the fixture must be in one of them.
TENSORFLOW_MODULES = frozenset({"tests/test_cleanroom.py", "tests/test_keras_answers.py",
                                "tests/test_exercise_chap07.py"})


def worker_scope(nodeid: str) -> str:
    """The unit of tests one worker takes whole: the test's module, or ``docker`` for the
    :data:`DOCKER_MODULES`, ``tensorflow`` for the :data:`TENSORFLOW_MODULES`."""
    module = nodeid.split("::", 1)[0]
    if module in DOCKER_MODULES:
        return "docker"
    return "tensorflow" if module in TENSORFLOW_MODULES else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``make test``'s workers (pytest-xdist ``-n``) take whole modules, so a module's fixtures
    (a service, a cgroup parent) are made once and its tests keep their order, the Docker
    modules as one unit and the TensorFlow modules as another. (``--dist loadgroup`` would do it with markers, but pytest-xdist 3.8
    cannot mark pytest 9.2's node ids: pytest-dev/pytest-xdist#1386.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_scope(nodeid)

    return ModuleScheduling(config, log)  # type: ignore[arg-type]


#: Fixtures whose tests get a marker at collection (``pytest_itemcollected``), so that a test
#: new or old is selected by what it uses: ``sandbox`` (the real bubblewrap sandbox),
#: ``processes`` (the service's worker processes, Celery, a live HTTP server driven by a CLI,
#: servers the test stops and starts), ``data`` (the full MNIST files of tests/test_mnist_data.py,
#: read, rebuilt or verified). ``make test-unit`` leaves them out.
FIXTURE_MARKERS = {
    "sandbox": "sandbox",
    "processes": "processes",
    "celery_worker": "processes",
    "redis_broker": "processes",
    "throwaway_postgres": "processes",
    "throwaway_redis": "processes",
    "live_url": "processes",
    "mnist_npz": "data",
    "hub_archive": "data",
}


def pytest_itemcollected(item: pytest.Item) -> None:
    for fixture in getattr(item, "fixturenames", ()):
        marker = FIXTURE_MARKERS.get(fixture)
        if marker is not None and item.get_closest_marker(marker) is None:
            item.add_marker(marker)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A Docker or compose test outside :data:`DOCKER_MODULES` would race the others for the
    daemon under ``make test``'s workers, and a test importing TensorFlow outside
    :data:`TENSORFLOW_MODULES` would import it in a second process: refused at collection."""
    stray = sorted({item.nodeid.split("::", 1)[0] for item in items
                    if (item.get_closest_marker("docker") or item.get_closest_marker("compose"))
                    and item.nodeid.split("::", 1)[0] not in DOCKER_MODULES})
    if stray:
        raise pytest.UsageError(f"Docker tests outside tests/conftest.py's DOCKER_MODULES: {stray}")
    stray = sorted({item.nodeid.split("::", 1)[0] for item in items
                    if "tensorflow" in getattr(item, "fixturenames", ())
                    and item.nodeid.split("::", 1)[0] not in TENSORFLOW_MODULES})
    if stray:
        raise pytest.UsageError(
            f"tests using the tensorflow fixture outside tests/conftest.py's TENSORFLOW_MODULES: {stray}")


# --- TensorFlow ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tensorflow(pytestconfig: pytest.Config) -> Any:
    """TensorFlow, imported by the first test that asks for it rather than at collection (5 s
    of every pytest process's start-up, also of those that never use it), and with pytest's
    capture off: imported under a test's capture, absl's log handler kept that capture's
    stream, and after a hypothesis test a later test of the same process lost its stderr
    (``ValueError: I/O operation on closed file`` in every test after it)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        return pytest.importorskip("tensorflow")


# --- servers ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A libpq connection string with the right to create databases: ``GRADER_TEST_POSTGRES``
    when set, otherwise a throwaway cluster started for this session (when first asked for) and
    removed at its end. Tests make their own databases on it."""
    configured = os.environ.get("GRADER_TEST_POSTGRES")
    if configured:
        yield configured
        return
    with ThrowawayPostgres() as server:
        yield server.admin_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database the tests may flush: ``GRADER_TEST_REDIS`` when set, otherwise database
    0 of a throwaway ``redis-server`` started for this session and removed at its end."""
    configured = os.environ.get("GRADER_TEST_REDIS")
    if configured:
        yield configured
        return
    with ThrowawayRedis() as server:
        yield server.url


# --- databases migrated once per session (tests/migrated.py) -----------------------------------

@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file the real migrations brought to head, for the tests' apps to copy."""
    from tests.migrated import make_sqlite_template

    return make_sqlite_template(tmp_path_factory.mktemp("migrated-sqlite"))


@pytest.fixture(scope="session")
def migrated_postgres(postgres_admin_url: str,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresTemplate]:
    """A database of ``postgres_admin_url``'s server the real migrations brought to head, for
    the tests' apps to copy (nobody connects to it); dropped at the end."""
    from tests.migrated import make_postgres_template

    template = make_postgres_template(postgres_admin_url, f"grader_migrated_{os.getpid()}",
                                      tmp_path_factory.mktemp("migrated-postgres"))
    try:
        yield template
    finally:
        template.admin.execute(f'DROP DATABASE IF EXISTS "{template.name}" WITH (FORCE)')
        template.admin.close()


# --- sandboxes -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cgroup_parent() -> Iterator[str]:
    """A cgroup parent of the module's own, so a test can see its run's cgroups come and go;
    removed afterwards from every hierarchy it was made in (memory, pids, cpuset)."""
    from grader.sandbox.cgroups import CgroupError, find_layout

    parent = f"grader-test-{uuid.uuid4().hex[:8]}"
    yield parent
    try:
        layout = find_layout()
    except CgroupError:
        return
    for root in {layout.memory_root, layout.pids_root, layout.cpuset_root}:
        if root is not None:
            try:
                (root / parent).rmdir()
            except FileNotFoundError:
                pass


# --- the exercise and its notebooks ------------------------------------------------------------

@pytest.fixture(scope="session")
def config() -> GraderConfig:
    return GraderConfig.from_env()


@pytest.fixture(scope="session")
def exercise(config: GraderConfig) -> Exercise:
    return load_exercise(config.exercises_root / "chap06_cnn", config.reference_root)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


@pytest.fixture(scope="session")
def solution_nb(exercise: Exercise) -> nbformat.NotebookNode:
    return _read(exercise.reference_dir / "solution.ipynb")


@pytest.fixture(scope="session")
def template_nb(exercise: Exercise) -> nbformat.NotebookNode:
    return _read(exercise.template)


NotebookFactory = Callable[..., bytes]


@pytest.fixture
def make_notebook(solution_nb: nbformat.NotebookNode) -> NotebookFactory:
    """Bytes of a notebook made from the solution: ``replace`` maps cell ids to new sources,
    ``drop`` removes cells by id, ``keep_until`` drops every code cell after that id,
    ``insert_after`` maps a cell id to extra code cells placed after it."""

    def build(
        replace: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
        keep_until: str | None = None,
        insert_after: dict[str, list[str]] | None = None,
        base: nbformat.NotebookNode | None = None,
    ) -> bytes:
        nb = copy.deepcopy(base if base is not None else solution_nb)
        cells = []
        cut = False
        for cell in nb.cells:
            if cut and cell.cell_type == "code":
                continue
            if cell.get("id") in drop:
                continue
            if replace and cell.get("id") in replace:
                cell.source = replace[cell["id"]]
            cells.append(cell)
            for n, source in enumerate((insert_after or {}).get(cell.get("id"), [])):
                extra = nbformat.v4.new_code_cell(source)
                extra["id"] = f"{cell['id']}-extra{n}"
                cells.append(extra)
            if keep_until is not None and cell.get("id") == keep_until:
                cut = True
        nb.cells = cells
        return nbformat.writes(nb).encode()

    return build


@pytest.fixture(scope="session")
def expected(exercise: Exercise) -> dict:
    return read_expected(exercise)["items"]


@pytest.fixture(scope="session")
def sandbox(config: GraderConfig):
    from grader.sandbox import get_sandbox

    box = get_sandbox("bwrap")
    reason = box.check()
    if reason is not None:
        pytest.fail(f"the bubblewrap sandbox cannot run here: {reason}")
    return box


__all__ = ["FIXTURES", "PROJECT_ROOT"]


@pytest.fixture(scope="session")
def docker_daemon():
    """A Docker daemon for the docker tests: the one that answers, else one started here (as
    root: `dockerd` from Debian's docker.io, which `make sysdeps-test` installs) and stopped
    when the session ends. Its images persist (the default data root), so the runtime image is
    built once, not once per session."""
    from tests.docker_support import running_daemon

    with running_daemon() as client:
        yield client


@pytest.fixture(scope="session")
def docker_sandbox(docker_daemon):
    """The docker backend with this checkout's runtime image (built when missing)."""
    from grader.sandbox.docker import DockerSandbox
    from grader.sandbox.docker_image import build_image

    outcome = build_image()
    if outcome.error:
        pytest.fail(f"the runtime image cannot be built: {outcome.error}")
    box = DockerSandbox()
    reason = box.check()
    if reason is not None:
        pytest.fail(f"the docker sandbox cannot run here: {reason}")
    return box


@pytest.fixture(scope="module")
def runner_module() -> Any:
    """``grader/kernel/runner.py`` as the runner's sandbox imports it: its folder first on
    ``sys.path`` (tests/test_runner_caps.py, tests/test_progress_events.py)."""
    kernel_dir = str(Path(__file__).resolve().parent.parent / "grader" / "kernel")
    sys.path.insert(0, kernel_dir)
    try:
        import runner

        yield runner
    finally:
        sys.path.remove(kernel_dir)
