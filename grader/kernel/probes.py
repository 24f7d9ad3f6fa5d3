"""Answer extraction, run inside the student's kernel after a graded cell.

Sent as source text by the runner and executed as the module ``_grader_probes``; it must not
import the ``grader`` package and never sees a reference answer: it only reports what the
student's objects are and what they compute on fixed inputs. Every probe returns a JSON-able
dict; comparison and scoring happen on the host.

A probe that fails returns ``{"error": {"ename": ..., "evalue": ...}}`` instead of raising, so
one broken answer never hides the others.
"""

from __future__ import annotations

import contextlib
import math
import sys
import traceback
from typing import Any

import numpy as np

MIME = "application/x-grader-probe+json"
#: Largest number of values one probe returns for an array (bounded JSON leaves the sandbox).
MAX_VALUES = 20_000


def run(name: str, args: dict[str, Any]) -> None:
    """Run probe ``name`` and publish its result as display data of type :data:`MIME`."""
    from IPython.display import publish_display_data

    probe = PROBES.get(name)
    try:
        if probe is None:
            raise KeyError(f"unknown probe {name!r}")
        with _preserved_random_state(), _probing():
            result = probe(**args)
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
    """Probes must not change what the student's next cell draws from ``rng`` or np.random."""
    global_state = np.random.get_state()
    saved = {
        name: value.get_state()
        for name, value in list(_user_ns().items())
        if isinstance(value, np.random.RandomState)
    }
    try:
        yield
    finally:
        np.random.set_state(global_state)
        for name, state in saved.items():
            value = _user_ns().get(name)
            if isinstance(value, np.random.RandomState):
                value.set_state(state)


@contextlib.contextmanager
def _probing():
    boot = sys.modules.get("_grader_boot")
    if boot is None:
        yield
        return
    boot._probing = True
    try:
        yield
    finally:
        boot._probing = False


def _v1():
    import tensorflow as tf

    return tf.compat.v1


def _array(value: Any) -> dict[str, Any]:
    array = np.asarray(value)
    flat = array.astype(np.float64).ravel()[:MAX_VALUES]
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "values": [float(v) if math.isfinite(v) else None for v in flat],
        "truncated": array.size > MAX_VALUES,
    }


def _shape(tensor: Any) -> list[int | None] | None:
    try:
        dims = tensor.shape.as_list()
    except (ValueError, AttributeError):
        return None
    return list(dims)


# --- probes ---------------------------------------------------------------------------------


def identity(expr: str) -> dict[str, Any]:
    """Which object ``expr`` names now: run before a graded cell to tell a fresh answer from a
    value left over by an earlier cell."""
    namespace = _user_ns()
    if expr not in namespace:
        return {"defined": False, "id": None}
    return {"defined": True, "id": id(namespace[expr])}


def tensor_eval(
    expr: str,
    feed: dict[str, str],
    context: list[str] | None = None,
    before_id: int | None = None,
) -> dict[str, Any]:
    """Evaluate the tensor (or array) ``expr``, feeding placeholders named in ``feed`` with the
    values of the kernel variables named there. The fed arrays and the arrays named in
    ``context`` (a filter, say) are reported too, so the host can explain a wrong answer."""
    value = _lookup(expr)
    fresh = before_id is None or id(value) != before_id
    result: dict[str, Any] = {"fresh": fresh, "type": type(value).__name__, "inputs": {}}
    for name in [*feed.values(), *(context or [])]:
        namespace = _user_ns()
        if isinstance(namespace.get(name), np.ndarray) and namespace[name].size <= 4096:
            result["inputs"][name] = _array(namespace[name])
    if isinstance(value, np.ndarray | list | int | float):
        result["output"] = _array(value)
        return result
    v1 = _v1()
    if not hasattr(value, "graph"):
        raise TypeError(f"{expr} is a {type(value).__name__}, not a TensorFlow tensor")
    feed_dict = {_lookup(ph): _lookup(src) for ph, src in feed.items()}
    with v1.Session(graph=value.graph) as sess:
        out = sess.run(value, feed_dict=feed_dict)
    result["output"] = _array(out)
    result["op"] = getattr(getattr(value, "op", None), "type", None)
    return result


def layer(
    cls: str,
    args: list[Any],
    kwargs: dict[str, Any],
    input_shape: list[int],
    seed: int = 0,
) -> dict[str, Any]:
    """Instantiate the student's layer class in a fresh graph; report each variable's initial
    values (for the initialisation check), then set the variables to fixed values and report the
    output on a fixed input (for the computation check). ``"@relu"`` in args names tf.nn.relu."""
    v1 = _v1()
    klass = _lookup(cls)
    resolved_args = [_resolve(a) for a in args]
    resolved_kwargs = {k: _resolve(v) for k, v in kwargs.items()}
    graph = v1.Graph()
    with graph.as_default():
        instance = klass(*resolved_args, **resolved_kwargs)
        variables = list(graph.get_collection("variables"))
        x = v1.placeholder(v1.float32, input_shape)
        out = instance(x)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.variables_initializer(variables))
            initial = sess.run(variables)
            ordered = sorted(
                range(len(variables)), key=lambda i: (-len(initial[i].shape), i)
            )
            fixed_rng = np.random.RandomState(seed)
            for i in ordered:
                fixed = fixed_rng.uniform(-0.5, 0.5, size=initial[i].shape)
                variables[i].load(fixed.astype(initial[i].dtype), sess)
            inputs = np.random.RandomState(seed + 1).uniform(-1, 1, size=input_shape)
            output = sess.run(out, feed_dict={x: inputs.astype(np.float32)})
    return {
        "variables": [
            {
                "name": variables[i].name,
                "shape": list(initial[i].shape),
                "min": float(np.min(initial[i])) if initial[i].size else 0.0,
                "max": float(np.max(initial[i])) if initial[i].size else 0.0,
                "mean": float(np.mean(initial[i])) if initial[i].size else 0.0,
                "std": float(np.std(initial[i])) if initial[i].size else 0.0,
            }
            for i in ordered
        ],
        "output": _array(output),
    }


def _resolve(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        v1 = _v1()
        functions = {"@relu": v1.nn.relu, "@sigmoid": v1.nn.sigmoid, "@identity": lambda t: t}
        return functions[value]
    if isinstance(value, list):
        return tuple(_resolve(v) for v in value)
    return value


def graph_facts(expr: str, depth: int = 8) -> dict[str, Any]:
    """Describe the op producing ``expr`` and the ops it is fed by (types and shapes)."""
    tensor = _lookup(expr)
    if not hasattr(tensor, "op"):
        raise TypeError(f"{expr} is a {type(tensor).__name__}, not a TensorFlow tensor")
    ops: list[dict[str, Any]] = []
    seen: set[str] = set()
    frontier = [(tensor.op, 0)]
    while frontier and len(ops) < 200:
        op, level = frontier.pop(0)
        if op.name in seen or level > depth:
            continue
        seen.add(op.name)
        ops.append(
            {
                "type": op.type,
                "level": level,
                "inputs": [_shape(t) for t in op.inputs],
                "outputs": [_shape(t) for t in op.outputs],
            }
        )
        frontier.extend((t.op, level + 1) for t in op.inputs)
    return {"op": tensor.op.type, "shape": _shape(tensor), "ops": ops}


def predictions(
    expr: str, images: str, scale: float = 255.0, batch_size: int = 500
) -> dict[str, Any]:
    """Class predictions of the trained model ``expr`` on the grader's own test images.

    The variables come from the last session the student closed on the model's graph (kept by
    the bootstrap), or from a session still open. The labels never enter the kernel."""
    v1 = _v1()
    boot = sys.modules["_grader_boot"]
    y = _lookup(expr)
    graph = y.graph
    values = boot.SNAPSHOTS.get(graph)
    source = "closed session"
    if values is None:
        for sess in list(boot.LIVE_SESSIONS):
            if sess.graph is graph:
                values = boot.snapshot_session(sess)
                source = "open session"
                if values is not None:
                    break
    if values is None:
        raise LookupError(
            "no session ran the model's initialised variables: the model was never trained"
        )
    placeholders = [op for op in graph.get_operations() if op.type == "Placeholder"]
    feeds = _feed_candidates(y, placeholders)
    with np.load(images, allow_pickle=False) as data:
        x_test = data["x_test"]
    x_test = (x_test.reshape(-1, 28, 28, 1) / scale).astype(np.float32)
    image_ph = feeds["image"]
    shape = _shape(image_ph)
    if shape is not None and len(shape) == 2:
        x_test = x_test.reshape(len(x_test), -1)
    preds: list[int] = []
    with v1.Session(graph=graph) as sess:
        for var in graph.get_collection("variables"):
            if var.name in values:
                var.load(values[var.name], sess)
        for start in range(0, len(x_test), batch_size):
            feed = {image_ph: x_test[start : start + batch_size], **feeds["extra"]}
            out = sess.run(y, feed_dict=feed)
            preds.extend(int(p) for p in np.argmax(out, axis=1))
    return {"predictions": preds, "source": source, "variables": len(values)}


def _feed_candidates(y: Any, placeholders: list[Any]) -> dict[str, Any]:
    """Find the image placeholder ``y`` depends on, and defaults for scalar ones (keep_prob...)."""
    needed: set[str] = set()
    frontier = [y.op]
    while frontier:
        op = frontier.pop()
        if op.name in needed:
            continue
        needed.add(op.name)
        frontier.extend(t.op for t in op.inputs)
    image = None
    extra: dict[Any, Any] = {}
    for op in placeholders:
        if op.name not in needed:
            continue
        tensor = op.outputs[0]
        shape = _shape(tensor)
        if shape is not None and len(shape) in (2, 4) and image is None:
            image = tensor
        elif shape == [] or shape is None:
            extra[tensor] = False if tensor.dtype.is_bool else 1.0
    if image is None:
        raise LookupError("could not find the image placeholder the model is fed by")
    return {"image": image, "extra": extra}


PROBES = {
    "identity": identity,
    "tensor_eval": tensor_eval,
    "layer": layer,
    "graph_facts": graph_facts,
    "predictions": predictions,
}
