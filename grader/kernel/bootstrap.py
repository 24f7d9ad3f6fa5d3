"""Runs inside the student's kernel before the first cell: makes TF1 notebooks run unmodified.

This file is sent as source text by the runner and executed as the module ``_grader_boot``; it
must not import anything from the ``grader`` package. What it does, each step switchable from the
run plan:

- ``tf1``: ``import tensorflow as tf`` in the student's code (and only there: libraries such as
  Keras keep the real module) yields a module whose attributes come from ``tf.compat.v1`` first,
  then from TensorFlow 2; v2 behaviour (eager execution) is disabled, as in TensorFlow 1.x.
- ``datasets``: ``tf.keras.datasets.mnist.load_data()`` reads the grader's local, checksummed
  copy instead of downloading; any other download fails at once with a clear message. With
  ``data_order`` (a seed the host draws per run), the training images and their labels come in
  this run's order (a copy in the kernel's private ``/tmp``), so two honest runs of the same
  code with the same fixed seeds train two different models (``docs/model-fingerprints.md``).
- session tracking: when a ``tf.Session`` closes, the values of its graph's variables are kept,
  so the grader can measure the model the student trained even after ``with tf.Session()`` ends.
"""

from __future__ import annotations

import builtins
import os
import sys
import types
import weakref
from typing import Any

#: graph -> {variable name: value} of the last session closed on that graph with initialised
#: variables; read by the exporter.
SNAPSHOTS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
#: Sessions still open, to read trained variables from when the student never closed one.
LIVE_SESSIONS: weakref.WeakSet[Any] = weakref.WeakSet()
#: Set while the exporter runs its own sessions, so they do not overwrite the student's snapshot.
_exporting = False
TF1_MODULE: types.ModuleType | None = None


class OfflineDownloadError(RuntimeError):
    """Raised instead of downloading: grading runs with no network."""


#: Top-level packages whose first import installs the adaptations when they are not preloaded.
LAZY_TRIGGERS = ("tensorflow", "keras", "tf_keras")


def install(config: dict[str, Any]) -> list[str]:
    """Apply the configured adaptations; return one note per adaptation for the log.

    ``preload`` (a warm kit, waiting anyway): import TensorFlow and install everything now.
    Otherwise (a cold run, where the import would be waited for): install on the first import
    of TensorFlow or Keras, from any module, so a notebook that never imports them does not pay
    for them, and one that does finds them adapted before its first use."""
    notes: list[str] = []
    tf1 = bool(config.get("tf1"))
    datasets = config.get("datasets") or {}
    order = config.get("data_order")
    when = "" if config.get("preload", True) else " (on the first import)"
    if tf1:
        notes.append(f"tensorflow: TF1 API through tf.compat.v1, v2 behaviour disabled{when}")
    if datasets:
        notes.append(f"datasets: served from local files{when}: " + ", ".join(sorted(datasets))
                     + ("" if order is None else "; training images in this run's order"))
    if not (tf1 or datasets):
        return notes
    if when:
        _install_on_first_import(tf1, datasets, order)
    else:
        _install_now(tf1, datasets, order)
    return notes


def _install_now(tf1: bool, datasets: dict[str, str], order: int | None = None) -> None:
    if tf1:
        _install_tf1()
    if datasets:
        _install_datasets(datasets, order)


def _install_on_first_import(tf1: bool, datasets: dict[str, str],
                             order: int | None = None) -> None:
    original = builtins.__import__

    def first_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name.partition(".")[0] in LAZY_TRIGGERS:
            builtins.__import__ = original  # once: the TF1 hook wraps the original import
            _install_now(tf1, datasets, order)
            return builtins.__import__(name, globals, locals, fromlist, level)
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = first_import


# --- TensorFlow 1.x -------------------------------------------------------------------------


def _install_tf1() -> None:
    global TF1_MODULE
    import tensorflow as real_tf

    v1 = real_tf.compat.v1
    v1.disable_v2_behavior()
    TF1_MODULE = _make_tf1_module(real_tf, v1)
    _hook_imports(TF1_MODULE)
    _track_sessions()


def _make_tf1_module(real_tf: types.ModuleType, v1: types.ModuleType) -> types.ModuleType:
    overrides = {"keras": None, "__version__": real_tf.__version__}

    class TF1Module(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name in overrides:
                return real_tf.keras if name == "keras" else overrides[name]
            try:
                return getattr(v1, name)
            except AttributeError:
                return getattr(real_tf, name)

        def __dir__(self) -> list[str]:
            return sorted(set(dir(v1)) | set(dir(real_tf)))

    module = TF1Module("tensorflow", "TensorFlow 1.x API provided by the grader (tf.compat.v1)")
    module.__file__ = getattr(real_tf, "__file__", None)
    module.__path__ = list(getattr(real_tf, "__path__", []))
    return module


def _hook_imports(tf1: types.ModuleType) -> None:
    original = builtins.__import__

    def grader_import(name, globals=None, locals=None, fromlist=(), level=0):
        module = original(name, globals, locals, fromlist, level)
        if name == "tensorflow" and level == 0 and globals is not None:
            if globals.get("__name__") == "__main__":
                return tf1
        return module

    builtins.__import__ = grader_import


def _track_sessions() -> None:
    import tensorflow.python.client.session as session_lib

    base = session_lib.BaseSession
    original_init = base.__init__
    original_close = base.close

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        LIVE_SESSIONS.add(self)

    def close(self):
        if not _exporting:
            try:
                snapshot_session(self)
            except Exception:  # never let grading break the student's code
                pass
        LIVE_SESSIONS.discard(self)
        return original_close(self)

    base.__init__ = init
    base.close = close


def snapshot_session(sess: Any) -> dict[str, Any] | None:
    """Read every variable of the session's graph; ``None`` when there are none or uninitialised."""
    if getattr(sess, "_closed", True):
        return None
    graph = sess.graph
    variables = graph.get_collection("variables")
    if not variables:
        return None
    try:
        values = sess.run(variables)
    except Exception:
        return None
    snapshot = {var.name: value for var, value in zip(variables, values, strict=True)}
    SNAPSHOTS[graph] = snapshot
    return snapshot


# --- data sets ------------------------------------------------------------------------------


def _in_run_order(path: str, order: int) -> str:
    """A copy of the data set at ``path`` whose training images and labels (``x_train``,
    ``y_train``) are permuted by ``order``, in a private temporary folder; the other arrays as
    they are. Made once per kernel (the next calls return the same copy)."""
    import tempfile

    import numpy as np

    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    x, y = arrays.get("x_train"), arrays.get("y_train")
    if x is not None and y is not None and len(x) == len(y):
        permutation = np.random.RandomState(order).permutation(len(x))
        arrays["x_train"], arrays["y_train"] = x[permutation], y[permutation]
    copy = os.path.join(tempfile.mkdtemp(prefix="grader-data-"), os.path.basename(path))
    np.savez(copy, **arrays)
    return copy


def _install_datasets(datasets: dict[str, str], order: int | None = None) -> None:
    """Point Keras's downloader at local files (in this run's order, with ``order``); refuse
    every other download at once."""
    from keras.src.datasets import mnist as mnist_module
    from keras.src.utils import file_utils

    original_get_file = file_utils.get_file
    copies: dict[str, str] = {}

    def get_file(fname=None, origin=None, *args, **kwargs):
        name = os.path.basename(str(fname or origin or ""))
        for key, path in datasets.items():
            if name == f"{key}.npz":
                if order is None:
                    return path
                if key not in copies:
                    copies[key] = _in_run_order(path, order)
                return copies[key]
        raise OfflineDownloadError(
            f"grading runs without network: cannot download {origin or fname!r}. "
            f"Data sets available offline: {', '.join(sorted(datasets))}."
        )

    get_file.__wrapped__ = original_get_file  # type: ignore[attr-defined]
    file_utils.get_file = get_file
    module: Any  # any module that imported Keras's get_file by name
    for module in list(sys.modules.values()):
        if module is not None and getattr(module, "get_file", None) is original_get_file:
            try:
                module.get_file = get_file
            except (AttributeError, TypeError):
                pass
    mnist_module.get_file = get_file
