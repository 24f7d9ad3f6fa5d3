"""The data path of a model: every op on a path from the image to the output, as plain facts.

Runs inside the clean room (imported as a top-level module by ``measure.py``; it imports
nothing from the ``grader`` package, and nothing of TensorFlow at import time: it reads
``tf.Graph`` objects it is handed). The host judges the facts (``grader/comparators/
datapath.py``); nothing here knows what a right network is.

An op is on the data path when its output depends on the image's *values* and feeds the
output. Values flow along every edge, int and bool ones too (an ``ArgMin`` index feeding a
``GatherV2`` is how a table is looked up), except out of the ops that read only a tensor's
shape (``Shape``, ``Size``, ``Rank``, ``ZerosLike``...): dropout's random mask and flatten's
shape arithmetic depend on the image's shape, never on its pixels, so they stay off the path.

For each op on the path (in graph order, at most :data:`MAX_OPS`): its type and, input by
input, either ``{"data": true}`` or what the input is when it is not data: a ``variable``
(a variable op, or a constant that was one before freezing), a ``constant``, a
``placeholder``, or ``other`` (computed), with its static shape and how many values the
constants, variables and placeholders it is computed from hold (``sources``: a weight unpacked
from packed words, tiled or filled holds more than it is made of). Beside them, the logits:
``y = Softmax(Add|AddV2|BiasAdd(MatMul(h, W), b))`` read off the graph, with what ``W`` and
``b`` are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Ops whose output depends only on their input's shape, never on its values.
SHAPE_ONLY = frozenset({"Shape", "ShapeN", "Size", "Rank", "ZerosLike", "OnesLike"})
#: Ops that pass a value through unchanged (followed when telling what an operand is).
PASS_THROUGH = frozenset({"Identity", "ReadVariableOp", "StopGradient"})
VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
PLACEHOLDER_OPS = frozenset({"Placeholder", "PlaceholderWithDefault"})
BIAS_OPS = frozenset({"Add", "AddV2", "BiasAdd"})
#: Most data-path ops described; a longer path is reported by its count only.
MAX_OPS = 200
#: Most inputs described per op.
MAX_INPUTS = 8
#: Most dimensions of a shape reported.
MAX_RANK = 8
#: Most ops visited in all while reading what the operands are made of (``sources``); past
#: it, an operand's ``sources`` is ``None`` (unknown).
MAX_SOURCE_VISITS = 100_000


def shape_of(tensor: Any) -> list[int | None] | None:
    """The static shape (``None`` for an unknown rank), at most :data:`MAX_RANK` dims."""
    try:
        dims = tensor.shape.as_list()
    except (ValueError, AttributeError):
        return None
    return [d if d is None else int(d) for d in dims[:MAX_RANK]]


def _floating(tensor: Any) -> bool:
    try:
        return bool(tensor.dtype.is_floating)
    except AttributeError:
        return False


def _tainted(image_op: Any) -> set[str]:
    """Names of the ops whose output depends on the image's values.

    A shape-only op's output does too when its input's *shape* depends on the values: a shape
    (or a range's length) made from values, ``tf.range(tf.argmin(...))``, is a table index in
    disguise. Shapes are made from integer tensors (and ``Range``'s float bounds), so an op's
    output shape is taken to depend on the values when any integer input (or any input of
    ``Range``) does, or when any input's shape does. Both sets only grow, and an op is looked
    at again only through the input that just joined one: linear in the graph's edges."""
    values = {image_op.name}
    shapes: set[str] = set()
    frontier = [image_op]
    while frontier:  # each op enters at most twice (once per set), each edge is read then
        changed = frontier.pop()
        value, shape = changed.name in values, changed.name in shapes
        for tensor in changed.outputs:
            for op in tensor.consumers():
                shape_tainted = shape or (value and (op.type == "Range"
                                                      or not _floating(tensor)))
                value_tainted = shape_tainted if op.type in SHAPE_ONLY else value
                grew = False
                if shape_tainted and op.name not in shapes:
                    shapes.add(op.name)
                    grew = True
                if value_tainted and op.name not in values:
                    values.add(op.name)
                    grew = True
                if grew:
                    frontier.append(op)
    return values


def _ancestors(op: Any) -> set[str]:
    """Names of the ops ``op`` depends on (itself included)."""
    seen = {op.name}
    frontier = [op]
    while frontier:
        current = frontier.pop()
        for tensor in current.inputs:
            if tensor.op.name not in seen:
                seen.add(tensor.op.name)
                frontier.append(tensor.op)
    return seen


def operand_kind(tensor: Any, variables: frozenset[str]) -> str:
    """What a non-data input is: ``variable``, ``constant``, ``placeholder`` or ``other``.
    ``variables``: names of the ops that were variables before freezing."""
    op = tensor.op
    for _ in range(16):
        if op.type in PASS_THROUGH and op.inputs:
            op = op.inputs[0].op
            continue
        break
    if op.type in VARIABLE_OPS or op.name in variables:
        return "variable"
    if op.type == "Const":
        return "constant"
    if op.type in PLACEHOLDER_OPS:
        return "placeholder"
    return "other"


def _elements(tensor: Any) -> int:
    """Values in a tensor by its static shape (an unknown dimension or rank counted as 1)."""
    count = 1
    for dim in shape_of(tensor) or []:
        count *= dim if dim is not None else 1
    return count


def _declared_elements(op: Any) -> int:
    """Values in a resource variable by its declared shape (unknown dimensions as 1)."""
    try:
        sizes = [int(dim.size) for dim in op.get_attr("shape").dim]
    except (ValueError, TypeError, AttributeError):
        return 1
    count = 1
    for size in sizes[:MAX_RANK]:
        count *= max(size, 1)
    return count


class _Sources:
    """How many values of constants, variables and placeholders a non-data operand is computed
    from: its ancestors, not entering the data path (a shape read off the data is no source).
    All operands share :data:`MAX_SOURCE_VISITS`."""

    def __init__(self, on_path: set[str]) -> None:
        self.on_path = on_path
        self.visits = MAX_SOURCE_VISITS

    def __call__(self, tensor: Any) -> int | None:
        seen = {tensor.op.name}
        frontier = [tensor.op]
        total = 0
        while frontier:
            op = frontier.pop()
            self.visits -= 1
            if self.visits < 0:
                return None
            if op.type == "VarHandleOp":  # its output is a handle: the shape is an attr
                total += _declared_elements(op)
            elif op.type == "Const" or op.type in VARIABLE_OPS or op.type in PLACEHOLDER_OPS:
                total += _elements(op.outputs[0])
            for t in op.inputs:
                if t.op.name not in seen and t.op.name not in self.on_path:
                    seen.add(t.op.name)
                    frontier.append(t.op)
        return total


def _operand(tensor: Any, variables: frozenset[str], sources: _Sources) -> dict[str, Any]:
    return {"data": False, "kind": operand_kind(tensor, variables), "shape": shape_of(tensor),
            "sources": sources(tensor)}


def _describe(op: Any, on_path: set[str], variables: frozenset[str],
              sources: _Sources) -> dict[str, Any]:
    inputs = [{"data": True} if t.op.name in on_path else _operand(t, variables, sources)
              for t in list(op.inputs)[:MAX_INPUTS]]
    return {"type": str(op.type)[:100], "inputs": inputs,
            "data_inputs": sum(t.op.name in on_path for t in op.inputs),
            "input_count": len(op.inputs)}


def _logits(y: Any, on_path: set[str], variables: frozenset[str],
            sources: _Sources) -> dict[str, Any]:
    """``y = Softmax(Add|AddV2|BiasAdd(MatMul(h, W), b))``, piece by piece as found."""
    softmax = y.op.type == "Softmax" and len(y.op.inputs) == 1
    logits = y.op.inputs[0] if softmax else y
    facts: dict[str, Any] = {"softmax": softmax, "bias": None, "matmul": None}
    product = logits
    op = logits.op
    if op.type in BIAS_OPS and len(op.inputs) == 2:
        data = [i for i, t in enumerate(op.inputs) if t.op.name in on_path]
        # BiasAdd(value, bias); Add(a, b) either way round
        first = 0 if op.type == "BiasAdd" or not data else data[0]
        product, bias = op.inputs[first], op.inputs[1 - first]
        facts["bias"] = {"type": op.type, **_operand(bias, variables, sources)}
    if product.op.type == "MatMul" and len(product.op.inputs) == 2:
        mm = product.op
        h, w = mm.inputs

        def flag(name: str) -> bool:
            try:
                return bool(mm.get_attr(name))
            except (ValueError, TypeError):
                return False

        facts["matmul"] = {
            "h_on_path": h.op.name in on_path, "h_shape": shape_of(h),
            "on_path": mm.name in on_path,
            "weights": _operand(w, variables, sources),
            "transpose_a": flag("transpose_a"), "transpose_b": flag("transpose_b"),
        }
    return facts


def data_path(graph: Any, image: Any, y: Any, variables: Iterable[str] = (),
              *, max_ops: int = MAX_OPS) -> dict[str, Any]:
    """The facts of every op on a path from ``image`` (a placeholder's tensor, or ``None``)
    to ``y``. ``variables``: names of ops that were variables before the graph was frozen."""
    names = frozenset(str(v) for v in variables)
    if image is None:
        on_path: set[str] = set()
    else:
        on_path = _tainted(image.op) & _ancestors(y.op)
    sources = _Sources(on_path)
    ordered = [op for op in graph.get_operations()
               if op.name in on_path and op.name != (image.op.name if image is not None
                                                      else None)]
    return {
        "input": image is not None,
        "reaches_output": y.op.name in on_path,
        "count": len(ordered),
        "truncated": len(ordered) > max_ops,
        "ops": [_describe(op, on_path, names, sources) for op in ordered[:max_ops]],
        "logits": _logits(y, on_path, names, sources),
    }
