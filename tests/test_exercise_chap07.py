"""``chap07_keras_cnn``, the Keras exercise written with ``grader assign``
(``reference/chap07_keras_cnn/source.ipynb``): its size limit follows the rule written beside it,
and, graded in the real sandbox, the template filled in by a student earns full marks, an
untrained model and a model with a ``Lambda`` layer no accuracy points.

The notebooks are the exercise's own template with the graded cells (``model``, ``train``)
replaced, as a student would fill them in; the threshold's derivation is in the config cell of
the source notebook (``grader calibrate chap07_keras_cnn --runs 10``)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader.config import GraderConfig
from grader.report import GradeReport, ItemResult
from grader.spec import Exercise, load_exercise

EXERCISE = "chap07_keras_cnn"
CLEANROOM = Path(__file__).resolve().parent.parent / "grader" / "cleanroom"

#: The solution's graded cells, as a student would write them into the template.
MODEL = """model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    keras.layers.Conv2D(16, (3, 3), activation="relu"),
    keras.layers.MaxPooling2D((2, 2)),
    keras.layers.Conv2D(32, (3, 3), activation="relu"),
    keras.layers.MaxPooling2D((2, 2)),{extra}
    keras.layers.Flatten(),
    keras.layers.Dense(10, activation="softmax"),
])
model.summary()"""
TRAIN = """model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train{subset}, t_train{subset}, epochs=3, batch_size=64, verbose=2)
loss, accuracy = model.evaluate(x_test, t_test, verbose=0)
print(f"test loss: {{loss:.4f}}, accuracy: {{accuracy:.4f}}")"""
#: compiled, never fitted; and it prints a figure it never measured
UNTRAINED = """model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
print("accuracy: 0.99")"""


@pytest.fixture(scope="module")
def chap07(config: GraderConfig) -> Exercise:
    return load_exercise(config.exercises_root / EXERCISE, config.reference_root)


def filled(exercise: Exercise, model: str = MODEL.format(extra=""),
           train: str = TRAIN.format(subset="")) -> bytes:
    """The exercise's template with its two graded cells written."""
    nb = nbformat.read(exercise.template, as_version=4)
    nb = copy.deepcopy(nb)
    sources = {"model": model, "train": train}
    replaced = 0
    for cell in nb.cells:
        if cell.get("id") in sources:
            assert "raise NotImplementedError()" in cell.source  # the template's blank
            cell.source = sources[cell["id"]]
            replaced += 1
    assert replaced == 2
    return nbformat.writes(nb).encode()


def _grade(data: bytes, exercise: Exercise, config: GraderConfig, sandbox
           ) -> tuple[GradeReport, dict[str, ItemResult]]:
    from grader.pipeline import grade_notebook

    report = grade_notebook(data, exercise, config, sandbox)
    assert str(report.outcome) == "graded", report.reason
    return report, {item.id: item for item in report.items}


def test_chap07_is_made_by_assign_from_its_annotated_source(tmp_path, chap07: Exercise):
    """The committed spec, template and solution are what `grader assign` writes from
    reference/chap07_keras_cnn/source.ipynb, and the reference outputs were built from that
    solution (regenerate with `grader assign reference/chap07_keras_cnn/source.ipynb`)."""
    import hashlib

    from grader.cli import main
    from grader.reference import read_expected

    source = chap07.reference_dir / "source.ipynb"
    assert main(["assign", str(source), "--out", str(tmp_path), "--no-check"]) == 0
    made = tmp_path / "exercises" / EXERCISE
    assert (made / "exercise.toml").read_text(encoding="utf-8").split("\n", 1)[1] == \
        (chap07.directory / "exercise.toml").read_text(encoding="utf-8").split("\n", 1)[1]
    assert (made / "template.ipynb").read_bytes() == chap07.template.read_bytes()
    solution = (tmp_path / "reference" / EXERCISE / "solution.ipynb").read_bytes()
    assert solution == (chap07.reference_dir / "solution.ipynb").read_bytes()
    assert read_expected(chap07)["solution_sha256"] == hashlib.sha256(solution).hexdigest()
    assert "4 x 12,810 = 51,240" in (made / "exercise.toml").read_text(encoding="utf-8")


def test_max_parameters_is_four_times_the_reference_model(chap07: Exercise, tensorflow: Any):
    """``max_parameters`` (in ``[accuracy]`` and in the structure item) is 4 x the parameters
    of the reference's exported model, counted from its architecture as the clean room does:
    rebuilding the reference changes the count, and this test says the number must follow.
    Keras (TensorFlow) is imported by the ``tensorflow`` fixture, outside the test's capture."""
    pytest.importorskip("keras")
    if str(CLEANROOM) not in sys.path:
        sys.path.insert(0, str(CLEANROOM))
    import keras_build  # the clean room's module, by bare name as it runs there

    export = json.loads((chap07.reference_dir / "exports" / "accuracy.json").read_text())
    counted = keras_build.measure_keras_structure(export, {})["parameters"]
    assert counted == 12_810  # the figure written in the source notebook's comments
    assert chap07.accuracy is not None
    assert chap07.accuracy.max_parameters == 4 * counted
    assert chap07.item("structure").compare.options["max_parameters"] == 4 * counted


@pytest.mark.sandbox
def test_the_template_filled_with_the_solution_earns_full_marks(chap07, config, sandbox):
    report, items = _grade(filled(chap07), chap07, config, sandbox)
    assert report.score == report.max_score == 100, [i.feedback for i in report.items]
    accuracy = items["accuracy"].details
    assert chap07.accuracy is not None
    assert accuracy["measured_accuracy"] >= chap07.accuracy.threshold
    assert not accuracy.get("claimed_mismatch"), accuracy  # it printed what it measured


@pytest.mark.sandbox
def test_an_untrained_model_earns_no_accuracy_points(chap07, config, sandbox):
    _, items = _grade(filled(chap07, train=UNTRAINED), chap07, config, sandbox)
    assert items["structure"].score == 30, items["structure"].feedback  # the layers are right
    assert items["accuracy"].score == 0
    details = items["accuracy"].details
    assert chap07.accuracy is not None
    assert details["measured_accuracy"] < chap07.accuracy.floor
    assert details["claimed_mismatch"] is True  # the 0.99 it printed is flagged


@pytest.mark.sandbox
def test_a_lambda_layer_earns_nothing_and_is_named(chap07, config, sandbox):
    """A ``Lambda`` layer (here a harmless identity) is refused before any layer is made: no
    accuracy points, whatever the model learnt, and the feedback names it in both languages.
    (It trains on 2,000 images only: the refusal does not depend on the training.)"""
    with_lambda = MODEL.format(extra="\n    keras.layers.Lambda(lambda x: x * 1.0),")
    _, items = _grade(filled(chap07, model=with_lambda, train=TRAIN.format(subset="[:2000]")),
                      chap07, config, sandbox)
    for item in items.values():
        assert item.score == 0 and str(item.status) == "error", item.feedback
        assert "Lambda" in item.feedback[0].en and "Lambda" in item.feedback[0].ja
        assert item.feedback[0].en != item.feedback[0].ja
