"""Is the model the network the exercise asks for, on the path the image takes to ``y``?

The clean room describes every op on a path from the image placeholder to ``y``
(``grader/cleanroom/datapath.py``); here, on the host, those facts are judged. A table of
images looked up, or dressed as a classifier beside a dense layer multiplied by zero, measures
well; what gives it away is the path the data takes:

- every op on it is of the network's own kinds (convolution, bias add, activation, pooling,
  reshape, matrix product, softmax at the very end, and scaling by something that does not
  depend on the image, as dropout does), and of kinds the reference's own path uses (any
  activation stands for another);
- each takes the image's data in the data's place (a convolution's input, never its filter)
  and from one branch only: where two branches computed from the image meet, one can be
  multiplied away or added on;
- the logits are ``MatMul(h, W)`` plus a bias with ``W`` and the bias variables;
- what each op applies to the data is what the parameter budget counts: a convolution's filter,
  a weight matrix and a bias are variables or constants themselves, never computed in the graph
  (unpacked from packed words, tiled, filled: a table the budget would see a fraction of), and a
  scaling is a variable, a constant, or computed from a few values (dropout's: a keep
  probability, the data's shape, a random mask), never from a table.

Any of these failing is a model that earns neither the ``model`` item's points nor the
accuracy's (``graph_checks`` keeps the partial credit of an honest network's slips: the
output op, the classes, the dense layer's shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.messages import bilingual
from grader.spec import Text

#: The network's kinds, by op type.
KINDS: Mapping[str, str] = {
    "Conv2D": "convolution", "DepthwiseConv2dNative": "convolution",
    "BiasAdd": "bias", "Add": "bias", "AddV2": "bias", "Sub": "bias",
    **{op: "activation" for op in ("Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Softplus",
                                   "Softsign", "Sigmoid", "Tanh")},
    "MaxPool": "pooling", "MaxPoolV2": "pooling", "AvgPool": "pooling",
    **{op: "reshape" for op in ("Reshape", "Identity", "Squeeze", "ExpandDims",
                                "StopGradient")},
    "MatMul": "matmul",
    "Softmax": "softmax",
    # dropout: x / keep_prob (or x * scale), then where(mask, x, 0) with a random mask
    "Mul": "scale", "RealDiv": "scale", "SelectV2": "scale", "Select": "scale",
}
#: Kinds allowed whether or not the reference's path has them (dropout, a flatten).
ALWAYS_ALLOWED = frozenset({"reshape", "scale"})
#: Where the data may enter each op (by input position); other ops take it first.
DATA_PLACES: Mapping[str, frozenset[int]] = {
    "Add": frozenset({0, 1}), "AddV2": frozenset({0, 1}), "Mul": frozenset({0, 1}),
    "SelectV2": frozenset({1, 2}), "Select": frozenset({1, 2}),
}
#: What the logits' weights and bias must be.
TRAINED = "variable"
#: Kinds whose other inputs are weights the budget counts: variables or constants themselves.
WEIGHTED = frozenset({"convolution", "bias", "matmul"})
#: What those weights may be.
COUNTED = frozenset({"variable", "constant"})
#: Most values of constants, variables and placeholders a computed scaling may be made of
#: (dropout's: a keep probability and a few constants of its random mask, at most 3 here).
MAX_SCALE_SOURCES = 64
#: Most op types named in one feedback text.
NAMED = 6


def path_facts(facts: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The data path in a ``graph`` measurement, or in a ``predictions`` one's ``graph``."""
    if not isinstance(facts, Mapping):
        return None
    path = facts.get("data_path")
    if path is None and isinstance(facts.get("graph"), Mapping):
        path = facts["graph"].get("data_path")
    return path if isinstance(path, Mapping) else None


def path_kinds(path: Mapping[str, Any]) -> set[str]:
    """The network kinds the ops on a data path are of (unknown ops left out)."""
    return {KINDS[str(op.get("type"))] for op in _ops(path) if str(op.get("type")) in KINDS}


def allowed_kinds(expected: Mapping[str, Any] | None) -> set[str]:
    """The kinds a student's path may use: those of the reference's path (plus reshapes and
    dropout's scaling); every network kind when the reference's path is unknown."""
    reference = path_facts(expected)
    if reference is None or not _ops(reference):
        return set(KINDS.values())
    return path_kinds(reference) | ALWAYS_ALLOWED


def data_path_problems(facts: Mapping[str, Any] | None,
                       expected: Mapping[str, Any] | None = None) -> list[Text]:
    """What makes the measured model (``graph`` facts) not the network asked for; empty when
    it is. ``expected``: the reference's measurement, whose path sets the kinds allowed."""
    path = path_facts(facts)
    if path is None:
        return [bilingual("datapath.unreadable")]
    if not path.get("input") or not path.get("reaches_output"):
        return [bilingual("datapath.no_input")]
    if path.get("truncated"):
        return [bilingual("datapath.too_long", count=path.get("count"))]
    ops = _ops(path)
    allowed = allowed_kinds(expected)
    softmax_allowed = 1 if _logits(path).get("softmax") else 0
    foreign: list[str] = []
    unlike: list[str] = []
    joins: list[str] = []
    misplaced: list[str] = []
    computed: list[str] = []
    softmaxes = 0
    for op in ops:
        kind_type = str(op.get("type"))[:60]
        kind = KINDS.get(kind_type)
        if kind is None:
            foreign.append(kind_type)
            continue
        if kind not in allowed:
            unlike.append(kind_type)
        softmaxes += kind == "softmax"
        inputs = [i for i in op.get("inputs") or [] if isinstance(i, Mapping)]
        places = {n for n, i in enumerate(inputs) if i.get("data")}
        if int(op.get("data_inputs") or 0) > 1:
            joins.append(kind_type)
        elif not places <= DATA_PLACES.get(kind_type, frozenset({0})):
            misplaced.append(kind_type)
        if any(_uncounted(kind, i) for i in inputs if not i.get("data")):
            computed.append(kind_type)
    problems: list[Text] = []
    if foreign:
        problems.append(bilingual("datapath.foreign_ops", ops=_named(foreign)))
    if joins:
        problems.append(bilingual("datapath.join", ops=_named(joins)))
    if misplaced:
        problems.append(bilingual("datapath.data_as_weights", ops=_named(misplaced)))
    if computed:
        problems.append(bilingual("datapath.computed_weights", ops=_named(computed)))
    if unlike:
        problems.append(bilingual("datapath.unlike_reference", ops=_named(unlike)))
    if softmaxes > softmax_allowed:
        problems.append(bilingual("datapath.softmax_inside"))
    problems += _logits_problems(_logits(path))
    return problems


def dense_logits_ok(facts: Mapping[str, Any], dense_in: int, classes: int) -> bool:
    """The logits are ``MatMul(h, W) + b`` with ``h`` from the image, ``W`` of shape
    ``[dense_in, classes]`` (not transposed) and ``b`` of ``classes`` values. True when the
    facts hold no data path (an older measurement: the shape checks of ``graph_checks``
    decide, and :func:`data_path_problems` reports the path unreadable)."""
    path = path_facts(facts)
    if path is None:
        return True
    logits = _logits(path)
    matmul, bias = logits.get("matmul"), logits.get("bias")
    if not isinstance(matmul, Mapping) or not isinstance(bias, Mapping):
        return False
    weights = matmul.get("weights")
    if not isinstance(weights, Mapping):
        return False
    h_shape = matmul.get("h_shape") or [None]  # unknown: W's shape makes it dense_in
    b_shape = [d for d in bias.get("shape") or [] if d != 1]
    return bool(matmul.get("h_on_path") and not matmul.get("transpose_a")
                and not matmul.get("transpose_b")
                and weights.get("shape") == [dense_in, classes]
                and h_shape[-1] in (dense_in, None) and b_shape == [classes])


def _uncounted(kind: str, operand: Mapping[str, Any]) -> bool:
    """Whether a non-data input applies values the parameter budget does not count: a layer's
    weight computed in the graph, or a scaling computed from more than a few values (unknown
    counts as more; a variable or constant, which the budget counts, may scale)."""
    if operand.get("kind") in COUNTED:
        return False
    if kind in WEIGHTED:
        return True
    if kind == "scale":
        sources = operand.get("sources")
        return not isinstance(sources, int) or sources > MAX_SCALE_SOURCES
    return False


def _logits_problems(logits: Mapping[str, Any]) -> list[Text]:
    problems = []
    matmul, bias = logits.get("matmul"), logits.get("bias")
    if isinstance(matmul, Mapping) and isinstance(matmul.get("weights"), Mapping):
        kind = matmul["weights"].get("kind")
        if not matmul.get("on_path") or kind != TRAINED:
            problems.append(bilingual("datapath.weights_not_variable",
                                      kind=_kind_text(kind, matmul.get("on_path"))))
    if isinstance(bias, Mapping) and bias.get("kind") != TRAINED:
        problems.append(bilingual("datapath.bias_not_variable", kind=_kind_text(
            bias.get("kind"), True)))
    return problems


def _kind_text(kind: Any, on_path: Any) -> Text:
    if not on_path:
        return bilingual("datapath.kind.not_from_image")
    if kind == "constant":
        return bilingual("datapath.kind.constant")
    if kind == "placeholder":
        return bilingual("datapath.kind.placeholder")
    return bilingual("datapath.kind.computed")


def _ops(path: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [op for op in path.get("ops") or [] if isinstance(op, Mapping)]


def _logits(path: Mapping[str, Any]) -> Mapping[str, Any]:
    logits = path.get("logits")
    return logits if isinstance(logits, Mapping) else {}


def _named(types: list[str]) -> str:
    unique = sorted(set(types))
    more = len(unique) - NAMED
    return ", ".join(unique[:NAMED]) + (f" (+{more})" if more > 0 else "")
