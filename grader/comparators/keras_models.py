"""``keras_structure``: a Keras model's layers as the clean room made them again (built-in
layers only, ``grader/cleanroom/keras_config.py``): the layer kinds it must have, its classes,
its output activation and its size.

Options (every one optional)::

    compare = { kind = "keras_structure", require = ["conv", "pooling"], classes = 10,
                output_activation = "softmax", max_parameters = 200000 }

``require``: layer kinds (``conv``, ``pooling``, ``dense``, ``dropout``, ``normalization``) or
class names (``Conv2D``), each needed at least once; a table (``{ conv = 2 }``) asks for counts.
An ``accuracy`` item with ``structure = "<this item>"`` runs the same checks on the model whose
accuracy it measured."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grader.comparators.base import CompareInput, Judgement, register
from grader.messages import bilingual
from grader.report import ItemStatus
from grader.spec import Text


def _required(option: Any) -> dict[str, int]:
    if isinstance(option, Mapping):
        return {str(k): int(v) for k, v in option.items()}
    if isinstance(option, list | tuple):
        return {str(k): 1 for k in option}
    return {}


def keras_checks(facts: Mapping[str, Any], options: Mapping[str, Any]
                 ) -> list[tuple[bool, Text]]:
    """Each structural check of a Keras model's facts, with the text shown when it fails."""
    layers = [layer for layer in facts.get("layers") or [] if isinstance(layer, Mapping)]
    kinds = facts.get("kinds") or {}
    names = [str(layer.get("class_name")) for layer in layers]
    checks: list[tuple[bool, Text]] = []
    for wanted, count in _required(options.get("require")).items():
        have = int(kinds[wanted]) if wanted in kinds else names.count(wanted)
        checks.append((have >= count, bilingual("keras.missing_layer", kind=wanted,
                                                count=count, have=have)))
    if "classes" in options:
        classes = int(options["classes"])
        shape = list(layers[-1].get("output_shape") or []) if layers else []
        checks.append((bool(shape) and shape[-1] == classes and len(shape) == 2, bilingual(
            "keras.classes", shape=shape, classes=classes)))
    if "output_activation" in options:
        wanted_activation = str(options["output_activation"])
        last = [layer for layer in layers if layer.get("class_name") not in (
            "Dropout", "GaussianNoise", "GaussianDropout", "Identity")][-1:]
        actual = None
        if last:
            actual = ("softmax" if last[0].get("class_name") == "Softmax"
                      else last[0].get("activation"))
        checks.append((actual == wanted_activation, bilingual(
            "keras.output_activation", wanted=wanted_activation, actual=str(actual))))
    if "max_parameters" in options:
        limit = int(options["max_parameters"])
        parameters = int(facts.get("parameters") or 0)
        checks.append((parameters <= limit, bilingual(
            "keras.too_many_parameters", parameters=parameters, limit=limit)))
    return checks


@register("keras_structure")
def compare_keras_structure(given: CompareInput) -> Judgement:
    facts = given.measured
    checks = keras_checks(facts, given.item.compare.options)
    passed = sum(ok for ok, _ in checks)
    feedback = [text for ok, text in checks if not ok]
    fraction = passed / len(checks) if checks else 1.0
    status = (ItemStatus.CORRECT if fraction >= 1 else
              ItemStatus.PARTIAL if passed else ItemStatus.INCORRECT)
    details = {"layers": [layer.get("class_name") for layer in facts.get("layers") or []
                          if isinstance(layer, Mapping)],
               "parameters": facts.get("parameters"), "kinds": facts.get("kinds") or {}}
    return Judgement(fraction, status, feedback, details)
