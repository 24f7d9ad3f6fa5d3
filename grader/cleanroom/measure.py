"""The measurements the clean room takes of one export, one function per kind.

Each takes the export (a dict already decoded from JSON) and the job's options, and returns
plain JSON-able data: outputs on the grader's inputs, initial-value statistics, graph facts,
class predictions. Nothing here knows what a right answer is; the host compares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from datapath import data_path
from graphs import (
    GraphRefused,
    check_graph,
    freeze,
    import_graph,
    parse_graph,
    unpack_array,
    values_digest,
    variable_nodes,
)

#: Largest number of values one measured array may hold.
MAX_OUTPUT_VALUES = 1_000_000


def _session(graph: Any) -> Any:
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=2,
                                      intra_op_parallelism_threads=2)
    return tf.compat.v1.Session(graph=graph, config=config)


def _graph_export(export: dict[str, Any]) -> Any:
    if export.get("kind") == "value":
        raise GraphRefused("not_a_tensor", f"the answer is a {export.get('type')!s:.40}, "
                           "not a TensorFlow tensor")
    if export.get("kind") != "graph":
        raise GraphRefused("bad_export", "the export is not a graph")
    graph_def = parse_graph(export.get("graph_def"))
    check_graph(graph_def)
    return graph_def


def _tensor(graph: Any, name: Any) -> Any:
    try:
        return graph.get_tensor_by_name(str(name))
    except (KeyError, ValueError, TypeError):
        raise GraphRefused("bad_export", f"the graph has no tensor {str(name)[:80]}") from None


def _placeholders(graph: Any) -> list[Any]:
    return [op.outputs[0] for op in graph.get_operations()
            if op.type in ("Placeholder", "PlaceholderWithDefault")]


def _array(value: Any, max_values: int = MAX_OUTPUT_VALUES) -> dict[str, Any]:
    array = np.asarray(value)
    _expect_size(list(array.shape), max_values)
    array = array.astype(np.float64)
    return {"shape": list(array.shape),
            "values": [v if np.isfinite(v) else None for v in array.ravel().tolist()]}


def _max_values(job: dict[str, Any]) -> int:
    """The most values one output of this job may hold: what the host expects of it (from
    the inputs, or the reference's output for the same input), never over the hard cap."""
    try:
        expected = int(job.get("max_values", MAX_OUTPUT_VALUES))
    except (TypeError, ValueError):
        expected = MAX_OUTPUT_VALUES
    return max(1, min(expected, MAX_OUTPUT_VALUES))


def _expect_size(shape: list[int | None] | None, max_values: int) -> None:
    """Refuse an output whose (static or actual) shape holds more values than expected, before
    it is evaluated or serialised (the host reads only what the expected shape needs)."""
    dims = [d for d in shape or [] if d is not None]
    if shape is None or len(dims) != len(shape):
        return
    size = int(np.prod(dims, dtype=np.float64)) if dims else 1
    if size > max_values:
        raise GraphRefused("wrong_shape", f"the output has shape {shape[:8]} ({size} values); "
                           f"at most {max_values} were expected")


def _run(sess: Any, fetch: Any, feed: dict[Any, Any]) -> Any:
    try:
        return sess.run(fetch, feed_dict=feed)
    except Exception as exc:  # shape mismatch, bad attrs, ...
        raise GraphRefused("eval_failed", f"{type(exc).__name__}: {str(exc)[:300]}") from None


def measure_tensor(export: dict[str, Any], job: dict[str, Any],
                   inputs: list[np.ndarray]) -> dict[str, Any]:
    """The answer tensor evaluated on each input image (the exercise's, then fresh ones)."""
    graph_def = _graph_export(export)
    if variable_nodes(graph_def):
        graph_def = freeze(graph_def, {})
    graph = import_graph(graph_def)
    output = _tensor(graph, export.get("output"))
    named = (export.get("inputs") or {}).get(job.get("placeholder", "x"))
    placeholders = _placeholders(graph)
    names = {p.name for p in placeholders}
    if named is not None and named in names:
        placeholder = _tensor(graph, named)
    elif named is None and len(placeholders) == 1:
        placeholder = placeholders[0]
    else:
        placeholder = None  # the answer does not depend on the exercise's input
    limit = _max_values(job)
    _expect_size(_shape(output), limit)
    outputs = []
    with _session(graph) as sess:
        for image in inputs:
            feed = {placeholder: image.astype(np.float32)} if placeholder is not None else {}
            outputs.append(_array(_run(sess, output, feed), limit))
    return {"outputs": outputs, "fed": placeholder is not None}


def measure_layer(export: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """Initial values from the layer's own initialisers, then its output with the grader's
    weights on the grader's input (both drawn from the job's seed)."""
    graph_def = _graph_export(export)
    graph = import_graph(graph_def)
    initializers = export.get("initializers") or {}
    if not isinstance(initializers, dict):
        raise GraphRefused("bad_export", "initialisers are malformed")
    nodes = variable_nodes(graph_def)
    names = [node.name for node in nodes]
    initial: dict[str, np.ndarray] = {}
    with _session(graph) as sess:
        for name in names:
            init = initializers.get(name)
            if not isinstance(init, str):
                raise GraphRefused("bad_export", f"the variable {name} has no initialiser")
            try:
                op = graph.get_operation_by_name(init)
            except (KeyError, ValueError):
                raise GraphRefused("bad_export", f"no initialiser op {init[:80]}") from None
            _run(sess, op, {})
        for node in nodes:
            value = _run(sess, _read(graph, node), {})
            initial[node.name] = np.asarray(value)
    seed = int(job["seed"])
    order = sorted(range(len(names)), key=lambda i: (-initial[names[i]].ndim, i))
    weights_rng = np.random.RandomState(seed)
    weights = {}
    for i in order:
        shape = initial[names[i]].shape
        weights[names[i]] = weights_rng.uniform(-0.5, 0.5, size=shape)
    frozen = freeze(graph_def, weights)
    from tensorflow.compat.v1 import graph_util

    out_name = str(export.get("output"))
    frozen = graph_util.extract_sub_graph(frozen, [out_name.split(":")[0]])
    graph = import_graph(frozen)
    output = _tensor(graph, out_name)
    placeholder = _tensor(graph, (export.get("inputs") or {}).get("x"))
    input_shape = [int(d) for d in job["input_shape"]]
    x = np.random.RandomState(seed + 1).uniform(-1, 1, size=input_shape).astype(np.float32)
    limit = _max_values(job)
    _expect_size(_shape(output), limit)
    with _session(graph) as sess:
        out = _run(sess, output, {placeholder: x})
    return {
        "variables": [_stats(names[i], initial[names[i]]) for i in order],
        "output": _array(out, limit),
    }


def _read(graph: Any, node: Any) -> Any:
    tensor = graph.get_tensor_by_name(node.name + ":0")
    if node.op == "VarHandleOp":
        import tensorflow as tf

        with graph.as_default():
            return tf.raw_ops.ReadVariableOp(resource=tensor,
                                             dtype=tf.dtypes.as_dtype(node.attr["dtype"].type))
    return tensor


def _stats(name: str, value: np.ndarray) -> dict[str, Any]:
    finite = value[np.isfinite(value)] if value.size else value

    def number(f: Any) -> float:
        return float(f(finite)) if finite.size else 0.0

    return {"name": name, "shape": list(value.shape), "min": number(np.min),
            "max": number(np.max), "mean": number(np.mean), "std": number(np.std),
            "finite": bool(finite.size == value.size)}


def measure_graph(export: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The op producing the output and the ops feeding it: types and static shapes; and the
    data path from the image placeholder to the output (:mod:`datapath`)."""
    graph_def = _graph_export(export)
    graph = import_graph(graph_def)
    y = _tensor(graph, export.get("output"))
    try:
        image, _ = _feeds(graph, y)
    except GraphRefused:
        image = None  # the output does not depend on an image: an empty data path says so
    variables = [node.name for node in variable_nodes(graph_def)]
    return {**_graph_facts(y, int(job.get("depth", 8))),
            "data_path": data_path(graph, image, y, variables)}


def _graph_facts(tensor: Any, depth: int) -> dict[str, Any]:
    ops: list[dict[str, Any]] = []
    seen: set[str] = set()
    frontier = [(tensor.op, 0)]
    while frontier and len(ops) < 200:
        op, level = frontier.pop(0)
        if op.name in seen or level > depth:
            continue
        seen.add(op.name)
        ops.append({"type": op.type, "level": level,
                    "inputs": [_shape(t) for t in op.inputs],
                    "outputs": [_shape(t) for t in op.outputs]})
        frontier.extend((t.op, level + 1) for t in op.inputs)
    return {"op": tensor.op.type, "shape": _shape(tensor), "ops": ops}


def _shape(tensor: Any) -> list[int | None] | None:
    try:
        return list(tensor.shape.as_list())
    except (ValueError, AttributeError):
        return None


def measure_predictions(export: dict[str, Any], job: dict[str, Any],
                        image_sets: dict[str, np.ndarray]) -> dict[str, Any]:
    """Class predictions of the trained model on each image set (uint8, (n, 28, 28))."""
    graph_def = _graph_export(export)
    raw_values = export.get("variables")
    if not isinstance(raw_values, dict):
        raise GraphRefused("untrained", "the export holds no trained values")
    values = {str(k): unpack_array(v) for k, v in list(raw_values.items())[:10_000]}
    parameters = check_graph(graph_def) + sum(
        int(values[node.name].size) for node in variable_nodes(graph_def) if node.name in values)
    limit = int(job.get("max_parameters", 2_000_000))
    if parameters > limit:
        raise GraphRefused("too_many_parameters",
                           f"the model holds {parameters} values (limit {limit})")
    for node in variable_nodes(graph_def):
        declared = [d.size for d in node.attr["shape"].shape.dim]
        if node.name in values and declared and list(values[node.name].shape) != declared:
            raise GraphRefused("bad_export", f"the value of {node.name} has the wrong shape")
    frozen = freeze(graph_def, values)
    graph = import_graph(frozen)
    y = _tensor(graph, export.get("output"))
    image, extra = _feeds(graph, y)
    shape = _shape(image)
    scale = float(job.get("scale", 255.0))
    batch = int(job.get("batch_size", 500))
    results: dict[str, list[int]] = {}
    with _session(graph) as sess:
        for name, images in image_sets.items():
            x = (images.reshape(-1, 28, 28, 1) / scale).astype(np.float32)
            if shape is not None and len(shape) == 2:
                x = x.reshape(len(x), -1)
            predictions: list[int] = []
            for start in range(0, len(x), batch):
                out = np.asarray(_run(sess, y, {image: x[start:start + batch], **extra}))
                if out.ndim != 2 or out.shape[0] != len(x[start:start + batch]):
                    raise GraphRefused("eval_failed", f"the model's output has shape "
                                       f"{list(out.shape)}, not (images, classes)")
                predictions.extend(int(p) for p in np.argmax(out, axis=1))
            results[name] = predictions
    variables = [node.name for node in variable_nodes(graph_def)]
    return {"predictions": results, "parameters": parameters,
            "weights": weights_digest(frozen, _ancestors(y)),
            "graph": {**_graph_facts(y, int(job.get("depth", 8))),
                      "data_path": data_path(graph, image, y, variables)}}


def weights_digest(frozen: Any, needed: set[str]) -> str | None:
    """blake2b-256 (hex) of the values the model computes its output from: every floating-point
    constant of more than one value among the ops in ``needed`` (the trained variables, frozen
    into constants, and any weights the student wrote as constants), each as float32 in C order
    with its shape. Names and the graph's order are left out (the per-value digests are sorted),
    so renaming the variables or building the graph in another order gives the same digest;
    scalars (a clip's epsilon, a scale) are left out as code, not training. None when a
    constant cannot be read (the predictions stand without a digest)."""
    from tensorflow.python.framework import tensor_util

    try:
        return values_digest(np.asarray(tensor_util.MakeNdarray(node.attr["value"].tensor))
                             for node in frozen.node
                             if node.op == "Const" and node.name in needed)
    except Exception:  # a constant TensorFlow cannot turn into an array: no digest
        return None


def _ancestors(y: Any) -> set[str]:
    """The names of the ops ``y`` is computed from (itself included)."""
    needed: set[str] = set()
    frontier = [y.op]
    while frontier:
        op = frontier.pop()
        if op.name in needed:
            continue
        needed.add(op.name)
        frontier.extend(t.op for t in op.inputs)
    return needed


def _feeds(graph: Any, y: Any) -> tuple[Any, dict[Any, Any]]:
    """The image placeholder ``y`` depends on, and defaults for scalar ones (keep_prob...)."""
    needed = _ancestors(y)
    image = None
    extra: dict[Any, Any] = {}
    for tensor in _placeholders(graph):
        if tensor.op.name not in needed:
            continue
        shape = _shape(tensor)
        if shape is not None and len(shape) in (2, 4) and image is None:
            image = tensor
        elif (shape == [] or shape is None) and tensor.op.type == "Placeholder":
            extra[tensor] = False if tensor.dtype.is_bool else 1.0
    if image is None:
        raise GraphRefused("no_input", "the model has no image placeholder")
    return image, extra
