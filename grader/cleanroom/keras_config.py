"""Reading an exported Keras model's architecture safely: a hostile JSON document checked
against an allow-list of built-in layers before anything of Keras sees it.

Runs inside the clean room (imported as a top-level module; nothing of ``grader``, and no
TensorFlow or Keras here: this module is plain Python). The architecture comes from the
student's kernel (``model.to_json()``), so it is data that may name anything: a ``Lambda``
layer carrying marshalled bytecode, a custom class, a ``module`` such as ``os``, a
``registered_name`` of the student's own object. Keras's own deserialiser imports modules and
looks up registered objects by those names; it is never given this document. Instead
:func:`read_sequential` checks every layer against :data:`LAYERS` (the class name, and every
config key with its allowed values) and returns *only* the keyword arguments that change what
the model computes, from which :mod:`keras_build` makes the layers itself
(``getattr(keras.layers, name)(**kwargs)``). Initialisers, regularisers and constraints play no
part in a trained model's predictions: they are checked (a custom one is refused, with its
name, so the student learns why) and dropped.

Only ``keras.Sequential`` models are read, and functional models that are one chain of layers
(each called once, on the previous one's output: :func:`read_chain`); any other is refused
with a clear code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphs import GraphRefused

#: Largest architecture document read, in characters.
MAX_CONFIG_CHARS = 1_000_000
#: Most layers a model may have.
MAX_LAYERS = 64
#: Built-in activation names a layer may use (Keras's names; anything else is refused).
ACTIVATIONS = frozenset({
    "relu", "sigmoid", "softmax", "tanh", "linear", "elu", "selu", "softplus", "softsign",
    "swish", "silu", "gelu", "relu6", "leaky_relu", "hard_sigmoid", "exponential",
    "log_softmax", "mish",
})
#: Built-in initialiser, regulariser and constraint classes (checked, then dropped).
OBJECTS = {
    "keras.initializers": frozenset({
        "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
        "LecunNormal", "Zeros", "Ones", "Constant", "RandomUniform", "RandomNormal",
        "TruncatedNormal", "VarianceScaling", "Orthogonal", "Identity"}),
    "keras.regularizers": frozenset({"L1", "L2", "L1L2", "OrthogonalRegularizer"}),
    "keras.constraints": frozenset({"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"}),
}
OBJECT_NAMES = frozenset({
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
    "lecun_normal", "zeros", "ones", "random_uniform", "random_normal", "truncated_normal",
    "variance_scaling", "orthogonal", "identity", "l1", "l2", "l1_l2", "max_norm",
    "min_max_norm", "non_neg", "unit_norm",
})
WORD = re.compile(r"^[A-Za-z0-9_]{1,40}$")


@dataclass(frozen=True)
class LayerSpec:
    """One layer to make: a built-in class of ``keras.layers`` and its checked arguments."""

    class_name: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class SequentialSpec:
    """A checked Sequential model: the input's shape (without the batch) and its layers."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]


Check = Callable[[Any, str], Any]


def _bad(where: str, what: str) -> GraphRefused:
    return GraphRefused("keras_bad_config", f"{where}: {what}"[:500])


# --- value checks: each returns the value to pass on, or raises --------------------------------


def _int(lo: int, hi: int) -> Check:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _bad(where, f"expected an integer from {lo} to {hi}")
        return value
    return check


def _float(lo: float, hi: float) -> Check:
    def check(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                lo <= value <= hi):
            raise _bad(where, f"expected a number from {lo} to {hi}")
        return float(value)
    return check


def _ints(lo: int, hi: int, length: int) -> Check:
    """An int, or a list of ``length`` ints (Keras's kernel sizes, strides...)."""
    one = _int(lo, hi)

    def check(value: Any, where: str) -> Any:
        if isinstance(value, list) and len(value) == length:
            return tuple(one(v, where) for v in value)
        return one(value, where)
    return check


def _choice(*allowed: Any) -> Check:
    def check(value: Any, where: str) -> Any:
        if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
            raise _bad(where, f"expected one of {', '.join(map(repr, allowed))}")
        return value
    return check


def _optional(inner: Check) -> Check:
    def check(value: Any, where: str) -> Any:
        return None if value is None else inner(value, where)
    return check


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(where, "expected true or false")
    return value


def _activation(value: Any, where: str) -> str:
    if isinstance(value, str) and value in ACTIVATIONS:
        return value
    name = value if isinstance(value, str) else "a function of your own"
    raise GraphRefused("keras_custom_object", f"{where}: the activation {str(name)[:80]} is "
                       "not a built-in name", [str(name)[:80]])


def _padding_2d(value: Any, where: str) -> Any:
    small = _int(0, 8)
    if isinstance(value, list) and len(value) == 2:
        return tuple(tuple(small(v, where) for v in pair) if isinstance(pair, list)
                     and len(pair) == 2 else small(pair, where) for pair in value)
    return small(value, where)


def _target_shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= 3:
        raise _bad(where, "expected a list of one to three sizes")
    dims = tuple(_int(-1, 100_000)(v, where) for v in value)
    if 0 in dims or dims.count(-1) > 1:
        raise _bad(where, "a size of 0, or more than one -1")
    return dims


def _dtype(value: Any, where: str) -> None:
    if value in (None, "float32"):
        return
    if isinstance(value, dict) and value.get("class_name") == "DTypePolicy" and value.get(
            "module") in ("keras", None) and value.get("registered_name") is None and (
            value.get("config") == {"name": "float32"}):
        return
    raise _bad(where, "only the float32 dtype is read")


def _name(value: Any, where: str) -> None:
    if not isinstance(value, str) or len(value) > 200:
        raise _bad(where, "expected a short name")


def _object(value: Any, where: str) -> None:
    """An initialiser, regulariser or constraint: ``None``, a built-in name or a built-in
    class's config; the student's own is refused by name (it is never made here)."""
    if value is None or (isinstance(value, str) and value in OBJECT_NAMES):
        return
    if isinstance(value, dict):
        module, name = value.get("module"), value.get("class_name")
        config = value.get("config")
        builtin = isinstance(module, str) and isinstance(name, str) and name in OBJECTS.get(
            module, ())
        if builtin and value.get("registered_name") is None and set(value) <= {
                "module", "class_name", "config", "registered_name"} and _plain(config):
            return
        label = str(value.get("registered_name") or name or "?")[:80]
        raise GraphRefused("keras_custom_object", f"{where}: {label} is not a built-in "
                           f"initialiser, regulariser or constraint of Keras", [label])
    label = str(value)[:80] if isinstance(value, str) else type(value).__name__
    raise GraphRefused("keras_custom_object", f"{where}: {label} is not a built-in name",
                       [label])


def _plain(config: Any) -> bool:
    """A built-in object's config: short names, numbers, booleans and ``None`` only."""
    if not isinstance(config, dict) or len(config) > 16:
        return False
    return all(isinstance(k, str) and WORD.match(k) and (
        v is None or isinstance(v, bool | int | float) or (isinstance(v, str) and WORD.match(v)))
        for k, v in config.items())


def _ignored(value: Any, where: str) -> None:
    """A key that changes nothing at prediction time (a seed), of a plain value."""
    if value is not None and not isinstance(value, bool | int | float):
        raise _bad(where, "expected a number or null")


# --- the allow-list ---------------------------------------------------------------------------

SIZE = _ints(1, 28, 2)
POOL = _ints(1, 28, 2)
DILATION = _ints(1, 8, 2)
PADDING = _choice("valid", "same")
DATA_FORMAT = _optional(_choice("channels_last"))
RATE = _float(0.0, 0.99)
AXIS = _choice(-1, 1, 2, 3, [-1], [1], [2], [3])
#: Keys every layer may carry that change nothing the grader reads (checked, then dropped).
COMMON: dict[str, Check] = {"name": _name, "trainable": _bool, "dtype": _dtype}
#: Key -> check for each keyword argument passed on to the layer.
KEPT: dict[str, dict[str, Check]] = {
    "Dense": {"units": _int(1, 8192), "activation": _activation, "use_bias": _bool},
    "Conv2D": {"filters": _int(1, 1024), "kernel_size": SIZE, "strides": SIZE,
               "padding": PADDING, "data_format": DATA_FORMAT, "dilation_rate": DILATION,
               "groups": _int(1, 1024), "activation": _activation, "use_bias": _bool},
    "DepthwiseConv2D": {"kernel_size": SIZE, "strides": SIZE, "padding": PADDING,
                        "depth_multiplier": _int(1, 64), "data_format": DATA_FORMAT,
                        "dilation_rate": DILATION, "activation": _activation,
                        "use_bias": _bool},
    "SeparableConv2D": {"filters": _int(1, 1024), "kernel_size": SIZE, "strides": SIZE,
                        "padding": PADDING, "depth_multiplier": _int(1, 64),
                        "data_format": DATA_FORMAT, "dilation_rate": DILATION,
                        "activation": _activation, "use_bias": _bool},
    "MaxPooling2D": {"pool_size": POOL, "strides": _optional(POOL), "padding": PADDING,
                     "data_format": DATA_FORMAT},
    "AveragePooling2D": {"pool_size": POOL, "strides": _optional(POOL), "padding": PADDING,
                         "data_format": DATA_FORMAT},
    "GlobalMaxPooling2D": {"data_format": DATA_FORMAT, "keepdims": _bool},
    "GlobalAveragePooling2D": {"data_format": DATA_FORMAT, "keepdims": _bool},
    "Flatten": {"data_format": DATA_FORMAT},
    "Dropout": {"rate": RATE},
    "SpatialDropout2D": {"rate": RATE, "data_format": DATA_FORMAT},
    "GaussianNoise": {"stddev": _float(0.0, 10.0)},
    "GaussianDropout": {"rate": RATE},
    "BatchNormalization": {"axis": AXIS, "momentum": _float(0.0, 1.0),
                           "epsilon": _float(1e-12, 1.0), "center": _bool, "scale": _bool},
    "LayerNormalization": {"axis": AXIS, "epsilon": _float(1e-12, 1.0), "center": _bool,
                           "scale": _bool, "rms_scaling": _bool},
    "Reshape": {"target_shape": _target_shape},
    "Activation": {"activation": _activation},
    "ReLU": {"max_value": _optional(_float(0.0, 1e6)), "negative_slope": _float(0.0, 1.0),
             "threshold": _float(-1e6, 1e6)},
    "LeakyReLU": {"negative_slope": _float(0.0, 1.0)},
    "ELU": {"alpha": _float(0.0, 10.0)},
    "Softmax": {"axis": _choice(-1)},
    "Rescaling": {"scale": _float(-1e6, 1e6), "offset": _float(-1e6, 1e6)},
    "ZeroPadding2D": {"padding": _padding_2d, "data_format": DATA_FORMAT},
    "Identity": {},
}
#: Keys that must hold a built-in initialiser, regulariser or constraint (or none).
OBJECT_KEYS = frozenset({
    f"{part}_{what}" for part in ("kernel", "bias", "depthwise", "pointwise", "beta", "gamma")
    for what in ("initializer", "regularizer", "constraint")} | {
    "activity_regularizer", "moving_mean_initializer", "moving_variance_initializer"})
#: Keys of a built-in layer's config that must hold exactly this value (features not read).
FIXED: dict[str, Any] = {"quantization_config": None, "noise_shape": None, "renorm": False,
                         "renorm_clipping": None, "synchronized": False, "lora_rank": None,
                         "lora_alpha": None}
#: Keys that may be present and hold a plain value but change nothing at prediction time.
IGNORED = frozenset({"seed", "renorm_momentum"})
#: The layer classes a model may be made of: ``InputLayer`` and every one of :data:`KEPT`.
LAYERS = frozenset({"InputLayer", *KEPT})
WEIGHTED = frozenset({"Dense", "Conv2D", "DepthwiseConv2D", "SeparableConv2D",
                      "BatchNormalization", "LayerNormalization"})
ENTRY_KEYS = frozenset({"module", "class_name", "config", "registered_name", "build_config"})


def _layer(entry: Any, index: int, entry_keys: frozenset[str] = ENTRY_KEYS
           ) -> LayerSpec | tuple[int, ...]:
    """One layer of the document: a :class:`LayerSpec`, or an ``InputLayer``'s shape."""
    where = f"layer {index}"
    if not isinstance(entry, dict):
        raise _bad(where, "not an object")
    name = entry.get("class_name")
    label = str(name)[:80] if isinstance(name, str) else "?"
    if name not in LAYERS:
        raise GraphRefused("keras_layer_not_allowed", f"{where}: {label} is not a built-in "
                           "layer the grader reads", [label])
    if entry.get("module") != "keras.layers" or entry.get("registered_name") is not None:
        raise GraphRefused("keras_custom_object", f"{where}: {label} names module "
                           f"{str(entry.get('module'))[:80]} / registered name "
                           f"{str(entry.get('registered_name'))[:80]}, not Keras's own layer",
                           [label])
    unknown = sorted(set(entry) - entry_keys)
    if unknown:
        raise _bad(where, f"unexpected key {str(unknown[0])[:40]}")
    config = entry.get("config")
    if not isinstance(config, dict):
        raise _bad(where, "its config is not an object")
    if name == "InputLayer":
        return _input_shape(config, where)
    kept = KEPT[name]
    kwargs: dict[str, Any] = {}
    for key, value in config.items():
        at = f"{where} ({label}) {str(key)[:40]}"
        if key in kept:
            kwargs[key] = kept[key](value, at)
        elif key in COMMON:
            COMMON[key](value, at)
        elif key in OBJECT_KEYS:
            _object(value, at)
        elif key in FIXED:
            if value != FIXED[key]:
                raise _bad(at, f"only {FIXED[key]!r} is read")
        elif key in IGNORED:
            _ignored(value, at)
        else:
            raise _bad(at, "is not a key the grader reads")
    return LayerSpec(str(name), kwargs)


def _input_shape(config: dict[str, Any], where: str) -> tuple[int, ...]:
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    for key, value in config.items():
        if key in ("batch_shape", "batch_input_shape"):
            continue
        at = f"{where} (InputLayer) {str(key)[:40]}"
        if key == "name":
            _name(value, at)
        elif key == "dtype":
            _dtype(value, at)
        elif key in ("sparse", "ragged", "optional"):
            if value is not False:
                raise _bad(at, "only false is read")
        else:
            raise _bad(at, "is not a key the grader reads")
    return _batch_shape(shape, where)


def _batch_shape(shape: Any, where: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or not 2 <= len(shape) <= 4 or shape[0] is not None:
        raise GraphRefused("keras_no_input", f"{where}: the input shape is not (None, ...)")
    return tuple(_int(1, 4096)(d, where) for d in shape[1:])


def parse_document(text: Any) -> dict[str, Any]:
    """The architecture document (JSON text), bounded in size and depth."""
    if not isinstance(text, str) or len(text) > MAX_CONFIG_CHARS:
        raise _bad("the model", "its architecture is missing or too large")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad("the model", "its architecture is not JSON") from None
    if not isinstance(document, dict):
        raise _bad("the model", "its architecture is not an object")
    return document


FUNCTIONAL_MODULES = ("keras.src.models.functional", "keras.models", "keras")


def read_model(document: dict[str, Any]) -> SequentialSpec:
    """The checked model, Sequential or a functional chain; :class:`GraphRefused` naming the
    first thing not allowed."""
    if document.get("class_name") == "Functional" and document.get(
            "module") in FUNCTIONAL_MODULES and document.get("registered_name") in (
            None, "Functional"):
        return read_chain(document)
    return read_sequential(document)


def _history(argument: Any, where: str) -> str:
    """The layer whose output a functional layer is called on (its only argument)."""
    if not isinstance(argument, dict) or argument.get("class_name") != "__keras_tensor__":
        raise GraphRefused("keras_not_sequential", f"{where}: called on something other than "
                           "one layer's output")
    history = (argument.get("config") or {}).get("keras_history")
    if not isinstance(history, list) or len(history) != 3 or history[1:] != [0, 0] or (
            not isinstance(history[0], str)):
        raise GraphRefused("keras_not_sequential", f"{where}: called on a layer's second "
                           "output or call")
    return history[0]


def read_chain(document: dict[str, Any]) -> SequentialSpec:
    """A functional model that is one chain (``x = Layer(...)(x)`` from one ``keras.Input``
    to the output), read as the Sequential model it computes; a branch, a merge, a layer
    called twice or with keyword arguments is refused."""
    config = document.get("config")
    if not isinstance(config, dict):
        raise _bad("the model", "its config is not an object")
    entries = config.get("layers")
    if not isinstance(entries, list) or len(entries) < 2 or len(entries) > MAX_LAYERS + 1:
        raise _bad("the model", f"expected 1 to {MAX_LAYERS} layers")
    keys = ENTRY_KEYS | {"name", "inbound_nodes"}
    previous: str | None = None
    shape: tuple[int, ...] | None = None
    layers: list[LayerSpec] = []
    for index, entry in enumerate(entries):
        where = f"layer {index}"
        layer = _layer(entry, index, keys)
        name, nodes = entry.get("name"), entry.get("inbound_nodes")
        if not isinstance(name, str) or not isinstance(nodes, list):
            raise _bad(where, "no name or inbound nodes")
        if index == 0:
            if not isinstance(layer, tuple) or nodes:
                raise GraphRefused("keras_no_input", "the model does not start with "
                                   "keras.Input(shape=...)")
            shape = layer
        else:
            if isinstance(layer, tuple):
                raise GraphRefused("keras_not_sequential", f"{where}: a second input")
            node = nodes[0] if len(nodes) == 1 and isinstance(nodes[0], dict) else None
            arguments = node.get("args") if node is not None else None
            if node is None or node.get("kwargs") not in ({}, None) or not isinstance(
                    arguments, list) or len(arguments) != 1:
                raise GraphRefused("keras_not_sequential", f"{where}: not called once on "
                                   "one tensor")
            if _history(arguments[0], where) != previous:
                raise GraphRefused("keras_not_sequential", f"{where}: not called on the "
                                   "previous layer's output (a branch)")
            layers.append(layer)
        previous = name
    for key, first in (("input_layers", entries[0]["name"]), ("output_layers", previous)):
        ends = config.get(key)
        if ends not in ([first, 0, 0], [[first, 0, 0]]):
            raise GraphRefused("keras_not_sequential", f"the model's {key} are not the "
                               "chain's ends")
    assert shape is not None
    return SequentialSpec(shape, tuple(layers))


def read_sequential(document: dict[str, Any]) -> SequentialSpec:
    """The checked Sequential model; :class:`GraphRefused` naming the first thing not
    allowed."""
    name = document.get("class_name")
    if name != "Sequential" or document.get("module") not in ("keras", "keras.models") or (
            document.get("registered_name") is not None):
        label = str(document.get("registered_name") or name)[:80]
        raise GraphRefused("keras_not_sequential", f"the model is a {label} from module "
                           f"{str(document.get('module'))[:80]}, not keras.Sequential",
                           [label])
    config = document.get("config")
    if not isinstance(config, dict):
        raise _bad("the model", "its config is not an object")
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_LAYERS + 1:
        raise _bad("the model", f"expected 1 to {MAX_LAYERS} layers")
    shape: tuple[int, ...] | None = None
    layers: list[LayerSpec] = []
    for index, entry in enumerate(entries):
        layer = _layer(entry, index)
        if isinstance(layer, tuple):
            if index != 0:
                raise _bad(f"layer {index}", "an InputLayer after the first layer")
            shape = layer
        else:
            layers.append(layer)
    if shape is None:
        declared = config.get("build_input_shape")
        if declared is None:
            raise GraphRefused("keras_no_input", "the model has no input shape: start it "
                               "with keras.Input(shape=(28, 28, 1))")
        shape = _batch_shape(declared, "the model")
    if not layers:
        raise _bad("the model", "it has no layers")
    return SequentialSpec(shape, tuple(layers))
