"""The held-out part of MNIST's training set: images the student's sandbox never receives.

The trained model is measured on the 10,000 test images and on ``HOLDOUT_SIZE`` training images
kept back from the sandbox, so memorising the test set does not pass. Which images are kept
back follows from a grader secret, ``holdout.key``, made once and never overwritten: the split
is the same on every fetch. The key hides the choice only from a sandbox without MNIST of its
own: MNIST is public, and its training images missing from ``/data`` are exactly the held-out
ones. What a copy of MNIST cannot read are the moved copies measured beside them
(:mod:`grader.data.perturb`, docs/data.md "What is and is not secret").

Files under the data folder (docs/data.md):

- ``holdout.key`` (0600): 32 random bytes.
- ``sandbox/mnist.npz`` (0644, folder 0755): Keras's layout without the held-out training
  images, order otherwise kept; the folder holds nothing else, since it is what the sandbox
  mounts at ``/data``.
- ``holdout.npz`` (0600): ``x`` and ``y``, the held-out images and labels in index order.
- ``split.json`` (0600): sha256 of the key and of both files, and the sizes.

Every failure is a :class:`~grader.data.mnist.DataError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from grader.data.mnist import (
    ARRAY_SHAPES,
    NPZ_NAME,
    DataError,
    Log,
    MnistArrays,
    read_npz,
    sha256_file,
    write_npz,
)

#: Training images kept back from the sandbox (of 60,000).
HOLDOUT_SIZE = 5000
KEY_NAME = "holdout.key"
KEY_BYTES = 32
SANDBOX_SUBDIR = "sandbox"
HOLDOUT_NAME = "holdout.npz"
MANIFEST_NAME = "split.json"
MANIFEST_FORMAT = 1
#: Separates this use of the key from any other; changing it changes every split.
_INDEX_DOMAIN = b"notebook-grader/mnist-holdout/v1\x00"
_PRIVATE = 0o600
_SHARED_FILE = 0o644
_SHARED_DIR = 0o755


@dataclass(frozen=True)
class Split:
    """MNIST cut in two: what the sandbox sees, and the held-out images and labels."""

    sandbox: MnistArrays
    holdout_x: np.ndarray
    holdout_y: np.ndarray

    def __post_init__(self) -> None:
        self.holdout_x.setflags(write=False)
        self.holdout_y.setflags(write=False)


def sandbox_data_dir(data_dir: Path) -> Path:
    """The folder to mount at ``/data`` in the sandbox: it holds only ``mnist.npz``.

    Never mount ``data_dir`` itself: it holds the key, the held-out images, the full file and
    the wheel they came from. This only names the folder; :func:`verify_split` checks it.
    """
    return data_dir / SANDBOX_SUBDIR


def holdout_indices(key: bytes, n_train: int, size: int = HOLDOUT_SIZE) -> np.ndarray:
    """The sorted indices of the ``size`` held-out images among ``n_train``, given the key.

    Each index gets a 64-bit rank from SHAKE-256 of the key and the lowest ranks are held out.
    A numpy ``Generator`` would be shorter, but numpy only promises its streams on one build
    of numpy; a split that changed with an upgrade would hold out images students have seen.
    """
    if not 0 < size < n_train:
        raise DataError(f"cannot hold out {size} of {n_train} images")
    stream = hashlib.shake_256(_INDEX_DOMAIN + key).digest(8 * n_train)
    ranks = np.frombuffer(stream, dtype="<u8")
    return np.sort(np.argsort(ranks, kind="stable")[:size])


def split_training_set(full: MnistArrays, indices: np.ndarray) -> Split:
    """Move the training images at ``indices`` out of ``full``; the test set stays whole."""
    held = np.zeros(len(full.y_train), dtype=bool)
    held[indices] = True
    sandbox = MnistArrays(
        x_train=full.x_train[~held],
        y_train=full.y_train[~held],
        x_test=full.x_test,
        y_test=full.y_test,
    )
    return Split(sandbox=sandbox, holdout_x=full.x_train[held], holdout_y=full.y_train[held])


# --- the key ---------------------------------------------------------------------------------


def ensure_key(data_dir: Path, *, log: Log = print) -> bytes:
    """The key in ``data_dir``, made from ``os.urandom`` when there is none and no split yet.

    A key is never overwritten. Without one, an existing split means the key was lost: a new
    key would hold out images that students already had, so this refuses instead.
    """
    path = data_dir / KEY_NAME
    if not path.exists():
        leftovers = [name for name in _split_files() if (data_dir / name).exists()]
        if leftovers:
            raise DataError(
                f"{KEY_NAME} is missing but a split exists ({', '.join(leftovers)}); a new key "
                f"would hold out images students have already had. Restore the key, or delete "
                f"{', '.join(leftovers)} to start a new split",
                path=path,
            )
        if _create_key(path):
            log(f"mnist: made a new held-out key {path}")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(_PRIVATE)
        log(f"mnist: {path} was readable by other users; made it 0600")
    return read_key(data_dir)


def _create_key(path: Path) -> bool:
    """Write a key under a temporary name, then link it into place: whoever links first wins,
    and nobody ever sees a half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp_name, path)
    except FileExistsError:
        return False
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return True


def read_key(data_dir: Path) -> bytes:
    """The key, which must be ``KEY_BYTES`` long and readable by its owner only."""
    path = data_dir / KEY_NAME
    try:
        key = path.read_bytes()
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise DataError("missing (run `grader data fetch`)", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read: {error}", path=path) from error
    if len(key) != KEY_BYTES:
        raise DataError(f"holds {len(key)} bytes, expected {KEY_BYTES}", path=path)
    if mode & 0o077:
        raise DataError(f"is readable by other users (mode {mode:04o}); chmod 600 it", path=path)
    return key


# --- writing ---------------------------------------------------------------------------------


def ensure_split(
    data_dir: Path, full: MnistArrays, *, size: int = HOLDOUT_SIZE, log: Log = print
) -> None:
    """Make the key and the split of ``full`` (the verified full set) unless they verify.

    Files that do not verify are rewritten from the key, which gives the same split again.
    Refuses, rather than re-splitting, when the split was made with another key.
    """
    key = ensure_key(data_dir, log=log)
    _check_sandbox_folder(data_dir)
    manifest_path = data_dir / MANIFEST_NAME
    if manifest_path.exists():
        made_with = _read_manifest(data_dir).get("key_sha256")
        if made_with != hashlib.sha256(key).hexdigest():
            raise DataError(
                f"{MANIFEST_NAME} was made with another {KEY_NAME}; restore that key (a new "
                f"split would hold out images students have already had), or delete "
                f"{', '.join(_split_files())} to start a new split",
                path=manifest_path,
            )
    try:
        verify_split(data_dir, full, size=size)
    except DataError as error:
        if manifest_path.exists():
            log(f"mnist: {error}; rewriting the split from {KEY_NAME}")
        log(f"mnist: holding out {size:,} training images in {HOLDOUT_NAME}")
        write_split(data_dir, full, key, size=size)
        verify_split(data_dir, full, size=size)
        log(f"mnist: wrote and verified {sandbox_data_dir(data_dir) / NPZ_NAME} and "
            f"{data_dir / HOLDOUT_NAME}")
    else:
        log(f"mnist: split verified ({len(full.y_train) - size:,} training images for the "
            f"sandbox, {size:,} held out)")


def write_split(data_dir: Path, full: MnistArrays, key: bytes, *, size: int = HOLDOUT_SIZE) -> None:
    """Write both files, then the manifest, each atomically; temporary files stay out of
    ``sandbox/`` so that the folder never holds anything but ``mnist.npz``."""
    split = split_training_set(full, holdout_indices(key, len(full.y_train), size))
    folder = sandbox_data_dir(data_dir)
    folder.mkdir(mode=_SHARED_DIR, parents=True, exist_ok=True)
    folder.chmod(_SHARED_DIR)
    sandbox_file, holdout_file = folder / NPZ_NAME, data_dir / HOLDOUT_NAME
    write_npz(sandbox_file, split.sandbox.as_dict(), mode=_SHARED_FILE, tmp_dir=data_dir)
    write_npz(holdout_file, {"x": split.holdout_x, "y": split.holdout_y}, mode=_PRIVATE)
    manifest = {
        "format": MANIFEST_FORMAT,
        "train_size": len(full.y_train),
        "holdout_size": size,
        "key_sha256": hashlib.sha256(key).hexdigest(),
        "sandbox_sha256": sha256_file(sandbox_file),
        "holdout_sha256": sha256_file(holdout_file),
    }
    _write_private(data_dir / MANIFEST_NAME, json.dumps(manifest, indent=1).encode() + b"\n")


def _write_private(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# --- checking --------------------------------------------------------------------------------


def verify_split(data_dir: Path, full: MnistArrays, *, size: int = HOLDOUT_SIZE) -> None:
    """Raise :class:`DataError` unless the split in ``data_dir`` is the key's split of ``full``.

    In order: the key; the files' places, modes and sha256 against the manifest; their shapes;
    the counts; no held-out image in the sandbox file; sandbox training set plus held-out
    images equal to the full training set as a multiset of (image, label) rows; and, last,
    exactly the key's indices in the original order.
    """
    key = read_key(data_dir)
    manifest = _read_manifest(data_dir)
    manifest_path = data_dir / MANIFEST_NAME
    n_train = len(full.y_train)
    expected_meta = {
        "format": MANIFEST_FORMAT,
        "train_size": n_train,
        "holdout_size": size,
        "key_sha256": hashlib.sha256(key).hexdigest(),
    }
    for field, value in expected_meta.items():
        if manifest.get(field) != value:
            raise DataError(f"{field} is {manifest.get(field)!r}, expected {value!r}",
                            path=manifest_path)
    _check_sandbox_folder(data_dir)
    sandbox_file = sandbox_data_dir(data_dir) / NPZ_NAME
    holdout_file = data_dir / HOLDOUT_NAME
    _check_mode(sandbox_data_dir(data_dir), private=False)
    _check_mode(sandbox_file, private=False)
    _check_mode(holdout_file, private=True)
    _check_mode(manifest_path, private=True)
    for path, field in ((sandbox_file, "sandbox_sha256"), (holdout_file, "holdout_sha256")):
        found = sha256_file(path)
        if found != manifest[field]:
            raise DataError(f"has sha256 {found}, but {MANIFEST_NAME} says {manifest[field]}",
                            path=path)

    sandbox = MnistArrays(**read_npz(sandbox_file, ARRAY_SHAPES))
    holdout_x, holdout_y = _read_holdout_arrays(holdout_file, size)
    kept = n_train - size
    shapes = {
        "x_train": (kept, *full.x_train.shape[1:]),
        "y_train": (kept,),
        "x_test": full.x_test.shape,
        "y_test": full.y_test.shape,
    }
    for name, array in sandbox.as_dict().items():
        if array.dtype != np.uint8 or array.shape != shapes[name]:
            raise DataError(
                f"{name} is {array.dtype} {array.shape}, expected uint8 {shapes[name]} "
                f"({kept:,} of {n_train:,} training images)",
                path=sandbox_file,
            )
    if not (np.array_equal(sandbox.x_test, full.x_test)
            and np.array_equal(sandbox.y_test, full.y_test)):
        raise DataError("the test set differs from the full file's", path=sandbox_file)

    held_images = set(_row_digests(holdout_x))
    shown = _row_digests(sandbox.x_train) + _row_digests(sandbox.x_test)
    leaked = sum(digest in held_images for digest in shown)
    if leaked:
        raise DataError(f"held-out images appear in the sandbox file ({leaked} of them)",
                        path=sandbox_file)
    together = Counter(_row_digests(sandbox.x_train, sandbox.y_train))
    together.update(_row_digests(holdout_x, holdout_y))
    if together != Counter(_row_digests(full.x_train, full.y_train)):
        raise DataError(
            f"its training set plus {HOLDOUT_NAME} is not the full training set (as a multiset "
            "of image and label pairs)",
            path=sandbox_file,
        )
    expected = split_training_set(full, holdout_indices(key, n_train, size))
    if not (np.array_equal(sandbox.x_train, expected.sandbox.x_train)
            and np.array_equal(sandbox.y_train, expected.sandbox.y_train)
            and np.array_equal(holdout_x, expected.holdout_x)
            and np.array_equal(holdout_y, expected.holdout_y)):
        raise DataError(f"the split is not the one {KEY_NAME} gives (other images held out, or "
                        "another order)", path=sandbox_file)


def _check_sandbox_folder(data_dir: Path) -> None:
    """``sandbox/`` is mounted into every run: a real folder holding a real ``mnist.npz``
    and nothing else. Anything else there is refused, never deleted."""
    folder = sandbox_data_dir(data_dir)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DataError("must be a folder, not a link or a file", path=folder)
    if not folder.exists():
        return
    others = sorted(p.name for p in folder.iterdir() if p.name != NPZ_NAME)
    if others:
        raise DataError(f"holds {others} besides {NPZ_NAME}; everything there is shown to "
                        "students, so remove them", path=folder)
    if (folder / NPZ_NAME).is_symlink():
        raise DataError("must be a file, not a link", path=folder / NPZ_NAME)


def _check_mode(path: Path, *, private: bool) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise DataError("missing (run `grader data fetch`)", path=path) from None
    if private and mode & 0o077:
        raise DataError(f"is readable by other users (mode {mode:04o}), expected 0600",
                        path=path)
    shared = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
    if not private and mode & shared != shared:
        expected = "0755" if path.is_dir() else "0644"
        raise DataError(f"is not readable by the sandbox user (mode {mode:04o}), expected "
                        f"{expected}", path=path)


def _read_manifest(data_dir: Path) -> dict[str, object]:
    path = data_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("missing (run `grader data fetch`)", path=path) from None
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read as JSON: {error}", path=path) from error
    if not isinstance(manifest, dict):
        raise DataError("expected a JSON object", path=path)
    return manifest


def _read_holdout_arrays(
    path: Path, size: int, *, data: bytes | None = None
) -> tuple[np.ndarray, np.ndarray]:
    arrays = read_npz(path, ("x", "y"), data=data)
    x, y = arrays["x"], arrays["y"]
    if x.dtype != np.uint8 or x.shape != (size, 28, 28):
        raise DataError(f"x is {x.dtype} {x.shape}, expected uint8 ({size}, 28, 28)", path=path)
    if y.dtype != np.uint8 or y.shape != (size,):
        raise DataError(f"y is {y.dtype} {y.shape}, expected uint8 ({size},)", path=path)
    if y.size and y.max() > 9:
        raise DataError("y has a label outside 0..9", path=path)
    return x, y


def _row_digests(x: np.ndarray, y: np.ndarray | None = None) -> list[bytes]:
    """One 16-byte digest per image (and label): rows compared as values, not positions."""
    rows = np.ascontiguousarray(x).reshape(len(x), -1)
    if y is not None:
        rows = np.concatenate([rows, y.reshape(-1, 1).astype(np.uint8)], axis=1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def _split_files() -> list[str]:
    return [f"{SANDBOX_SUBDIR}/{NPZ_NAME}", HOLDOUT_NAME, MANIFEST_NAME]


# --- reading on the host ---------------------------------------------------------------------


def load_holdout(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The held-out images (uint8 ``(n, 28, 28)``) and labels (uint8 ``(n,)``), read-only.

    Checked against the sha256 in the manifest, and read again only when the file or the
    manifest changes (their mtimes and sizes are the cache key).
    """
    holdout_file, manifest_path = data_dir / HOLDOUT_NAME, data_dir / MANIFEST_NAME
    try:
        held, listed = holdout_file.stat(), manifest_path.stat()
    except FileNotFoundError as error:
        raise DataError("missing (run `grader data fetch`)",
                        path=Path(error.filename)) from None
    stamp = (held.st_mtime_ns, held.st_size, listed.st_mtime_ns, listed.st_size)
    return _load_holdout(data_dir.resolve(), stamp)


@lru_cache(maxsize=4)
def _load_holdout(data_dir: Path, stamp: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    manifest = _read_manifest(data_dir)
    holdout_file = data_dir / HOLDOUT_NAME
    size = manifest.get("holdout_size")
    if not isinstance(size, int):
        raise DataError(f"holdout_size is {size!r}", path=data_dir / MANIFEST_NAME)
    # Hash the bytes that are then parsed, so a file replaced in between cannot slip through.
    data = holdout_file.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != manifest.get("holdout_sha256"):
        raise DataError(f"has sha256 {found}, but {MANIFEST_NAME} says "
                        f"{manifest.get('holdout_sha256')}", path=holdout_file)
    x, y = _read_holdout_arrays(holdout_file, size, data=data)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y
