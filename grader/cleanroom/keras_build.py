"""A Keras model made again from checked data, and what the clean room measures of it.

Runs inside the clean room (a top-level module; nothing of ``grader``). The export holds the
model's architecture (checked by :mod:`keras_config`, which keeps only built-in layers and the
arguments that change predictions) and its weights (arrays). The layers are made here by class
name from ``keras.layers`` with those arguments: Keras's deserialiser, which imports modules and
looks up registered objects by the names a document gives, never reads the student's document.

Before any layer allocates a weight, the shapes are worked out without building
(``compute_output_shape``) and the model's parameters counted by formula, so a model that would
need more memory than its exported weights could hold is refused first; then the exported
weights must match the built model's, count and shapes, exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from graphs import GraphRefused, unpack_array, values_digest
from keras_config import LayerSpec, SequentialSpec, parse_document, read_model

#: Most values one image's activations may hold at any layer.
MAX_ACTIVATION = 28 * 28 * 512
#: Bytes of activations one batch may hold at its widest layer.
BATCH_BYTES = 256 * 1024 * 1024
#: Most weight arrays a model may export.
MAX_WEIGHT_ARRAYS = 4 * 64
#: Layer classes counted as a kind in the structure (what a comparator asks for by kind).
KINDS = {
    "conv": {"Conv2D", "DepthwiseConv2D", "SeparableConv2D"},
    "pooling": {"MaxPooling2D", "AveragePooling2D", "GlobalMaxPooling2D",
                "GlobalAveragePooling2D"},
    "dense": {"Dense"},
    "dropout": {"Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise"},
    "normalization": {"BatchNormalization", "LayerNormalization"},
}


def read_spec(export: dict[str, Any]) -> SequentialSpec:
    if export.get("kind") == "value":
        raise GraphRefused("not_a_tensor", f"the answer is a {export.get('type')!s:.40}, "
                           "not a Keras model")
    if export.get("kind") != "keras":
        raise GraphRefused("bad_export", "the export is not a Keras model")
    return read_model(parse_document(export.get("model_json")))


def _layer_parameters(spec: LayerSpec, shape: tuple[int | None, ...]) -> int:
    """The values a layer's weights hold, from its arguments and input shape (an upper bound:
    biases counted whether used or not)."""
    k = spec.kwargs
    channels = int(shape[-1] or 0)
    if spec.class_name == "Dense":
        return (channels + 1) * int(k.get("units", 1))
    if spec.class_name in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
        size = k.get("kernel_size", 1)
        window = math.prod(size) if isinstance(size, tuple) else int(size) ** 2
        multiplier = int(k.get("depth_multiplier", 1))
        filters = int(k.get("filters", channels * multiplier))
        if spec.class_name == "Conv2D":
            return window * channels * filters + filters
        if spec.class_name == "DepthwiseConv2D":
            return (window + 1) * channels * multiplier
        return window * channels * multiplier + channels * multiplier * filters + filters
    if spec.class_name in ("BatchNormalization", "LayerNormalization"):
        return 4 * channels
    return 0


def make_layers(spec: SequentialSpec, max_parameters: int
                ) -> tuple[list[Any], list[dict[str, Any]]]:
    """The unbuilt layers and each one's facts (class, output shape, parameters), the shapes
    worked out and the parameters counted before anything is allocated."""
    import keras

    shape: tuple[int | None, ...] = (None, *spec.input_shape)
    layers, facts, total = [], [], 0
    for index, layer_spec in enumerate(spec.layers):
        try:
            layer = getattr(keras.layers, layer_spec.class_name)(**layer_spec.kwargs)
            out = tuple(layer.compute_output_shape(shape))
        except Exception as exc:  # arguments Keras refuses, shapes that do not fit
            raise GraphRefused("keras_bad_config", f"layer {index} ({layer_spec.class_name}): "
                               f"{type(exc).__name__}: {str(exc)[:300]}") from None
        if any(d is not None and (not isinstance(d, int) or d < 1) for d in out[1:]) or (
                None in out[1:]):
            raise GraphRefused("keras_bad_config", f"layer {index} ({layer_spec.class_name}) "
                               f"gives the shape {list(out)[:8]}")
        width = math.prod(int(d) for d in out[1:] if d is not None)
        if width > MAX_ACTIVATION:
            raise GraphRefused("wrong_shape", f"layer {index} ({layer_spec.class_name}) gives "
                               f"{width} values per image (at most {MAX_ACTIVATION})")
        parameters = _layer_parameters(layer_spec, shape)
        total += parameters
        if total > max_parameters:
            raise GraphRefused("too_many_parameters", f"the model holds more than "
                               f"{max_parameters} values (limit {max_parameters})")
        layers.append(layer)
        facts.append({"class_name": layer_spec.class_name, "output_shape": list(out),
                      "activation": layer_spec.kwargs.get("activation")})
        shape = out
    return layers, facts


def _weights(export: dict[str, Any], max_parameters: int) -> list[np.ndarray]:
    raw = export.get("weights")
    if not isinstance(raw, list) or len(raw) > MAX_WEIGHT_ARRAYS:
        raise GraphRefused("keras_wrong_weights", "the export holds no list of weights")
    arrays, total = [], 0
    for payload in raw:
        array = unpack_array(payload, max_elements=max_parameters)
        total += int(array.size)
        if total > max_parameters:
            raise GraphRefused("too_many_parameters", f"the weights hold more than "
                               f"{max_parameters} values (limit {max_parameters})")
        if not np.issubdtype(array.dtype, np.floating):
            raise GraphRefused("keras_wrong_weights", "a weight is not floating point")
        arrays.append(array.astype(np.float32))
    return arrays


def build_model(export: dict[str, Any], job: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The model with the exported weights set, and its structure facts."""
    import keras

    limit = int(job.get("max_parameters", 2_000_000))
    spec = read_spec(export)
    arrays = _weights(export, limit)  # decoded and bounded before any layer is made
    layers, facts = make_layers(spec, limit)
    model = keras.Sequential([keras.Input(shape=spec.input_shape), *layers])
    expected = [tuple(int(d) for d in w.shape) for w in model.weights]
    got = [tuple(a.shape) for a in arrays]
    if not got:
        raise GraphRefused("untrained", "the export holds no weights")
    if expected != got:
        first = next((i for i, (e, g) in enumerate(zip(expected, got, strict=False)) if e != g),
                     min(len(expected), len(got)))
        raise GraphRefused("keras_wrong_weights", f"the model needs {len(expected)} weight "
                           f"arrays, the export holds {len(got)}; the first to differ is "
                           f"number {first}")
    model.set_weights(arrays)
    digest = values_digest(arrays)
    for fact, layer in zip(facts, layers, strict=True):
        fact["parameters"] = int(sum(math.prod(w.shape) for w in layer.weights))
    structure = {"input_shape": list(spec.input_shape), "layers": facts,
                 "parameters": int(sum(a.size for a in arrays)),
                 "weights": digest,
                 "kinds": {kind: sum(f["class_name"] in names for f in facts)
                           for kind, names in KINDS.items()}}
    return model, structure


def measure_keras_structure(export: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The layers (class, output shape, parameters), their kinds and the parameter count."""
    _, structure = build_model(export, job)
    return structure


def measure_keras_predictions(export: dict[str, Any], job: dict[str, Any],
                              image_sets: dict[str, np.ndarray]) -> dict[str, Any]:
    """Class predictions on each image set (uint8 (n, 28, 28)), fed as the TF1 model is:
    divided by ``scale`` and shaped as the model's input ((28, 28, 1), (28, 28) or (784,))."""
    model, structure = build_model(export, job)
    shape = tuple(structure["input_shape"])
    if math.prod(shape) != 28 * 28:
        raise GraphRefused("no_input", f"the model's input has shape {list(shape)}, not one "
                           "28x28 image")
    scale = float(job.get("scale", 255.0))
    widest = max([math.prod(f["output_shape"][1:]) for f in structure["layers"]] + [784])
    batch = max(1, min(int(job.get("batch_size", 500)), BATCH_BYTES // (4 * widest)))
    results: dict[str, list[int]] = {}
    for name, images in image_sets.items():
        x = (images.reshape(len(images), *shape) / scale).astype(np.float32)
        predictions: list[int] = []
        for start in range(0, len(x), batch):
            chunk = x[start:start + batch]
            try:
                out = np.asarray(model(chunk, training=False))
            except Exception as exc:
                raise GraphRefused("eval_failed", f"{type(exc).__name__}: {str(exc)[:300]}"
                                   ) from None
            if out.ndim != 2 or out.shape[0] != len(chunk):
                raise GraphRefused("eval_failed", f"the model's output has shape "
                                   f"{list(out.shape)}, not (images, classes)")
            predictions.extend(int(p) for p in np.argmax(out, axis=1))
        results[name] = predictions
    return {"predictions": results, "parameters": structure["parameters"],
            "weights": structure["weights"], "structure": structure}
