"""Comparators on measurements: the reference's exports measured in the real clean room once
per session, then altered the way students' answers differ."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from grader.clean_room import measure_exports, plan_jobs, reference_context
from grader.comparators import CompareInput, as_array, get_comparator
from grader.comparators.accuracy import accuracy_fraction
from grader.comparators.variants import Variant, apply_variant
from grader.reference import reference_exports
from grader.report import ItemStatus
from tests.hostile_graphs import HONEST, MODELS, measured_path

pytestmark = pytest.mark.sandbox


def _array(value: np.ndarray) -> dict:
    value = np.asarray(value, dtype=np.float64)
    return {"shape": list(value.shape), "values": value.ravel().tolist()}


@pytest.fixture(scope="session")
def expected(exercise, sandbox, tmp_path_factory) -> dict:
    """Item id -> the reference's measurement as the comparators read it (what scoring hands
    them): measured by the clean room from ``reference/<id>/exports``."""
    references = reference_exports(exercise)
    measurable = {k: v for k, v in references.items() if exercise.item(k).compare.kind
                  != "accuracy"}
    jobs = plan_jobs(exercise, measurable, references)
    measured = measure_exports(jobs, sandbox, tmp_path_factory.mktemp("cleanroom"), seed=7)
    views = {}
    for item_id in measurable:
        item = exercise.item(item_id)
        result = measured.get(item_id, "student").model_dump()
        if item.compare.kind == "op_output":
            context = {name: _array(value)
                       for name, value in reference_context(item, references[item_id]).items()}
            context["sample_image"] = context.pop("image")
            result = {"output": result["outputs"][0], "fresh_outputs": result["outputs"][1:],
                      "fed": True, "fresh": True, "inputs": context}
        views[item_id] = result
    return views


def judge(exercise, item_id, measured, expected, **kw):
    item = exercise.item(item_id)
    given = CompareInput(item=item, exercise=exercise, measured=measured,
                         expected=expected.get(item_id), **kw)
    return get_comparator(item.compare.kind)(given)


def both(judgement) -> str:
    return " ".join(t.en + " " + t.ja for t in judgement.feedback)


def answered_as(expected: dict, answer: str, item: str) -> dict:
    """``answer``'s measured outputs handed in for ``item`` (same exercise image): what a
    student who wrote the other exercise's op gets measured."""
    measured = copy.deepcopy(expected[answer])
    measured["inputs"] = expected[item]["inputs"]
    return measured


@pytest.mark.parametrize(
    ("item_id", "variant", "window"),
    [
        ("conv1", Variant("conv", 1, "VALID"), 3),
        ("conv2", Variant("conv", 2, "VALID"), 3),
        ("conv3", Variant("conv", 1, "SAME"), 3),
        ("pool1", Variant("max", 2, "VALID"), 2),
        ("pool2", Variant("max", 1, "VALID"), 2),
        ("pool3", Variant("avg", 2, "VALID"), 2),
    ],
)
def test_numpy_variants_match_the_clean_rooms_tensorflow(expected, item_id, variant, window):
    """The NumPy variants that name mistakes agree with TensorFlow in the clean room."""
    measured = expected[item_id]
    image = np.squeeze(as_array(measured["inputs"]["sample_image"]))
    kernel = measured["inputs"].get("W")
    kernel = None if kernel is None else np.squeeze(as_array(kernel))
    out = apply_variant(image, variant, window, kernel)
    np.testing.assert_allclose(out, np.squeeze(as_array(measured["output"])), atol=1e-4)
    assert len(measured["fresh_outputs"]) == 4


def test_correct_output_scores_full(exercise, expected):
    j = judge(exercise, "conv1", expected["conv1"], expected)
    assert (j.fraction, j.status) == (1.0, ItemStatus.CORRECT)


def test_wrong_stride_is_named(exercise, expected):
    # conv2's answer (stride 2, VALID) handed in for conv1 (stride 1, VALID)
    j = judge(exercise, "conv1", answered_as(expected, "conv2", "conv1"), expected)
    assert j.fraction == 0 and j.status is ItemStatus.INCORRECT
    text = both(j)
    assert "stride 2 and padding='VALID'" in text and "ストライド2" in text
    assert j.details == {"expected_shape": [1, 5, 5, 1], "submitted_shape": [1, 3, 3, 1]}


def test_wrong_padding_is_named(exercise, expected):
    j = judge(exercise, "conv1", answered_as(expected, "conv3", "conv1"), expected)
    assert "stride 1 and padding='SAME'" in both(j)
    assert "5x5" in both(j)


def test_max_instead_of_mean_is_named(exercise, expected):
    j = judge(exercise, "pool3", answered_as(expected, "pool1", "pool3"), expected)
    assert j.fraction == 0
    assert "max pooling with stride 2" in both(j) and "mean pooling" in both(j)


def test_right_values_but_reshape_error_is_partial(exercise, expected):
    error = ("ValueError", "cannot reshape array of size 25 into shape (3,3)")
    j = judge(exercise, "conv1", expected["conv1"], expected, cell_error=error)
    assert j.status is ItemStatus.PARTIAL and j.fraction == 0.5
    assert "reshape(5, 5)" in both(j)


def test_stale_value_from_an_earlier_cell_scores_nothing(exercise, expected):
    stale = dict(expected["conv2"], fresh=False)
    j = judge(exercise, "conv2", stale, expected)
    assert j.fraction == 0 and j.status is ItemStatus.ERROR
    assert "earlier cell" in both(j)


def test_shape_right_values_wrong(exercise, expected):
    measured = copy.deepcopy(expected["conv1"])
    measured["output"]["values"][0] += 1
    j = judge(exercise, "conv1", measured, expected)
    assert j.fraction == 0 and "values differ" in both(j)


def test_layer_reference_probe_scores_full(exercise, expected):
    for item_id in ("conv_layer", "pooling_layer", "dense_layer"):
        j = judge(exercise, item_id, expected[item_id], expected)
        assert j.fraction == 1.0, (item_id, both(j))


def _with_init(measured, bound):
    measured = copy.deepcopy(measured)
    weights = measured["variables"][0]
    weights.update(min=-0.99 * bound, max=0.99 * bound, std=bound / math.sqrt(3), mean=0.0)
    return measured


def test_xavier_initialisation_is_recognised(exercise, expected):
    shape = expected["conv_layer"]["variables"][0]["shape"]  # [3, 3, 4, 8]
    xavier = math.sqrt(6 / (3 * 3 * 4 + 3 * 3 * 8))
    j = judge(exercise, "conv_layer", _with_init(expected["conv_layer"], xavier), expected)
    assert shape == [3, 3, 4, 8]
    assert j.status is ItemStatus.PARTIAL and j.fraction == 0.5
    assert "Xavier" in both(j) and "fan_in=36" in both(j)


def test_he_bound_of_the_reference_passes(exercise, expected):
    he = math.sqrt(6 / 36)
    j = judge(exercise, "conv_layer", _with_init(expected["conv_layer"], he), expected)
    assert j.fraction == 1.0


def test_missing_activation_is_named(exercise, expected):
    measured = copy.deepcopy(expected["dense_layer"])
    measured["output"]["values"] = [v - 1.0 for v in measured["output"]["values"]]
    j = judge(exercise, "dense_layer", measured, expected)
    assert j.fraction == 0.5 and "activation" in both(j)


def test_layer_with_wrong_variable_shapes_scores_nothing(exercise, expected):
    measured = copy.deepcopy(expected["dense_layer"])
    measured["variables"][0]["shape"] = [16, 64]
    j = judge(exercise, "dense_layer", measured, expected)
    assert j.fraction == 0 and "wrong shapes" in both(j)


def test_graph(exercise, expected):
    assert judge(exercise, "model", expected["model"], expected).fraction == 1.0
    relu = dict(expected["model"], op="Relu")
    j = judge(exercise, "model", relu, expected)
    assert j.fraction == pytest.approx(2 / 3) and "softmax" in both(j)
    no_dense = dict(expected["model"], ops=[o for o in expected["model"]["ops"]
                                             if o["type"] != "MatMul"])
    assert "800" in both(judge(exercise, "model", no_dense, expected))


def test_accuracy_fraction_is_linear_between_floor_and_threshold():
    assert accuracy_fraction(0.99, 0.975, 0.9) == 1.0
    assert accuracy_fraction(0.9, 0.975, 0.9) == 0.0
    assert accuracy_fraction(0.9375, 0.975, 0.9) == pytest.approx(0.5)


def test_accuracy_from_predictions_and_printed_figure_flagged(exercise, expected):
    labels = {"test": np.arange(1000) % 10, "holdout": np.arange(500) % 10}
    predictions = {name: truth.copy() for name, truth in labels.items()}
    predictions["test"][:100] = (predictions["test"][:100] + 1) % 10  # 90 % right
    measured = {"predictions": {k: v.tolist() for k, v in predictions.items()},
             "graph": expected["model"]}
    j = judge(exercise, "accuracy", measured, expected, labels=labels, claimed_accuracy=0.99)
    assert j.details["measured_accuracy"] == pytest.approx(0.9)
    assert j.details["accuracies"] == {"test": pytest.approx(0.9), "holdout": 1.0}
    assert j.fraction == 0.0 and j.details["claimed_mismatch"] is True
    assert "printed accuracy 0.990" in both(j)
    perfect = {"predictions": {k: v.tolist() for k, v in labels.items()},
               "graph": expected["model"]}
    j = judge(exercise, "accuracy", perfect, expected, labels=labels, claimed_accuracy=1.0)
    assert j.fraction == 1.0 and "claimed_mismatch" not in j.details


def test_the_lower_of_test_and_held_out_counts_and_memorising_is_named(exercise, expected):
    labels = {"test": np.arange(1000) % 10, "holdout": np.arange(500) % 10}
    held_out = labels["holdout"].copy()
    held_out[:100] = (held_out[:100] + 3) % 10  # 80 % on images it never saw
    measured = {"predictions": {"test": labels["test"].tolist(), "holdout": held_out.tolist()},
             "graph": expected["model"]}
    j = judge(exercise, "accuracy", measured, expected, labels=labels)
    assert j.details["measured_accuracy"] == pytest.approx(0.8)
    assert j.fraction == 0 and j.details["memorised"] is True
    assert "memorises the test set" in both(j)


def test_moved_copies_count_beyond_the_error_ratio_and_a_collapse_is_named(exercise, expected):
    """Moved copies read as an honest CNN reads them (about twice the plain error): the plain
    figure counts. Moved copies at chance (a table of exact pixels): the plain accuracy their
    error implies counts, nothing is earned, and the feedback says the model collapsed."""
    plain = {"test": np.arange(1000) % 10, "holdout": np.arange(500) % 10}
    labels = {**plain, "test-moved": plain["test"], "holdout-moved": plain["holdout"]}
    ratio = exercise.accuracy.moved_error_ratio
    assert 2 < ratio < 4
    honest = {name: truth.copy() for name, truth in labels.items()}
    honest["holdout"][:10] = (honest["holdout"][:10] + 1) % 10  # 0.98
    honest["holdout-moved"][:22] = (honest["holdout-moved"][:22] + 1) % 10  # 0.956: 2.2 x
    measured = {"predictions": {k: v.tolist() for k, v in honest.items()},
                "graph": expected["model"]}
    j = judge(exercise, "accuracy", measured, expected, labels=labels)
    assert j.details["measured_accuracy"] == pytest.approx(0.98) and j.fraction == 1.0
    assert "collapsed" not in j.details
    table = {**{k: plain[k].tolist() for k in plain},
             "test-moved": ((np.arange(1000) // 10) % 10).tolist(),  # chance: 1 in 10
             "holdout-moved": ((np.arange(500) // 10) % 10).tolist()}
    j = judge(exercise, "accuracy", {"predictions": table, "graph": expected["model"]},
              expected, labels=labels)
    assert j.details["accuracies"]["test"] == 1.0 and j.details["accuracies"]["holdout"] == 1.0
    assert j.details["measured_accuracy"] == pytest.approx(1 - 0.9 / ratio)
    assert j.fraction == 0 and j.details["collapsed"] is True
    assert "slightly altered copies" in both(j) and "少しだけ変えたコピー" in both(j)
    missing = {"predictions": {k: v.tolist() for k, v in plain.items()},
               "graph": expected["model"]}
    j = judge(exercise, "accuracy", missing, expected, labels=labels)  # moved sets unmeasured
    assert j.status is ItemStatus.ERROR and j.fraction == 0


def test_accuracy_with_wrong_number_of_predictions(exercise, expected):
    labels = {"test": np.zeros(10, dtype=int)}
    j = judge(exercise, "accuracy", {"predictions": {"test": [1, 2]}}, expected, labels=labels)
    assert j.status is ItemStatus.ERROR and "2 predictions for 10" in both(j)
    j = judge(exercise, "accuracy", {"predictions": "junk"}, expected, labels=labels)
    assert j.status is ItemStatus.ERROR and "0 predictions for 10" in both(j)


def test_right_values_on_the_exercise_image_only_score_nothing(exercise, expected):
    """A constant typed in: right on the exercise's image, wrong on the fresh ones."""
    constant = copy.deepcopy(expected["conv1"])
    constant["fresh_outputs"] = [constant["output"]] * len(constant["fresh_outputs"])
    j = judge(exercise, "conv1", constant, expected)
    assert j.fraction == 0 and j.status is ItemStatus.INCORRECT
    assert "other images" in both(j) and j.details["fresh_images_ok"] is False
    unfed = dict(expected["conv1"], fed=False)
    assert judge(exercise, "conv1", unfed, expected).fraction == 0


def test_unknown_comparator_kind():
    with pytest.raises(KeyError, match="unknown comparator kind 'nope'"):
        get_comparator("nope")


def test_wrong_op_with_a_reshape_to_the_expected_shape_blames_the_op_only(exercise, expected):
    error = ("ValueError", "cannot reshape array of size 25 into shape (3,3)")
    j = judge(exercise, "conv2", answered_as(expected, "conv1", "conv2"), expected,
              cell_error=error)
    assert j.fraction == 0
    assert "stride 1 and padding='VALID'" in both(j) and "reshape" not in both(j)
    error = ("ValueError", "cannot reshape array of size 25 into shape (4,4)")
    j = judge(exercise, "conv2", answered_as(expected, "conv1", "conv2"), expected,
              cell_error=error)
    assert "does not fit" in both(j)


def test_accuracy_counts_only_for_the_network_the_exercise_asks_for(exercise, expected):
    """``structure = "model"``: the trained model must pass the model item's checks."""
    labels = {"test": np.arange(1000) % 10, "holdout": np.arange(500) % 10}
    perfect = {"predictions": {k: v.tolist() for k, v in labels.items()}}
    right = judge(exercise, "accuracy", dict(perfect, graph=expected["model"]), expected,
                  labels=labels)
    assert right.fraction == 1.0
    table = dict(expected["model"], ops=[o for o in expected["model"]["ops"]
                                         if o["type"] != "MatMul"])
    j = judge(exercise, "accuracy", dict(perfect, graph=table), expected, labels=labels)
    assert j.fraction == 0 and j.details["structure_ok"] is False
    assert j.details["accuracies"] == {"test": 1.0, "holdout": 1.0}
    assert "not the network this exercise asks for" in both(j) and "800" in both(j)
    j = judge(exercise, "accuracy", perfect, expected, labels=labels)  # no structure measured
    assert j.fraction == 0 and "structure could not be read" in both(j)


# --- the data path (grader/comparators/datapath.py): tiny graphs measured as the clean room
# --- does, judged beside the reference's measured path

LOOKUPS = ("zero_times_dense", "plus_dense", "constant_weights", "lookup_in_bias",
           "lookup_in_dropout_scale", "lookup_through_a_shape", "table_as_filters")


def _with_path(expected: dict, model: str, frozen: bool = False) -> dict:
    """The reference's graph facts near the output (they look right) with ``model``'s path."""
    return dict(expected["model"], data_path=measured_path(MODELS[model], frozen=frozen))


def _perfect(graph: dict) -> tuple[dict, dict]:
    labels = {"test": np.arange(1000) % 10, "holdout": np.arange(500) % 10}
    return {"predictions": {k: v.tolist() for k, v in labels.items()}, "graph": graph}, labels


@pytest.mark.parametrize("model", LOOKUPS)
def test_a_table_dressed_as_the_network_earns_neither_model_nor_accuracy(
        exercise, expected, model):
    j = judge(exercise, "model", _with_path(expected, model), expected)
    assert j.fraction == 0 and j.status is ItemStatus.INCORRECT
    assert j.details["data_path_ok"] is False
    assert "not the network this exercise asks for" in both(j)
    measured, labels = _perfect(_with_path(expected, model, frozen=True))
    with_reference = dict(expected, accuracy=expected["model"])  # the reference's path
    a = judge(exercise, "accuracy", measured, with_reference, labels=labels)
    assert a.fraction == 0 and a.details["structure_ok"] is False
    assert a.details["accuracies"] == {"test": 1.0, "holdout": 1.0}
    if model in ("zero_times_dense", "plus_dense"):
        assert "ArgMin, GatherV2" in both(j) and "Two branches computed from x meet" in both(j)
    if model == "constant_weights":
        assert "must be a tf.Variable" in both(j) and "a constant" in both(j)
    if model == "table_as_filters":
        assert "stand where the weights belong" in both(j)


@pytest.mark.parametrize("model", HONEST)
def test_honest_variants_of_the_network_keep_their_points(exercise, expected, model):
    assert judge(exercise, "model", _with_path(expected, model), expected).fraction == 1.0
    measured, labels = _perfect(_with_path(expected, model, frozen=True))
    a = judge(exercise, "accuracy", measured, dict(expected, accuracy=expected["model"]),
              labels=labels)
    assert a.fraction == 1.0, both(a)


def test_an_honest_slip_in_the_last_layer_keeps_partial_credit(exercise, expected):
    j = judge(exercise, "model", _with_path(expected, "without_bias"), expected)
    assert j.fraction == pytest.approx(2 / 3) and "800" in both(j)
    assert j.details["data_path_ok"] is True


def test_the_students_kinds_must_be_kinds_of_the_references_path(exercise, expected):
    reference = copy.deepcopy(expected["model"])
    path = reference["data_path"]
    path["ops"] = [op for op in path["ops"] if op["type"] != "MaxPool"]  # no pooling there
    j = judge(exercise, "model", expected["model"], {"model": reference})
    assert j.fraction == 0 and "does not have: MaxPool" in both(j)
    relu = copy.deepcopy(expected["model"])  # activations stand for one another
    for op in relu["data_path"]["ops"]:
        op["type"] = "Tanh" if op["type"] == "Relu" else op["type"]
    assert judge(exercise, "model", relu, expected).fraction == 1.0
    # no reference path measured: every network kind is allowed, nothing else
    assert judge(exercise, "model", expected["model"], {}).fraction == 1.0
    assert judge(exercise, "model", _with_path(expected, "plus_dense"), {}).fraction == 0


def test_a_model_whose_data_path_was_not_measured_earns_nothing(exercise, expected):
    unread = {k: v for k, v in expected["model"].items() if k != "data_path"}
    j = judge(exercise, "model", unread, expected)
    assert j.fraction == 0 and "could not be read" in both(j)
    unfed = copy.deepcopy(expected["model"])
    unfed["data_path"].update(reaches_output=False, ops=[])
    assert "does not depend on the images" in both(judge(exercise, "model", unfed, expected))


# --- issue 17, attacking the budget: weights computed in the graph --------------------------


@pytest.mark.parametrize("model", ["table_unpacked_into_weights", "table_as_a_scale",
                                   "table_selected_in"])
def test_weights_computed_in_the_graph_earn_neither_model_nor_accuracy(exercise, expected,
                                                                      model):
    """The budget counts variables and constants; a table of binarised images packed 16 to
    an int32 word and unpacked off the data path (FloorDiv, FloorMod, Cast: allowed ops) is
    applied whole, as a weight matrix, as dropout's kind of scaling, or selected into the data
    by dropout's select, and counted a 16th (784 x 800 applied, 784 x 50 counted: 16 x the
    171 images the budget is said to allow). Each passed the path checks before."""
    j = judge(exercise, "model", _with_path(expected, model), expected)
    assert j.fraction == 0 and j.details["data_path_ok"] is False
    assert "computed in the graph" in both(j)
    measured, labels = _perfect(_with_path(expected, model, frozen=True))
    a = judge(exercise, "accuracy", measured, dict(expected, accuracy=expected["model"]),
              labels=labels)
    assert a.fraction == 0 and a.details["structure_ok"] is False


@pytest.mark.parametrize(("kind", "sources", "passes"), [
    ("constant", 784, True),  # a per-feature scale the budget counts
    ("variable", 800, True),
    ("other", 3, True),  # dropout's keep probability and its mask's constants
    ("other", 65, False), ("other", None, False), ("placeholder", 800, False)])
def test_a_scaling_is_counted_or_made_of_a_few_values(exercise, expected, kind, sources,
                                                     passes):
    facts = copy.deepcopy(expected["model"])
    ops = facts["data_path"]["ops"]
    at = next(n for n, op in enumerate(ops) if op["type"] == "Reshape") + 1
    ops.insert(at, {"type": "Mul", "data_inputs": 1, "input_count": 2, "inputs": [
        {"data": True},
        {"data": False, "kind": kind, "shape": [800], "sources": sources}]})
    j = judge(exercise, "model", facts, expected)
    assert (j.fraction == 1.0) is passes, both(j)
    assert ("computed in the graph" in both(j)) is not passes


def test_a_table_written_in_the_networks_own_kinds_is_left_to_the_budget(exercise, expected):
    """Residual (docs/security.md): images as a dense layer's weights, one chain of the
    network's kinds, pass the path checks; only the parameter budget bounds how many."""
    j = judge(exercise, "model", _with_path(expected, "table_via_variable"), expected)
    assert j.fraction == 1.0 and j.details["data_path_ok"] is True


def test_public_accuracy_counts_the_test_sets_only(exercise, expected):
    """The provisional figure leaves the held-out set (and its moved copy) out: a model that
    memorised the test images is provisionally perfect; the credit follows the same line from
    floor to threshold; a wrong network earns nothing; details without figures give None."""
    from grader import public_accuracy

    labels = {"test": np.arange(1000) % 10, "holdout": np.arange(500) % 10}
    held_out = labels["holdout"].copy()
    held_out[:100] = (held_out[:100] + 3) % 10  # 80 % on images it never saw
    measured = {"predictions": {"test": labels["test"].tolist(), "holdout": held_out.tolist()},
                "graph": expected["model"]}
    j = judge(exercise, "accuracy", measured, expected, labels=labels)
    assert j.fraction == 0 and public_accuracy(j.details) == (1.0, 1.0)
    rule = exercise.accuracy
    halfway = (rule.threshold + rule.floor) / 2
    details = {**j.details, "accuracies": {"test": halfway, "holdout": 0.1,
                                           "test-moved": 1.0, "holdout-moved": 0.0}}
    figure, fraction = public_accuracy(details)
    assert figure == pytest.approx(halfway) and fraction == pytest.approx(0.5)
    moved = {**details, "accuracies": {"test": 1.0, "test-moved": 0.1, "holdout": 1.0}}
    figure, fraction = public_accuracy(moved)
    assert figure == pytest.approx(1 - 0.9 / rule.moved_error_ratio) and fraction == 0
    assert public_accuracy({**details, "structure_ok": False})[1] == 0.0
    assert public_accuracy({}) is None
    assert public_accuracy({**details, "accuracies": {"holdout": 1.0}}) is None
