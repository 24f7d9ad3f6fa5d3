"""Export, run inside the student's kernel after a graded cell.

Sent as source text by the runner and executed as the module ``_grader_exporter``. Everything
here runs in the student's process, so the student can replace it, patch what it calls, or
lie in what it returns: nothing it produces is a measurement. It only packs up *what the
student built* (a TensorFlow graph, the values of its variables) as plain data, which leaves the
sandbox, is validated on the host and is measured in the clean room (``grader/cleanroom``) on
inputs this process never sees. It never sees reference answers either.

An export is a JSON object published as display data of type :data:`MIME`::

    {"kind": "graph", "graph_def": <base64 GraphDef>, "output": "name:0",
     "inputs": {"x": "Placeholder:0"}, "variables": {"Variable": <array>},
     "initializers": {"Variable": "Variable/Assign"}, "context": {"W": <array>}}
    {"kind": "value", "type": "ndarray"}          the answer is no tensor (a typed-in value)
    {"kind": "keras", "model_json": <model.to_json()>, "weights": [<array>, ...],
     "paths": ["sequential/dense/kernel", ...]}  a Keras model (:func:`keras_model`)
    {"error": {"ename": ..., "evalue": ...}}      the answer could not be exported

Arrays are ``{"dtype", "shape", "data": <base64 of the C-order bytes>}``: never pickles.
"""

from __future__ import annotations

import base64
import contextlib
import sys
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

MIME = "application/x-grader-export+json"
#: Largest array exported as context (a filter, a sample image); bigger ones are left out.
MAX_CONTEXT_VALUES = 4096


def run(name: str, args: dict[str, Any]) -> None:
    """Run export ``name`` and publish its result; never raises into the student's cell."""
    from IPython.display import publish_display_data

    export = EXPORTS.get(name)
    try:
        if export is None:
            raise KeyError(f"unknown export {name!r}")
        with _preserved_random_state(), _exporting():
            result = export(**args)
    except BaseException as exc:
        result = {"error": _error(exc)}
    publish_display_data({MIME: result})


def _error(exc: BaseException) -> dict[str, str]:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{tb[-1].name}:{tb[-1].lineno}" if tb else ""
    return {"ename": type(exc).__name__, "evalue": str(exc)[:2000], "where": where}


def _user_ns() -> dict[str, Any]:
    return sys.modules["__main__"].__dict__


def _lookup(expr: str) -> Any:
    namespace = _user_ns()
    if expr not in namespace:
        raise NameError(f"name '{expr}' is not defined")
    return namespace[expr]


@contextlib.contextmanager
def _preserved_random_state():
    """An export must not change what the student's next cell draws from ``rng``."""
    global_state = np.random.get_state()
    saved = {name: value.get_state() for name, value in list(_user_ns().items())
             if isinstance(value, np.random.RandomState)}
    try:
        yield
    finally:
        np.random.set_state(global_state)
        for name, state in saved.items():
            value = _user_ns().get(name)
            if isinstance(value, np.random.RandomState):
                value.set_state(state)


@contextlib.contextmanager
def _exporting():
    boot: Any = sys.modules.get("_grader_boot")  # made from source: its flags are not typed
    if boot is None:
        yield
        return
    boot._exporting = True
    try:
        yield
    finally:
        boot._exporting = False


def _v1():
    import tensorflow as tf

    return tf.compat.v1


def pack_array(value: Any) -> dict[str, Any]:
    array = np.ascontiguousarray(np.asarray(value))
    return {"dtype": array.dtype.str, "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode("ascii")}


def _subgraph(graph: Any, outputs: list[str]) -> Any:
    """The part of ``graph`` the named ops depend on, as a GraphDef."""
    v1 = _v1()
    return v1.graph_util.extract_sub_graph(graph.as_graph_def(), outputs)


def _graph_export(graph: Any, output: Any, extra_ops: list[str] | None = None) -> dict[str, Any]:
    sub = _subgraph(graph, [output.op.name, *(extra_ops or [])])
    return {"kind": "graph",
            "graph_def": base64.b64encode(sub.SerializeToString()).decode("ascii"),
            "output": output.name}


def _context(names: list[str]) -> dict[str, Any]:
    namespace = _user_ns()
    context = {}
    for name in names:
        value = namespace.get(name)
        if isinstance(value, np.ndarray) and value.size <= MAX_CONTEXT_VALUES:
            context[name] = pack_array(value)
    return context


# --- exports --------------------------------------------------------------------------------


def identity(expr: str) -> dict[str, Any]:
    """Which object ``expr`` names now (before and after a graded cell: was it assigned?)."""
    namespace = _user_ns()
    if expr not in namespace:
        return {"defined": False, "id": None}
    return {"defined": True, "id": id(namespace[expr])}


def tensor(expr: str, feed: dict[str, str], context: list[str] | None = None) -> dict[str, Any]:
    """The graph computing the tensor ``expr``; ``feed`` maps the names of the kernel's
    placeholders (``x``) to the arrays the student fed them (``sample_image``)."""
    value = _lookup(expr)
    names = [*feed.values(), *(context or [])]
    if not hasattr(value, "graph") or not hasattr(value, "op"):
        return {"kind": "value", "type": type(value).__name__, "context": _context(names)}
    export = _graph_export(value.graph, value)
    inputs = {}
    for placeholder in feed:
        candidate: Any = _user_ns().get(placeholder)  # whatever the student bound, or None
        if getattr(candidate, "graph", None) is value.graph:
            inputs[placeholder] = candidate.name
    export.update(inputs=inputs, context=_context(names))
    return export


def layer(cls: str, args: list[Any], kwargs: dict[str, Any], input_shape: list[int]
          ) -> dict[str, Any]:
    """The student's layer class built in a fresh graph and applied to a placeholder of
    ``input_shape``; its variables' initialisers are exported with it. ``"@relu"`` in args
    names tf.nn.relu."""
    v1 = _v1()
    klass = _lookup(cls)
    graph = v1.Graph()
    with graph.as_default():
        instance = klass(*[_resolve(a) for a in args],
                         **{k: _resolve(v) for k, v in kwargs.items()})
        x = v1.placeholder(v1.float32, input_shape, name="grader_input")
        out = instance(x)
        variables = list(graph.get_collection("variables"))
    if not hasattr(out, "op"):
        raise TypeError(f"{cls}(...)(x) returned {type(out).__name__}, not a tensor")
    export = _graph_export(graph, out, [v.initializer.name for v in variables])
    export.update(inputs={"x": x.name},
                  initializers={v.op.name: v.initializer.name for v in variables})
    return export


def _resolve(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        v1 = _v1()
        functions = {"@relu": v1.nn.relu, "@sigmoid": v1.nn.sigmoid, "@identity": lambda t: t}
        return functions[value]
    if isinstance(value, list):
        return tuple(_resolve(v) for v in value)
    return value


def model(expr: str, trained: bool = False) -> dict[str, Any]:
    """The graph of the model output ``expr``; with ``trained``, the values its variables had
    in the last session the student closed on that graph (or one still open)."""
    y = _lookup(expr)
    if not hasattr(y, "graph") or not hasattr(y, "op"):
        return {"kind": "value", "type": type(y).__name__}
    export = _graph_export(y.graph, y)
    if trained:
        values = _trained_values(y.graph)
        export["variables"] = {name.split(":")[0]: pack_array(value)
                               for name, value in values.items()}
    return export


def _trained_values(graph: Any) -> dict[str, Any]:
    boot = sys.modules["_grader_boot"]
    values = boot.SNAPSHOTS.get(graph)
    if values is None:
        for sess in list(boot.LIVE_SESSIONS):
            if sess.graph is graph:
                values = boot.snapshot_session(sess)
                if values is not None:
                    break
    if values is None:
        raise LookupError(
            "no session ran the model's initialised variables: the model was never trained")
    return values


def keras_model(expr: str) -> dict[str, Any]:
    """A Keras model as data: its architecture (``model.to_json()``) and its weights as arrays,
    in the order of ``model.weights``. Nothing is judged here (this process is the student's):
    a ``Lambda`` or custom layer is exported as Keras describes it and refused in the clean
    room, which reads the document without Keras's deserialiser. A model whose ``to_json``
    fails (a custom layer without ``get_config``) is described by its layers' class names and
    modules only, so the refusal can name them."""
    import json

    value = _lookup(expr)
    if not all(hasattr(value, name) for name in ("to_json", "get_weights", "layers")):
        return {"kind": "value", "type": type(value).__name__}
    try:
        text = value.to_json()
    except Exception:
        text = json.dumps({"module": type(value).__module__, "class_name": type(value).__name__,
                           "registered_name": None, "config": {"layers": [
                               {"module": type(layer).__module__,
                                "class_name": type(layer).__name__, "config": {},
                                "registered_name": None} for layer in value.layers]}})
    return {"kind": "keras", "model_json": text,
            "weights": [pack_array(w) for w in value.get_weights()],
            "paths": [str(getattr(w, "path", getattr(w, "name", "")))[:200]
                      for w in value.weights]}


EXPORTS: dict[str, Callable[..., dict[str, Any]]] = {
    "identity": identity, "tensor": tensor, "layer": layer, "model": model,
    "keras_model": keras_model,
}
