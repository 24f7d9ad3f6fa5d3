"""Reading an exported TensorFlow graph safely: parse, check against an allow-list, freeze.

Runs inside the clean room (imported as a top-level module by ``main.py``; it imports nothing
from the ``grader`` package). A graph comes from the student's kernel, so it is hostile data:
before TensorFlow imports it, every node's op must be one a CNN needs (math, nn and array ops),
no function library may ride along, no string tensors, and no constant may be oversized.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Ops a convolutional network, its layers and its initialisers are made of. Anything else
#: (PyFunc, file and string ops, lookup tables, control flow, functions) is refused.
ALLOWED_OPS = frozenset({
    # values and plumbing
    "Const", "Placeholder", "PlaceholderWithDefault", "Identity", "IdentityN", "NoOp",
    "StopGradient", "Cast", "Shape", "ShapeN", "Size", "Rank", "Fill", "ZerosLike", "OnesLike",
    "Range",
    # arrays
    "Reshape", "Squeeze", "ExpandDims", "Transpose", "Pack", "Unpack", "ConcatV2", "Concat",
    "StridedSlice", "Slice", "Pad", "PadV2", "MirrorPad", "Tile", "GatherV2", "Split", "SplitV",
    "BroadcastTo",
    # arithmetic
    "Add", "AddV2", "AddN", "Sub", "Mul", "RealDiv", "Div", "DivNoNan", "FloorDiv", "FloorMod",
    "Maximum", "Minimum", "Neg", "Abs", "Square", "Sqrt", "Rsqrt", "Exp", "Log", "Log1p", "Pow",
    "Reciprocal", "Sign", "Floor", "Ceil", "Round", "ClipByValue", "SquaredDifference",
    "Sum", "Mean", "Prod", "Max", "Min", "ArgMax", "ArgMin", "MatMul", "BatchMatMulV2",
    "Equal", "NotEqual", "Greater", "GreaterEqual", "Less", "LessEqual", "LogicalAnd",
    "LogicalOr", "LogicalNot", "Select", "SelectV2",
    # neural network
    "Conv2D", "DepthwiseConv2dNative", "BiasAdd", "MaxPool", "MaxPoolV2", "AvgPool", "Relu",
    "Relu6", "Elu", "Selu", "LeakyRelu", "Softplus", "Softsign", "Sigmoid", "Tanh", "Softmax",
    "LogSoftmax", "LRN", "FusedBatchNorm", "FusedBatchNormV3",
    # random (initialisers, dropout)
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
    # variables (frozen before evaluation; layer exports run their initialisers)
    "VariableV2", "Variable", "VarHandleOp", "ReadVariableOp", "Assign", "AssignVariableOp",
    "VarIsInitializedOp", "IsVariableInitialized",
})
VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
#: Largest GraphDef accepted, in bytes.
MAX_GRAPH_BYTES = 64 * 1024 * 1024
#: Largest constant accepted, in elements.
MAX_CONST_ELEMENTS = 1_000_000
#: dtypes an exported array may have.
ARRAY_DTYPES = frozenset({"<f4", "<f8", "<i4", "<i8", "|u1", "|b1", "<f2"})


class GraphRefused(Exception):
    """The graph cannot be evaluated; ``code`` says why (data, never a traceback)."""

    def __init__(self, code: str, detail: str, ops: list[str] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ops = ops or []


@dataclass(frozen=True)
class CheckedGraph:
    graph_def: Any
    #: Parameters: elements of every constant and every variable value supplied.
    parameters: int


def unpack_array(payload: Any, max_elements: int = 50_000_000) -> np.ndarray:
    """An array from ``{"dtype", "shape", "data"}``; :class:`GraphRefused` when malformed."""
    if not isinstance(payload, dict):
        raise GraphRefused("bad_array", "an array is not an object")
    dtype, shape, data = payload.get("dtype"), payload.get("shape"), payload.get("data")
    if dtype not in ARRAY_DTYPES:
        raise GraphRefused("bad_array", f"array dtype {dtype!r} is not allowed")
    if not isinstance(shape, list) or len(shape) > 8 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= max_elements
            for d in shape):
        raise GraphRefused("bad_array", "array shape is malformed")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > max_elements or not isinstance(data, str):
        raise GraphRefused("bad_array", "array is too large or has no data")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise GraphRefused("bad_array", "array data is not base64") from None
    if len(raw) != count * np.dtype(dtype).itemsize:
        raise GraphRefused("bad_array", "array data does not match its shape")
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()


def parse_graph(encoded: Any) -> Any:
    """The GraphDef from its base64 text."""
    from tensorflow.core.framework import graph_pb2

    if not isinstance(encoded, str) or len(encoded) > MAX_GRAPH_BYTES * 4 // 3 + 4:
        raise GraphRefused("bad_graph", "the graph is missing or too large")
    try:
        raw = base64.b64decode(encoded, validate=True)
        graph_def = graph_pb2.GraphDef()
        graph_def.ParseFromString(raw)
    except Exception as exc:  # DecodeError and friends: malformed bytes
        raise GraphRefused("bad_graph", f"the graph cannot be read: {type(exc).__name__}"
                           ) from None
    return graph_def


def check_graph(graph_def: Any, *, max_const_elements: int = MAX_CONST_ELEMENTS) -> int:
    """Refuse a graph with ops off the allow-list, functions, strings or oversized constants;
    return the number of constant elements."""
    from tensorflow.core.framework import types_pb2

    if len(graph_def.library.function) or len(graph_def.library.gradient):
        raise GraphRefused("op_not_allowed", "the graph carries functions", ["<function>"])
    refused = sorted({node.op[:100] for node in graph_def.node if node.op not in ALLOWED_OPS})
    if refused:
        raise GraphRefused("op_not_allowed", "ops outside the allow-list: " + ", ".join(
            refused[:10]), refused[:10])
    constants = 0
    for node in graph_def.node:
        for key, attr in node.attr.items():
            if attr.type == types_pb2.DT_STRING or types_pb2.DT_STRING in attr.list.type:
                raise GraphRefused("op_not_allowed", f"{node.op} uses strings ({key})",
                                   [node.op])
        if node.op == "Const":
            tensor = node.attr["value"].tensor
            if tensor.dtype == types_pb2.DT_STRING:
                raise GraphRefused("op_not_allowed", "a string constant", ["Const"])
            elements = 1
            for dim in tensor.tensor_shape.dim:
                elements *= max(dim.size, 0)
            if elements > max_const_elements:
                raise GraphRefused("oversized_constant",
                                   f"a constant of {elements} values (limit "
                                   f"{max_const_elements})", ["Const"])
            constants += elements
    return constants


def freeze(graph_def: Any, values: dict[str, np.ndarray]) -> Any:
    """A copy of ``graph_def`` whose variables are constants holding ``values`` (by variable
    op name); resource reads become identities. Variables without a value are refused."""
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2

    frozen = graph_pb2.GraphDef()
    frozen.CopyFrom(graph_def)
    handles: dict[str, Any] = {}
    for node in frozen.node:
        if node.op not in VARIABLE_OPS:
            continue
        if node.name not in values:
            raise GraphRefused("untrained", f"no value for the variable {node.name}")
        dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
        value = np.asarray(values[node.name]).astype(dtype.as_numpy_dtype)
        if node.op == "VarHandleOp":
            handles[node.name] = dtype
        node.op = "Const"
        node.ClearField("input")
        for key in list(node.attr):
            del node.attr[key]
        node.attr["dtype"].type = dtype.as_datatype_enum
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    for node in frozen.node:
        if node.op == "ReadVariableOp" and node.input and node.input[0] in handles:
            node.op = "Identity"
            dtype = handles[node.input[0]]
            for key in list(node.attr):
                del node.attr[key]
            node.attr["T"].type = dtype.as_datatype_enum
    return frozen


def variable_nodes(graph_def: Any) -> list[Any]:
    return [node for node in graph_def.node if node.op in VARIABLE_OPS]


def import_graph(graph_def: Any) -> Any:
    """A new tf.Graph holding ``graph_def`` (names kept)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.import_graph_def(graph_def, name="")
        except Exception as exc:  # invalid attrs, dangling inputs, shape clashes
            raise GraphRefused("bad_graph", f"TensorFlow cannot load the graph: "
                               f"{type(exc).__name__}: {str(exc)[:300]}") from None
    return graph


def values_digest(arrays: Any) -> str:
    """blake2b-256 (hex) of a model's trained values, whatever their names and order: each
    floating-point array of more than one value as float32 in C order with its shape, the
    per-array digests sorted (scalars, a clip's epsilon or a scale, are code, not training).
    The same for a TF1 graph's frozen constants and a Keras model's weights."""
    digests = []
    for value in arrays:
        value = np.asarray(value)
        if value.size < 2 or value.dtype.kind != "f":
            continue
        array = np.ascontiguousarray(value, dtype=np.float32)
        header = ("x".join(str(d) for d in array.shape) + ":").encode()
        digests.append(hashlib.blake2b(header + array.tobytes(), digest_size=32).digest())
    return hashlib.blake2b(b"".join(sorted(digests)), digest_size=32).hexdigest()
