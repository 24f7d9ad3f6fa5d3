"""How ``make test``'s workers split the tests (tests/conftest.py): whole modules, the Docker
modules as one unit, the modules importing TensorFlow as another; a test in the wrong module
for either is refused at collection."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import (
    DOCKER_MODULES,
    TENSORFLOW_MODULES,
    pytest_collection_modifyitems,
    worker_scope,
)


def item(nodeid: str, fixtures: tuple[str, ...] = (), markers: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(nodeid=nodeid, fixturenames=fixtures,
                           get_closest_marker=lambda name: name if name in markers else None)


def test_the_tensorflow_modules_are_one_unit_apart_from_the_others() -> None:
    scopes = {worker_scope(f"{module}::test_x[a]") for module in TENSORFLOW_MODULES}
    assert len(TENSORFLOW_MODULES) > 1 and scopes == {"tensorflow"}
    assert {worker_scope(f"{module}::test_x") for module in DOCKER_MODULES} == {"docker"}
    assert worker_scope("tests/test_spec.py::test_x") == "tests/test_spec.py"
    assert worker_scope("tests/service/test_dashboard.py::test_y[sqlite]") == \
        "tests/service/test_dashboard.py"


def test_a_test_importing_tensorflow_elsewhere_is_refused_at_collection() -> None:
    inside = [item(f"{module}::test_x", ("tensorflow",)) for module in TENSORFLOW_MODULES]
    pytest_collection_modifyitems([*inside, item("tests/test_spec.py::test_y", ("config",))])
    with pytest.raises(pytest.UsageError, match=r"tests/test_spec\.py"):
        pytest_collection_modifyitems([*inside, item("tests/test_spec.py::test_z", ("tensorflow",))])


def test_a_docker_test_elsewhere_is_refused_at_collection() -> None:
    with pytest.raises(pytest.UsageError, match=r"tests/test_spec\.py"):
        pytest_collection_modifyitems([item("tests/test_spec.py::test_z", markers=("docker",))])
