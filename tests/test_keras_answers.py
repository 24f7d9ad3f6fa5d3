"""Keras models as answers: the kernel's ``keras_model`` export, the clean room's allow-listed
rebuild (``grader/cleanroom/keras_config.py``, ``keras_build.py``), the ``keras_structure``
comparator, and a tiny TF2-style exercise graded end to end (``tests/data/keras_exercise``).

The clean room never gives the student's document to Keras's deserialiser: the forged exports
below (a ``Lambda`` carrying marshalled bytecode that would write a file, a ``module`` of
``os``, a ``registered_name`` of the student's own class, huge or misshapen weights) are refused
before any layer is made, and the payload is shown to be live by loading it with Keras itself.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from grader.clean_room import MEASURES, Job, measure_exports, plan_jobs
from grader.comparators.keras_models import keras_checks
from grader.exports import KerasExport, read_export
from grader.measurements import KerasStructure, MeasurementFailure, parse_measurement
from grader.spec import load_exercise

FIXTURE = Path(__file__).parent / "data" / "keras_exercise"
CLEANROOM = Path(__file__).resolve().parent.parent / "grader" / "cleanroom"
KERNEL = Path(__file__).resolve().parent.parent / "grader" / "kernel"

for folder in (CLEANROOM, KERNEL):  # the clean room's and the kernel's modules, by bare name
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
import exporter  # noqa: E402
import keras_build  # noqa: E402
import keras_config  # noqa: E402
from graphs import GraphRefused  # noqa: E402

# Keras (and TensorFlow) is imported by the first test that runs (tests/conftest.py), not at
# collection.
keras: Any = None
L: Any = None


@pytest.fixture(autouse=True, scope="module")
def _keras(tensorflow: Any) -> None:
    global keras, L
    keras = pytest.importorskip("keras")
    L = keras.layers


def export_of(model) -> dict:
    """What the kernel's exporter makes of ``model`` (as the runner carries it: JSON)."""
    sys.modules["__main__"].__dict__["_keras_answer"] = model
    try:
        return json.loads(json.dumps(exporter.keras_model("_keras_answer")))
    finally:
        sys.modules["__main__"].__dict__.pop("_keras_answer", None)


def small_cnn():
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, activation="relu"),
                             L.MaxPooling2D(), L.Flatten(), L.Dense(10, activation="softmax")])


def packed(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode()}


def refusal(export: dict, job: dict | None = None) -> GraphRefused:
    with pytest.raises(GraphRefused) as caught:
        keras_build.measure_keras_structure(export, job or {"max_parameters": 100_000})
    return caught.value


def lambda_payload_model(target: Path):
    """A model whose Lambda layer, once called, writes ``target``: Keras marshals its code."""
    path = str(target)
    return keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(),
                             L.Lambda(lambda x: (open(path, "w").write("ran"), x)[1]),
                             L.Dense(10, activation="softmax")])


# --- the export and the rebuild (in this process, no sandbox) ------------------------------------


def test_a_model_is_rebuilt_from_its_export_and_predicts_as_the_original():
    model = small_cnn()
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.weights])
    export = export_of(model)
    assert export["kind"] == "keras" and len(export["weights"]) == 4
    images = {"test": rng.integers(0, 256, size=(300, 28, 28)).astype(np.uint8)}
    got = keras_build.measure_keras_predictions(export, {"max_parameters": 100_000}, images)
    x = (images["test"].reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
    want = np.argmax(model.predict(x, verbose=0), axis=1)
    assert got["predictions"]["test"] == want.tolist()
    assert len(set(want.tolist())) > 1  # the comparison can tell models apart
    structure = KerasStructure.model_validate(got["structure"])
    assert [layer.class_name for layer in structure.layers] == [
        "Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    assert structure.parameters == model.count_params() == 6810
    assert structure.kinds["conv"] == 1 and structure.kinds["pooling"] == 1
    # the trained values' digest, as for a TF1 model: the same weights in another model object
    # give the same one, one weight changed another
    again = small_cnn()
    again.set_weights(model.get_weights())
    assert keras_build.measure_keras_predictions(export_of(again), {"max_parameters": 100_000},
                                                 images)["weights"] == got["weights"]
    changed = [w.copy() for w in model.get_weights()]
    changed[0].flat[0] += 0.001
    again.set_weights(changed)
    assert keras_build.measure_keras_predictions(export_of(again), {"max_parameters": 100_000},
                                                 images)["weights"] != got["weights"]
    assert re.fullmatch(r"[0-9a-f]{64}", got["weights"])


@pytest.mark.parametrize("shape", [(784,), (28, 28)])
def test_flat_and_two_dimensional_inputs_are_fed_as_the_model_expects(shape):
    layers = [L.Flatten()] if len(shape) == 2 else []
    model = keras.Sequential([keras.Input(shape), *layers, L.Dense(10)])
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.weights])
    images = {"test": rng.integers(0, 256, size=(50, 28, 28)).astype(np.uint8)}
    got = keras_build.measure_keras_predictions(export_of(model), {}, images)
    x = (images["test"].reshape(-1, *shape) / 255.0).astype(np.float32)
    assert got["predictions"]["test"] == np.argmax(model.predict(x, verbose=0), 1).tolist()


def test_a_model_of_many_built_in_layers_predicts_as_the_original():
    model = keras.Sequential([
        keras.Input((28, 28)), L.Rescaling(2.0, offset=-1.0), L.Reshape((28, 28, 1)),
        L.ZeroPadding2D(1), L.Conv2D(4, 3, strides=2, padding="same", use_bias=False),
        L.BatchNormalization(), L.ReLU(max_value=6.0), L.SeparableConv2D(6, 3),
        L.DepthwiseConv2D(3, depth_multiplier=2, activation="elu"), L.SpatialDropout2D(0.1),
        L.AveragePooling2D(2), L.LayerNormalization(), L.GlobalMaxPooling2D(),
        L.GaussianNoise(0.3), L.Dense(16, activation="gelu"), L.LeakyReLU(0.1),
        L.Dropout(0.5), L.Dense(10), L.Softmax()])
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.weights])
    images = {"test": rng.integers(0, 256, size=(100, 28, 28)).astype(np.uint8)}
    got = keras_build.measure_keras_predictions(export_of(model), {}, images)
    want = model.predict((images["test"] / 255.0).astype(np.float32), verbose=0)
    assert got["predictions"]["test"] == np.argmax(want, 1).tolist()
    assert got["parameters"] == model.count_params()
    assert got["structure"]["kinds"]["normalization"] == 2


def test_a_functional_chain_is_read_and_anything_else_functional_refused():
    inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(4, 3, activation="relu")(inputs)
    x = L.MaxPooling2D()(x)
    outputs = L.Dense(10, activation="softmax")(L.Flatten()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.weights])
    images = {"test": rng.integers(0, 256, size=(100, 28, 28)).astype(np.uint8)}
    got = keras_build.measure_keras_predictions(export_of(model), {}, images)
    want = model.predict((images["test"].reshape(-1, 28, 28, 1) / 255.0).astype(np.float32),
                         verbose=0)
    assert got["predictions"]["test"] == np.argmax(want, 1).tolist()

    shared = L.Dense(784)  # one layer called twice
    flat = keras.Input((784,))
    twice = keras.Model(flat, L.Dense(10)(shared(shared(flat))))
    assert refusal(export_of(twice)).code == "keras_not_sequential"
    a, b = keras.Input((784,)), keras.Input((784,))  # two inputs, merged
    merged = keras.Model([a, b], L.Dense(10)(L.Add()([L.Dense(4)(a), L.Dense(4)(b)])))
    assert refusal(export_of(merged)).code in ("keras_not_sequential",
                                               "keras_layer_not_allowed")
    skip = keras.Input((784,))  # the output computed from the input, past the middle layer
    hidden = L.Dense(4)(skip)
    branch = keras.Model(skip, [L.Dense(10)(skip), hidden])
    assert refusal(export_of(branch)).code == "keras_not_sequential"

    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(10)

        def call(self, x):
            return self.dense(x)

    custom = Custom()
    custom(np.zeros((1, 784), np.float32))
    assert refusal(export_of(custom)).code == "keras_not_sequential"


def _chain_export() -> dict:
    inputs = keras.Input((784,))
    return export_of(keras.Model(inputs, L.Dense(10)(L.Dense(8)(inputs))))


def _rewired(mutate) -> dict:
    export = _chain_export()
    document = json.loads(export["model_json"])
    mutate(document["config"])
    export["model_json"] = json.dumps(document)
    return export


def _args(config, index):
    return config["layers"][index]["inbound_nodes"][0]["args"]


@pytest.mark.parametrize("mutate", [
    lambda c: _args(c, 2)[0]["config"].update(keras_history=[c["layers"][0]["name"], 0, 0]),
    lambda c: _args(c, 2)[0]["config"].update(keras_history=["os", 0, 0]),
    lambda c: _args(c, 2)[0]["config"].update(keras_history=[c["layers"][1]["name"], 1, 0]),
    lambda c: c["layers"][2]["inbound_nodes"][0].update(kwargs={"training": True}),
    lambda c: c["layers"][2]["inbound_nodes"].append(c["layers"][2]["inbound_nodes"][0]),
    lambda c: _args(c, 2).append(_args(c, 2)[0]),
    lambda c: c.update(output_layers=[c["layers"][1]["name"], 0, 0]),
    lambda c: c.update(input_layers=[c["layers"][1]["name"], 0, 0]),
])
def test_a_functional_chain_rewired_is_refused(mutate):
    assert keras_build.measure_keras_structure(_chain_export(), {})["parameters"] == 6370
    assert refusal(_rewired(mutate)).code == "keras_not_sequential"


def test_a_lambda_layer_is_refused_and_its_code_never_runs(tmp_path):
    target = tmp_path / "ran.txt"
    export = export_of(lambda_payload_model(target))
    target.unlink(missing_ok=True)  # the export itself traced the model in this process
    refused = refusal(export)
    assert refused.code == "keras_layer_not_allowed" and refused.ops == ["Lambda"]
    with pytest.raises(GraphRefused):
        keras_build.measure_keras_predictions(export, {}, {"test": np.zeros((2, 28, 28),
                                                                              np.uint8)})
    assert not target.exists()
    # Keras's own loader refuses it in safe mode; told to trust it, it runs the payload
    with pytest.raises(ValueError, match=r"(?i)unsafe|lambda"):
        keras.models.model_from_json(export["model_json"])
    loaded = keras.saving.deserialize_keras_object(json.loads(export["model_json"]),
                                                   safe_mode=False)
    loaded(np.zeros((1, 28, 28, 1), np.float32))
    assert target.read_text() == "ran"


def test_a_custom_layer_class_and_a_custom_activation_are_refused():
    class Doubling(L.Layer):
        def call(self, x):
            return x * 2.0

    model = keras.Sequential([keras.Input((4,)), Doubling(), L.Dense(2)])
    refused = refusal(export_of(model))
    assert refused.code == "keras_layer_not_allowed" and refused.ops == ["Doubling"]

    def twice(x):
        return x * 2

    model = keras.Sequential([keras.Input((4,)), L.Dense(2, activation=twice)])
    assert refusal(export_of(model)).code == "keras_custom_object"
    # built-in initialisers, regularisers and constraints are read (and play no part)
    model = keras.Sequential([keras.Input((4,)), L.Dense(
        2, kernel_initializer=keras.initializers.Constant(0.5), kernel_regularizer="l2",
        kernel_constraint=keras.constraints.MaxNorm(2.0))])
    measured = keras_build.measure_keras_structure(export_of(model), {})
    assert measured["parameters"] == 10


def _forged(mutate) -> dict:
    model = small_cnn()
    export = export_of(model)
    document = json.loads(export["model_json"])
    mutate(document, export)
    export["model_json"] = json.dumps(document)
    return export


def _conv(document):
    return document["config"]["layers"][1]


@pytest.mark.parametrize(("mutate", "code"), [
    (lambda d, a: _conv(d).update(module="os"), "keras_custom_object"),
    (lambda d, a: _conv(d).update(registered_name="Custom>Conv2D"), "keras_custom_object"),
    (lambda d, a: _conv(d).update(class_name="system", module="os",
                                  config={"command": "touch /tmp/x"}), "keras_layer_not_allowed"),
    (lambda d, a: d.update(module="os"), "keras_not_sequential"),
    (lambda d, a: d.update(class_name="Functional"), "keras_bad_config"),  # no wiring
    (lambda d, a: d.update(class_name="Model"), "keras_not_sequential"),
    (lambda d, a: _conv(d)["config"].update(kernel_initializer={
        "module": "__main__", "class_name": "Mine", "config": {}, "registered_name": "Mine"}),
     "keras_custom_object"),
    (lambda d, a: _conv(d)["config"].update(kernel_regularizer={
        "module": "keras.regularizers", "class_name": "L2", "config": {"l2": [1, 2]},
        "registered_name": None}), "keras_custom_object"),
    (lambda d, a: _conv(d)["config"].update(activation={"module": "builtins",
                                                        "class_name": "function",
                                                        "config": "eval"}),
     "keras_custom_object"),
    (lambda d, a: _conv(d)["config"].update(filters=10**6), "keras_bad_config"),
    (lambda d, a: _conv(d)["config"].update(extra_key=1), "keras_bad_config"),
    (lambda d, a: _conv(d)["config"].update(dtype="float64"), "keras_bad_config"),
    (lambda d, a: d["config"]["layers"].pop(0) and d["config"].pop("build_input_shape", None),
     "keras_no_input"),
    (lambda d, a: a["weights"].pop(), "keras_wrong_weights"),
    (lambda d, a: a["weights"].__setitem__(0, packed(np.zeros((3, 3, 1, 5), np.float32))),
     "keras_wrong_weights"),
    (lambda d, a: a["weights"].__setitem__(0, {"dtype": "<f4", "shape": [10**9], "data": ""}),
     "bad_array"),
    (lambda d, a: a["weights"].__setitem__(0, packed(np.zeros(200_000, np.float32))),
     "bad_array"),
    (lambda d, a: [a["weights"].__setitem__(n, packed(np.zeros(60_000, np.float32)))
                   for n in (0, 2)], "too_many_parameters"),
    (lambda d, a: a["weights"].__setitem__(0, {"dtype": "|O", "shape": [1], "data": ""}),
     "bad_array"),
    (lambda d, a: d["config"]["layers"][4]["config"].update(units=8192) or d["config"][
        "layers"].insert(4, {"module": "keras.layers", "class_name": "Dense", "config": {
            "units": 8192}, "registered_name": None}), "too_many_parameters"),
])
def test_forged_exports_are_refused_before_any_layer_is_made(mutate, code):
    refused = refusal(_forged(mutate))
    assert refused.code == code, refused.detail


def test_a_huge_or_deep_document_is_refused():
    assert refusal({"kind": "keras", "model_json": "[" * 100_000 + "]" * 100_000,
                    "weights": []}).code == "keras_bad_config"
    assert refusal({"kind": "keras", "model_json": " " * 2_000_000,
                    "weights": []}).code == "keras_bad_config"
    assert refusal({"kind": "value", "type": "int"}).code == "not_a_tensor"


def test_every_allowed_layer_and_activation_is_one_keras_makes():
    """The allow-list names only what ``keras.layers`` and Keras's activations hold."""
    for name in keras_config.KEPT:
        assert hasattr(keras.layers, name), name
    for name in keras_config.ACTIVATIONS:
        keras.activations.get(name)


# --- host side: the envelope, the routing, the measurement, the comparator ---------------------


def test_the_host_reads_a_keras_export_and_routes_it(tmp_path, config):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(export_of(small_cnn())))
    assert isinstance(read_export(path), KerasExport)
    exercise = _exercise(tmp_path, config)
    assert MEASURES["keras_structure"] == "keras_structure"
    jobs = plan_jobs(exercise, {"structure": path, "accuracy": path},
                     {"structure": path, "accuracy": path})
    assert [(j.id, j.measure) for j in jobs] == [("structure/student", "keras_structure"),
                                                 ("accuracy/student", "predictions")]
    assert all(j.options["max_parameters"] == 60000 for j in jobs)
    failure = parse_measurement("keras_structure", {"ok": False, "error": {
        "code": "keras_layer_not_allowed", "detail": "Lambda", "ops": ["Lambda"]}})
    assert isinstance(failure, MeasurementFailure)


def test_a_structure_item_must_export_a_keras_model(tmp_path, config):
    from grader.spec import SpecError

    exercise = _exercise(tmp_path, config)
    spec = exercise.directory / "exercise.toml"
    text = spec.read_text()
    spec.write_text(text.replace('extract = { export = "keras_model", expr = "model" }\n'
                                 'compare = { kind = "keras_structure"',
                                 'extract = { export = "model", expr = "model" }\n'
                                 'compare = { kind = "keras_structure"'))
    assert spec.read_text() != text
    with pytest.raises(SpecError, match=r"keras_structure.*keras_model"):
        load_exercise(exercise.directory, tmp_path / "reference")


def test_structure_checks():
    facts = {"layers": [{"class_name": "Conv2D", "output_shape": [None, 26, 26, 4]},
                        {"class_name": "Flatten", "output_shape": [None, 2704]},
                        {"class_name": "Dense", "output_shape": [None, 10],
                         "activation": "softmax"}],
             "kinds": {"conv": 1, "pooling": 0, "dense": 1}, "parameters": 27_000}
    options = {"require": ["conv", "pooling"], "classes": 10, "output_activation": "softmax",
               "max_parameters": 20_000}
    results = [ok for ok, _ in keras_checks(facts, options)]
    assert results == [True, False, True, True, False]
    facts["layers"][-1]["activation"] = "linear"
    assert [ok for ok, _ in keras_checks(facts, {"output_activation": "softmax"})] == [False]
    assert [ok for ok, _ in keras_checks(facts, {"require": {"Dense": 2}})] == [False]


# --- the tiny exercise, end to end in the sandboxes ---------------------------------------------

IMPORTS = """import numpy as np
import tensorflow as tf
from tensorflow import keras
print("eager:", tf.executing_eagerly())"""
DATA = """(x_train, t_train), _ = keras.datasets.mnist.load_data()
x_train = (x_train[:2000].reshape(-1, 28, 28, 1) / 255).astype(np.float32)
t_train = t_train[:2000]"""
MODEL = """keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    keras.layers.Conv2D(8, 3, activation="relu"),{extra}
    keras.layers.MaxPooling2D(),
    keras.layers.Flatten(),
    keras.layers.Dense(10, activation="softmax"),
])"""
TRAIN = """model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, t_train, epochs=2, batch_size=32, verbose=0)
print("accuracy:", history.history["accuracy"][-1])"""
CUSTOM = """class Doubling(keras.layers.Layer):
    def call(self, x):
        return x * 2.0

"""


def notebook(model: str = MODEL.format(extra=""), train: str = TRAIN) -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}
    cells = [nbformat.v4.new_markdown_cell("# A small Keras CNN")]
    for cell_id, source in [("imports", IMPORTS), ("data", DATA), ("model", model),
                            ("train", train)]:
        cell = nbformat.v4.new_code_cell(source)
        cell["id"] = cell_id
        cells.append(cell)
    nb.cells = cells
    return nbformat.writes(nb).encode()


def _exercise(root: Path, config):
    target = root / "exercises" / "keras_tiny"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE / "exercise.toml", target / "exercise.toml")
    (target / "template.ipynb").write_bytes(notebook(model="model = None  # WRITE ME",
                                                     train="# WRITE ME"))
    reference = root / "reference" / "keras_tiny"
    reference.mkdir(parents=True, exist_ok=True)
    (reference / "solution.ipynb").write_bytes(notebook())
    return load_exercise(target, root / "reference")


@pytest.fixture(scope="module")
def built(tmp_path_factory, config, sandbox):
    from grader.reference_build import build_reference

    exercise = _exercise(tmp_path_factory.mktemp("keras"), config)
    build_reference(exercise, config, sandbox)
    return exercise


def _grade(data: bytes, exercise, config, sandbox):
    from grader.pipeline import grade_notebook

    report = grade_notebook(data, exercise, config, sandbox)
    return report, {item.id: item for item in report.items}


@pytest.mark.sandbox
def test_the_reference_earns_full_marks_in_a_tf2_notebook(built, config, sandbox):
    report, items = _grade(notebook(), built, config, sandbox)
    assert str(report.outcome) == "graded", report.reason
    assert items["structure"].score == 4, items["structure"].feedback
    assert items["accuracy"].score == 6, items["accuracy"].feedback
    assert items["accuracy"].details["measured_accuracy"] >= 0.5
    assert "eager: True" in (report.executed_notebook or "")  # tf1 = false keeps TF2 as it is
    # a Keras model has its fingerprint too (the similarity check compares it)
    assert report.fingerprint is not None and len(report.fingerprint.weights) == 64


@pytest.mark.sandbox
def test_an_untrained_model_earns_no_accuracy_points(built, config, sandbox):
    untrained = """model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
print("accuracy:", 0.99)"""
    _, items = _grade(notebook(train=untrained), built, config, sandbox)
    assert items["structure"].score == 4, items["structure"].feedback
    assert items["accuracy"].score == 0
    assert items["accuracy"].details["measured_accuracy"] < 0.25


@pytest.mark.sandbox
def test_a_lambda_layer_and_a_custom_layer_earn_nothing_with_feedback(built, config, sandbox):
    with_lambda = MODEL.format(extra="\n    keras.layers.Lambda(lambda x: x * 1.0),")
    _, items = _grade(notebook(model=with_lambda), built, config, sandbox)
    for item in items.values():
        assert item.score == 0 and str(item.status) == "error", item.feedback
        assert "Lambda" in item.feedback[0].en and "Lambda" in item.feedback[0].ja
        assert item.feedback[0].en != item.feedback[0].ja
    custom = CUSTOM + MODEL.format(extra="\n    Doubling(),")
    _, items = _grade(notebook(model=custom), built, config, sandbox)
    for item in items.values():
        assert item.score == 0 and str(item.status) == "error", item.feedback
        assert "Doubling" in item.feedback[0].en


@pytest.mark.sandbox
def test_the_clean_room_refuses_forged_exports_and_runs_no_payload(tmp_path, config, sandbox):
    """In the real clean room: a Lambda whose code would write into the clean room's own
    folder, a ``module`` of ``os``, misshapen weights; and beside them an honest model,
    measured."""
    exercise = _exercise(tmp_path / "exercise", config)
    item = exercise.item("structure")
    payload = export_of(lambda_payload_model(Path("/job/pwned")))
    os_module = _forged(lambda d, a: _conv(d).update(module="os"))
    misshapen = _forged(lambda d, a: a["weights"].pop())
    honest = export_of(small_cnn())
    jobs = []
    for n, export in enumerate([payload, os_module, misshapen, honest]):
        path = tmp_path / f"export{n}.json"
        path.write_text(json.dumps(export))
        jobs.append(Job(f"s{n}/student", item, "student", "keras_structure", path,
                        {"max_parameters": 60000}))
    workdir = tmp_path / "cleanroom"
    measured = measure_exports(jobs, sandbox, workdir)
    codes = [getattr(measured.results[j.id], "code", None) for j in jobs]
    assert codes == ["keras_layer_not_allowed", "keras_custom_object", "keras_wrong_weights",
                     None]
    assert isinstance(measured.results["s3/student"], KerasStructure)
    assert measured.results["s3/student"].parameters == 6810
    assert not (workdir / "pwned").exists()
    assert measured.runs == 1
