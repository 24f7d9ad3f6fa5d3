"""Tiny models, honest and hostile, built without training, and their data-path facts as the
clean room measures them (``grader/cleanroom/datapath.py``). Shared by the clean room's tests
(the facts) and the comparators' (the verdicts). Needs TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from grader.cleanroom import datapath, graphs

#: The honest ones: the lecture's network, with dropout, with a flatten written with tf.shape.
HONEST = ("reference", "with_dropout", "flatten_by_shape")
#: Public images a table would hold (random stand-ins; their values do not matter here).
TABLE = np.random.RandomState(0).uniform(size=(32, 784)).astype(np.float32)
LABELS = np.eye(10, dtype=np.float32)[np.arange(32) % 10]


def _v1() -> Any:
    import tensorflow as tf

    return tf.compat.v1


def conv(h: Any, shape: tuple[int, ...]) -> Any:
    v1 = _v1()
    w = v1.Variable(np.zeros(shape, np.float32), name="W")
    b = v1.Variable(np.zeros(shape[-1], np.float32), name="b")
    return v1.nn.relu(v1.nn.conv2d(h, w, [1, 1, 1, 1], "VALID") + b)


def pool(h: Any) -> Any:
    return _v1().nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")


def features(x: Any) -> Any:
    """The lecture's network up to the flatten: [None, 800]."""
    h = pool(conv(x, (5, 5, 1, 20)))
    h = pool(conv(h, (5, 5, 20, 50)))
    return _v1().reshape(h, (-1, 800))


def dense(h: Any, weights: Any = None) -> Any:
    v1 = _v1()
    w = v1.Variable(np.zeros((800, 10), np.float32), name="W") if weights is None else weights
    b = v1.Variable(np.zeros(10, np.float32), name="b")
    return v1.matmul(h, w) + b


def lookup(x: Any) -> Any:
    """One-hot labels of the table's image nearest to each input: ArgMin then GatherV2."""
    v1 = _v1()
    flat = v1.reshape(x, (-1, 784))
    distance = v1.reduce_sum(v1.square(TABLE), axis=1) - 2 * v1.matmul(flat, TABLE.T)
    return 10 * v1.gather(LABELS, v1.argmin(distance, axis=1))


def reference(x: Any) -> Any:
    return _v1().nn.softmax(dense(features(x)))


def with_dropout(x: Any) -> Any:
    v1 = _v1()
    keep_prob = v1.placeholder(v1.float32, name="keep_prob")  # as the course writes it
    return v1.nn.softmax(dense(v1.nn.dropout(features(x), keep_prob=keep_prob)))


def flatten_by_shape(x: Any) -> Any:
    """A flatten written with tf.shape (shape arithmetic on the image's batch size)."""
    v1 = _v1()
    h = pool(conv(pool(conv(x, (5, 5, 1, 20))), (5, 5, 20, 50)))
    return v1.nn.softmax(dense(v1.reshape(h, v1.stack([v1.shape(h)[0], 800]))))


def without_bias(x: Any) -> Any:
    """An honest slip: the last layer's bias forgotten."""
    v1 = _v1()
    w = v1.Variable(np.zeros((800, 10), np.float32), name="W")
    return v1.nn.softmax(v1.matmul(features(x), w))


def zero_times_dense(x: Any) -> Any:
    """The issue's attack: the table's answer plus a dense branch multiplied by zero."""
    return _v1().nn.softmax(lookup(x) + 0 * dense(features(x)))


def plus_dense(x: Any) -> Any:
    return _v1().nn.softmax(lookup(x) + dense(features(x)))


def constant_weights(x: Any) -> Any:
    v1 = _v1()
    return v1.nn.softmax(dense(features(x), v1.constant(np.zeros((800, 10), np.float32))))


def lookup_in_bias(x: Any) -> Any:
    """The table's answer as the last layer's 'bias'."""
    v1 = _v1()
    h = features(x)
    w = v1.Variable(np.zeros((800, 10), np.float32), name="W")
    return v1.nn.softmax(v1.nn.bias_add(v1.matmul(h, w), v1.reduce_mean(lookup(x), axis=0)))


def lookup_in_dropout_scale(x: Any) -> Any:
    """The table's answer as the scale dropout multiplies by: one-hot over 800 features."""
    v1 = _v1()
    h = features(x)
    mask = v1.tile(lookup(x), [1, 80])
    return v1.nn.softmax(dense(h * mask))


def lookup_through_a_shape(x: Any) -> Any:
    """The table's index carried by a shape: the length of ``range(index)``, read back with
    ``tf.shape`` (which reads only shapes) and used as dropout-like scaling."""
    v1 = _v1()
    flat = v1.reshape(x, (-1, 784))
    index = v1.argmin(v1.reduce_sum(v1.square(TABLE), axis=1)
                      - 2 * v1.matmul(flat, TABLE.T), axis=1)[0]
    label = v1.shape(v1.range(v1.cast(index, v1.int32)))[0] % 10
    one_hot = v1.cast(v1.equal(v1.range(10), label), v1.float32)  # allowed ops only
    mask = v1.tile(v1.reshape(one_hot, (1, 10)), [1, 80])
    return v1.nn.softmax(dense(features(x) * mask))


def table_as_filters(x: Any) -> Any:
    """Template matching: the images as the input of a convolution whose filter is x."""
    v1 = _v1()
    images = v1.constant(TABLE.reshape(32, 28, 28, 1)[:1])
    h = v1.nn.conv2d(images, v1.reshape(x, (28, 28, 1, -1)), [1, 1, 1, 1], "VALID")
    return v1.nn.softmax(dense(v1.tile(v1.reshape(h, (-1, 1)), [1, 800])))


def table_via_variable(x: Any) -> Any:
    """The table as a variable multiplied into the path (only network kinds): a dense layer
    whose weights are images, then the logits. Caught by the parameter budget only when the
    table is large; here it is a (bad) network."""
    v1 = _v1()
    flat = v1.reshape(x, (-1, 784))
    table = v1.Variable(np.tile(TABLE.T, (1, 25)), name="table")  # [784, 800]
    return v1.nn.softmax(dense(v1.nn.relu(v1.matmul(flat, table))))


#: Bits packed into one int32 constant element by :func:`unpacked`.
PACKED_BITS = 16
#: The table's images binarised: 0/1 pixels are all a nearest neighbour needs.
BINARY = (TABLE > 0.5).astype(np.int32)


def unpacked(bits: np.ndarray) -> Any:
    """A 0/1 table packed :data:`PACKED_BITS` to an int32 constant (so the parameter budget,
    which counts constant elements, sees a 16th of it), unpacked off the data path with
    allowed ops (FloorDiv, FloorMod, Cast): the weight applied to the data is computed."""
    v1 = _v1()
    rows, cols = bits.shape
    powers = (2 ** np.arange(PACKED_BITS)).astype(np.int32)
    words = (bits.reshape(rows, cols // PACKED_BITS, PACKED_BITS) * powers).sum(-1)
    table = v1.floormod(v1.floordiv(v1.expand_dims(v1.constant(words.astype(np.int32)), -1),
                                    v1.constant(powers)), 2)
    return v1.cast(v1.reshape(table, (rows, cols)), v1.float32)


def table_unpacked_into_weights(x: Any) -> Any:
    """Issue 17, attacking the budget: binarised images as a dense layer's weights, unpacked
    from int32 words (784 x 800 applied, 784 x 50 counted), one chain of network kinds."""
    v1 = _v1()
    flat = v1.reshape(x, (-1, 784))
    weights = unpacked(np.tile(BINARY.T, (1, 25)))  # [784, 800]
    return v1.nn.softmax(dense(v1.nn.relu(v1.matmul(flat, weights))))


def table_as_a_scale(x: Any) -> Any:
    """The table as dropout's kind of scaling: the image times 800 unpacked binary images
    (broadcast), averaged over the pixels: 800 dot products, no weight counted but 800."""
    v1 = _v1()
    images = v1.reshape(v1.transpose(unpacked(np.tile(BINARY, (25, 1)))), (28, 28, 800))
    scores = v1.nn.avg_pool(x * images, [1, 28, 28, 1], [1, 1, 1, 1], "VALID")
    return v1.nn.softmax(dense(v1.reshape(scores, (-1, 800))))


def table_selected_in(x: Any) -> Any:
    """A computed table put in the data's place by a select (dropout's form), where a later
    layer reads it beside the image's features."""
    v1 = _v1()
    h = features(x)
    keep = v1.cast(unpacked(np.tile(BINARY[:1], (1, 2))[:, :800]), v1.bool)  # [1, 800]
    other = unpacked(np.tile(BINARY[1:2], (1, 2))[:, :800])
    return v1.nn.softmax(dense(v1.where_v2(keep, h, other)))


MODELS: dict[str, Callable[[Any], Any]] = {
    "reference": reference, "with_dropout": with_dropout, "flatten_by_shape": flatten_by_shape,
    "without_bias": without_bias,
    "zero_times_dense": zero_times_dense, "plus_dense": plus_dense,
    "constant_weights": constant_weights, "lookup_in_bias": lookup_in_bias,
    "lookup_in_dropout_scale": lookup_in_dropout_scale,
    "lookup_through_a_shape": lookup_through_a_shape, "table_as_filters": table_as_filters,
    "table_via_variable": table_via_variable,
    "table_unpacked_into_weights": table_unpacked_into_weights,
    "table_as_a_scale": table_as_a_scale, "table_selected_in": table_selected_in,
}


def measured_path(build: Callable[[Any], Any], *, frozen: bool = False) -> dict[str, Any]:
    """The data-path facts of the model ``build`` makes of a [None, 28, 28, 1] placeholder, as
    the clean room measures an export: the graph cut to the output, imported anew (with
    ``frozen``, its variables turned to constants first, as for a trained model)."""
    v1 = _v1()
    graph = v1.Graph()
    with graph.as_default():
        x = v1.placeholder(v1.float32, [None, 28, 28, 1], name="x")
        y = build(x)
    graph_def = v1.graph_util.extract_sub_graph(graph.as_graph_def(), [y.op.name])
    names = [node.name for node in graphs.variable_nodes(graph_def)]
    if frozen:
        values = {}
        for node in graphs.variable_nodes(graph_def):
            shape = [d.size for d in node.attr["shape"].shape.dim]
            values[node.name] = np.zeros(shape, np.float32)
        graph_def = graphs.freeze(graph_def, values)
    imported = graphs.import_graph(graph_def)
    return datapath.data_path(imported, imported.get_tensor_by_name("x:0"),
                              imported.get_tensor_by_name(y.name), names)
