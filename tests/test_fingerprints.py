"""A trained model's fingerprint (issue 20): what the host keeps of the clean room's
measurement (the weights' digest, one byte a prediction on each plain image set), how forged
or malformed clean-room output is dropped without a crash, where it lands in the report, and
the statistic two fingerprints are compared by. The clean room's digest itself is tested in
tests/test_cleanroom.py (``test_the_weights_digest_...``); a real graded run's fingerprint in
tests/test_grading.py (the slow run of the course notebook)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grader.clean_room import ImageSets, Measured, measure_exports, plan_jobs
from grader.comparators import Prepared
from grader.fingerprints import (
    AGREEMENT_FLAG,
    COMMON_MODEL,
    MIN_ACCURACY,
    MIN_UNION,
    ModelFingerprint,
    common_models,
    error_agreement,
    fingerprint_accuracy,
    fingerprint_of,
    flag_reason,
)
from grader.measurements import PredictionsMeasurement, parse_measurement
from grader.outcome import RunOutcome
from grader.pipeline import Execution, score_execution
from grader.reference import reference_exports
from grader.report import Outcome
from grader.sandbox.base import SandboxRequest, SandboxResult
from grader.scoring import Evidence, model_fingerprint
from grader.spec import Text

DIGEST = "0123456789abcdef" * 4
RNG = np.random.default_rng(20)
LABELS = {"test": RNG.integers(0, 10, 40), "holdout": RNG.integers(0, 10, 30)}
#: What the comparator's labels hold: the plain sets and their moved copies.
ALL_LABELS = {**LABELS, **{f"{name}-moved": truth for name, truth in LABELS.items()}}


def measurement(weights: Any = DIGEST, **predictions: Any) -> PredictionsMeasurement:
    found = {name: truth.tolist() for name, truth in ALL_LABELS.items()}
    found.update(predictions)
    return PredictionsMeasurement.model_validate(
        {"predictions": found, "parameters": 10, "weights": weights})


# --- from a measurement to a fingerprint -------------------------------------------------------


def test_a_measurement_gives_the_digest_and_a_byte_per_plain_image():
    fp = fingerprint_of(measurement(), ALL_LABELS)
    assert fp is not None and fp.weights == DIGEST
    assert set(fp.predictions) == {"test", "holdout"}  # moved copies are drawn anew per run
    assert {name: len(raw) for name, raw in fp.predictions.items()} == {"test": 40,
                                                                        "holdout": 30}
    assert np.array_equal(fp.labels("test"), LABELS["test"])


@pytest.mark.parametrize("weights", [
    "AB" * 32, "ab" * 31, "ab" * 33, "xy" * 32, "ab" * 31 + "a\n", 12, None, ["ab" * 32]])
def test_a_forged_digest_is_dropped_and_the_accuracy_stands(weights):
    parsed = parse_measurement("predictions", {
        "ok": True, "parameters": 1, "weights": weights,
        "predictions": {name: truth.tolist() for name, truth in ALL_LABELS.items()}})
    assert isinstance(parsed, PredictionsMeasurement) and parsed.weights is None
    assert parsed.predictions["test"] == LABELS["test"].tolist()
    assert fingerprint_of(parsed, ALL_LABELS) is None


@pytest.mark.parametrize("predictions", [
    {"test": LABELS["test"].tolist()[:-1]},                   # one short
    {"holdout": [*LABELS["holdout"].tolist(), 3]},            # one too many
    {"test": [10, *LABELS["test"].tolist()[1:]]},             # no such class
    {"test": [-1, *LABELS["test"].tolist()[1:]]},
    {"test": [2 ** 70, *LABELS["test"].tolist()[1:]]},
    {"holdout": []},
])
def test_malformed_predictions_give_no_fingerprint(predictions):
    assert fingerprint_of(measurement(**predictions), ALL_LABELS) is None


def test_a_missing_set_or_raw_junk_gives_no_fingerprint():
    found = {name: truth.tolist() for name, truth in ALL_LABELS.items() if name != "holdout"}
    parsed = PredictionsMeasurement.model_validate({"predictions": found, "parameters": 1,
                                                    "weights": DIGEST})
    assert fingerprint_of(parsed, ALL_LABELS) is None
    for junk in (None, {"weights": DIGEST}, "predictions", 3):
        assert fingerprint_of(junk, ALL_LABELS) is None

    class Raw:  # unvalidated values, as a caller that skipped the schema might pass them
        def __init__(self, predictions: dict[str, list[Any]]) -> None:
            self.weights, self.predictions = DIGEST, predictions

    assert fingerprint_of(Raw({"test": [1.0] * 40, "holdout": [1] * 30}), LABELS) is None
    assert fingerprint_of(Raw({"test": [1] * 40, "holdout": [True] * 30}), LABELS) is None
    assert fingerprint_of(Raw({"test": [1] * 40, "holdout": [1] * 30}), LABELS) is not None


# --- through the host's reading of a (subverted) clean room ------------------------------------


class ForgingSandbox:
    """A clean room writing what ``forge(set name, images) -> predictions`` says for the trained
    model, with ``weights`` beside it, and a failure for any other job."""

    name = "fake"

    def __init__(self, forge, weights: Any = DIGEST) -> None:
        self.forge, self.weights = forge, weights

    def run(self, request: SandboxRequest, on_line=None) -> SandboxResult:
        plan = json.loads((request.workdir / "plan.json").read_text())
        out = request.workdir / "out"
        out.mkdir(exist_ok=True)
        for job in plan["jobs"]:
            result: dict[str, Any] = {"id": job["id"], "ok": False, "error": {"code": "x"}}
            if job["measure"] == "predictions":
                images = {name: np.load(request.workdir / path)
                          for name, path in plan["images"].items()}
                result = {"id": job["id"], "ok": True, "parameters": 1, "weights": self.weights,
                          "predictions": {name: self.forge(name, batch)
                                          for name, batch in images.items()}}
            (out / f"{job['index']}.json").write_text(json.dumps(result))
        return SandboxResult(exit_code=0, signal=None, wall_seconds=1.0, timed_out=False,
                             oom_killed=False, stdout=b"", stderr=b"")


#: Images that carry their label in their first pixel, so a fake model can answer them.
IMAGES = {name: np.concatenate([truth.astype(np.uint8)[:, None],
                                RNG.integers(0, 256, (len(truth), 783), dtype=np.uint8)],
                               axis=1).reshape(-1, 28, 28) for name, truth in LABELS.items()}


def honest(name: str, images: np.ndarray) -> list[int]:
    return [int(p) for p in images.reshape(len(images), -1)[:, 0]]


def measured_by(box: ForgingSandbox, exercise, tmp_path: Path) -> Measured:
    references = reference_exports(exercise)
    jobs = plan_jobs(exercise, {"accuracy": references["accuracy"]}, references)
    return measure_exports(jobs, box, tmp_path, images=ImageSets(IMAGES), seed=7)


def evidence(measured: Measured) -> Evidence:
    return Evidence(located={}, runner=None, sources={}, exports={}, measured=measured,
                    prepared={"accuracy": Prepared(labels=ALL_LABELS)})


def test_the_host_builds_the_fingerprint_in_each_sets_own_order(exercise, tmp_path):
    """The clean room saw each set in a secret order; the fingerprint holds the predictions
    put back in the set's order, so two runs of one model give the same bytes."""
    first = model_fingerprint(exercise, evidence(measured_by(ForgingSandbox(honest), exercise,
                                                             tmp_path / "a")))
    assert first is not None and first.weights == DIGEST
    assert np.array_equal(first.labels("test"), LABELS["test"])
    assert np.array_equal(first.labels("holdout"), LABELS["holdout"])


@pytest.mark.parametrize(("forge", "weights"), [
    (honest, "f" * 63),
    (honest, "<script>" + "0" * 56),
    (lambda name, images: [10] * len(images), DIGEST),
    (lambda name, images: [-1] * len(images), DIGEST),
    (lambda name, images: honest(name, images)[:-1], DIGEST),
    (lambda name, images: honest(name, images) * 2, DIGEST),
    (lambda name, images: [0.5] * len(images), DIGEST),
    (lambda name, images: ["7"] * len(images), DIGEST),
    (lambda name, images: {"0": 1}, DIGEST),
    (lambda name, images: None, DIGEST),
])
def test_forged_clean_room_output_gives_no_fingerprint_and_no_crash(exercise, tmp_path, forge,
                                                                    weights):
    measured = measured_by(ForgingSandbox(forge, weights), exercise, tmp_path)
    assert model_fingerprint(exercise, evidence(measured)) is None


def test_a_refused_model_has_no_fingerprint(exercise):
    from grader.measurements import MeasurementFailure

    refused = Measured(results={"accuracy/student": MeasurementFailure(code="op_not_allowed")})
    assert model_fingerprint(exercise, evidence(refused)) is None
    assert model_fingerprint(exercise, evidence(Measured())) is None


# --- in the report -------------------------------------------------------------------------


def execution(status: Outcome, measured: Measured) -> Execution:
    reason = None if status is Outcome.GRADED else Text(ja="止まった", en="stopped")
    return Execution(outcome=RunOutcome(status, reason), located={}, measured=measured)


def test_a_graded_run_reports_its_fingerprint_compactly(exercise, config):
    """The report carries the fingerprint; its JSON (what the CLI prints, what the service
    stores) only the digest and the image counts, never the 15,000 predictions."""
    from grader.data.evaluation import evaluation_labels

    labels = evaluation_labels(config.data_dir)
    found = {name: truth.tolist() for name, truth in labels.items()}
    measured = Measured(results={"accuracy/student": PredictionsMeasurement.model_validate(
        {"predictions": found, "parameters": 1, "weights": DIGEST})})
    report = score_execution(execution(Outcome.GRADED, measured), exercise, config, 0.0)
    assert report.fingerprint is not None and report.fingerprint.weights == DIGEST
    counts = {name: len(truth) for name, truth in labels.items() if not name.endswith("-moved")}
    assert counts == {"test": 10_000, "holdout": len(labels["holdout"])}
    assert sum(len(raw) for raw in report.fingerprint.predictions.values()) == sum(
        counts.values())
    as_json = report.to_dict()
    assert as_json["fingerprint"] == {"weights": DIGEST, "images": counts}
    assert len(json.dumps(as_json["fingerprint"])) < 200
    timed_out = score_execution(execution(Outcome.TIMEOUT, measured), exercise, config, 0.0)
    assert timed_out.fingerprint is None and timed_out.to_dict()["fingerprint"] is None


# --- comparing two fingerprints ----------------------------------------------------------------


def fingerprint(weights: str = DIGEST, **predictions: np.ndarray) -> ModelFingerprint:
    return ModelFingerprint(weights, {name: np.asarray(p, dtype=np.uint8).tobytes()
                                      for name, p in predictions.items()})


def test_error_agreement_counts_the_same_wrong_class_over_either_models_errors():
    truth = {"test": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])}
    a = fingerprint(test=[0, 1, 2, 3, 4, 5, 6, 7, 0, 0])   # wrong on 8, 9
    b = fingerprint(test=[0, 1, 2, 3, 4, 5, 6, 1, 0, 1])   # wrong on 7, 8, 9
    found = error_agreement(a, b, truth)
    assert (found.same, found.union) == (1, 3)  # the same wrong class only on image 8
    assert found.agreement == pytest.approx(1 / 3)
    assert error_agreement(a, a, truth).agreement == 1.0
    right = fingerprint(test=truth["test"])
    assert error_agreement(right, right, truth).agreement is None


def test_flags_need_a_capable_model_and_agreement_beyond_independent_trainings():
    """The rule of docs/model-fingerprints.md: identical weights, or agreement over
    :data:`AGREEMENT_FLAG` on at least :data:`MIN_UNION` errors; never for a model below
    :data:`MIN_ACCURACY` (two models answering one class agree on everything)."""
    n = 2000
    truth = {"test": np.arange(n) % 10}
    errors = int(n * (1 - MIN_ACCURACY) / 3)  # well above the accuracy floor
    assert errors >= MIN_UNION

    def model(wrong: range, shift: int, weights: str = DIGEST) -> ModelFingerprint:
        p = truth["test"].copy()
        p[list(wrong)] = (p[list(wrong)] + shift) % 10
        return fingerprint(weights, test=p)

    a = model(range(errors), 1, "a" * 64)
    copied = model(range(errors), 1, "b" * 64)
    assert flag_reason(a, copied, truth) == "agreement"
    independent = model(range(errors // 2, errors + errors // 2), 2, "c" * 64)
    assert error_agreement(a, independent, truth).agreement < AGREEMENT_FLAG
    assert flag_reason(a, independent, truth) is None
    same_weights = model(range(errors // 2, errors + errors // 2), 2, "a" * 64)
    assert flag_reason(a, same_weights, truth) == "identical_weights"
    constant = fingerprint("d" * 64, test=np.zeros(n))
    assert fingerprint_accuracy(constant, truth) < MIN_ACCURACY
    assert flag_reason(constant, fingerprint("d" * 64, test=np.zeros(n)), truth) is None
    few = model(range(MIN_UNION - 1), 1, "e" * 64)
    assert flag_reason(few, model(range(MIN_UNION - 1), 1, "f" * 64), truth) is None


def test_a_model_many_share_is_the_templates_and_never_flagged():
    """The template fixes its seeds and training is deterministic on one machine: every
    student who writes the expected code gets the same weights, and one who writes it a little
    differently a model that errs almost alike. A digest shared by more than
    :data:`COMMON_MODEL` runs is that common model; neither it nor a model alike it is flagged,
    but two runs sharing a rarer model are."""
    truth = {"test": np.arange(1000) % 10}
    p = truth["test"].copy()
    p[:MIN_UNION] = (p[:MIN_UNION] + 1) % 10
    template = [fingerprint("a" * 64, test=p) for _ in range(COMMON_MODEL + 1)]
    rewritten = fingerprint("c" * 64, test=p)  # other weights, the same errors
    q = truth["test"].copy()
    q[500:500 + MIN_UNION] = (q[500:500 + MIN_UNION] + 3) % 10
    pair = [fingerprint("b" * 64, test=q) for _ in range(2)]
    common = common_models([*template, *pair, rewritten])
    assert [fp.weights for fp in common] == ["a" * 64]
    ring = [fingerprint("e" * 64, test=q) for _ in range(COMMON_MODEL + 1)]
    assert [fp.weights for fp in common_models([*template, *template, *ring])] == ["a" * 64]
    assert common_models(template[:COMMON_MODEL]) == []
    assert flag_reason(template[0], template[1], truth, common) is None
    assert flag_reason(template[0], rewritten, truth, common) is None
    assert flag_reason(rewritten, fingerprint("d" * 64, test=p), truth, common) is None
    assert flag_reason(template[0], pair[0], truth, common) is None
    assert flag_reason(pair[0], pair[1], truth, common) == "identical_weights"
    assert flag_reason(template[0], template[1], truth) == "identical_weights"
    assert flag_reason(template[0], rewritten, truth) == "agreement"
