"""grader.similarity.compare_models on synthetic fingerprints: all pairs at once give what
grader.fingerprints.error_agreement gives pair by pair; copies flag, independent models and
untrained ones do not."""

from __future__ import annotations

import numpy as np

from grader.fingerprints import ModelFingerprint, common_models, error_agreement, flag_reason
from grader.similarity import AGREEMENT_FLAG, compare_models

N_TEST, N_HOLDOUT = 1000, 500


def labels(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"test": rng.integers(0, 10, N_TEST, dtype=np.uint8),
            "holdout": rng.integers(0, 10, N_HOLDOUT, dtype=np.uint8)}


def trained(rng: np.random.Generator, truth: dict[str, np.ndarray], error: float,
            weights: str | None = None) -> ModelFingerprint:
    """A model erring on ``error`` of the images, each chosen independently, wrong class at random."""
    predictions = {}
    for name, t in truth.items():
        p = t.copy()
        wrong = rng.random(len(t)) < error
        p[wrong] = (t[wrong] + rng.integers(1, 10, int(wrong.sum()))) % 10
        predictions[name] = p.astype(np.uint8).tobytes()
    return ModelFingerprint(weights or rng.bytes(32).hex(), predictions)


def test_equal_to_error_agreement_on_random_data():
    rng = np.random.default_rng(7)
    truth = labels(rng)
    prints = {f"s{i}": trained(rng, truth, rng.uniform(0.01, 0.6)) for i in range(12)}
    # one model measured on the test set only, one with a set of the wrong length
    only_test = trained(rng, truth, 0.1)
    prints["partial"] = ModelFingerprint(only_test.weights, {"test": only_test.predictions["test"]})
    short = trained(rng, truth, 0.1)
    prints["short"] = ModelFingerprint(short.weights, {"test": short.predictions["test"][:-1],
                                                       "holdout": short.predictions["holdout"]})
    # two that never err, so agreement is None
    perfect = {k: v.tobytes() for k, v in truth.items()}
    prints["p1"], prints["p2"] = ModelFingerprint("a", perfect), ModelFingerprint("b", perfect)
    pairs = compare_models(prints, truth)
    assert len(pairs) == len(prints) * (len(prints) - 1) // 2
    for p in pairs:
        expected = error_agreement(prints[p.a], prints[p.b], truth)
        assert (p.same, p.union) == (expected.same, expected.union), p
        assert p.agreement == expected.agreement
    assert next(p for p in pairs if {p.a, p.b} == {"p1", "p2"}).agreement is None


def test_copied_model_and_identical_weights_flag_independent_do_not():
    rng = np.random.default_rng(1)
    truth = labels(rng)
    # 5% wrong: 75 errors of 1,500 images, over MIN_UNION (a copy's union is its own errors)
    prints = {f"s{i}": trained(rng, truth, 0.05) for i in range(30)}
    prints["copy"] = ModelFingerprint(rng.bytes(32).hex(), prints["s3"].predictions)
    prints["same_weights"] = ModelFingerprint(prints["s5"].weights,
                                              trained(rng, truth, 0.05).predictions)
    pairs = compare_models(prints, truth)
    flagged = {frozenset((p.a, p.b)) for p in pairs if p.flagged}
    assert flagged == {frozenset(("s3", "copy")), frozenset(("s5", "same_weights"))}
    top = pairs[0]
    assert {top.a, top.b} == {"s3", "copy"} and top.agreement == 1.0
    assert next(p for p in pairs if {p.a, p.b} == {"s5", "same_weights"}).identical_weights
    independent = [p.agreement for p in pairs if not p.flagged and p.agreement is not None]
    assert max(independent) < AGREEMENT_FLAG


def test_untrained_constant_models_are_not_flagged():
    rng = np.random.default_rng(2)
    truth = labels(rng)
    constant = {k: np.full(len(v), 3, dtype=np.uint8).tobytes() for k, v in truth.items()}
    prints = {"u1": ModelFingerprint("w1", constant), "u2": ModelFingerprint("w1", constant),
              "t": trained(rng, truth, 0.02)}
    pairs = compare_models(prints, truth)
    pair = next(p for p in pairs if {p.a, p.b} == {"u1", "u2"})
    assert pair.agreement == 1.0 and pair.identical_weights and not pair.flagged
    # the same two flag once the accuracy floor is lowered below theirs (about 10%)
    lowered = compare_models(prints, truth, min_accuracy=0.05)
    assert next(p for p in lowered if {p.a, p.b} == {"u1", "u2"}).flagged


def test_flagged_exactly_as_flag_reason_says_with_the_template_model_common():
    """All pairs at once flag what :func:`grader.fingerprints.flag_reason` flags pair by pair,
    with the class's common model (five students at the template's seeds: one digest) exempt,
    and a model alike it (an honest rewrite) exempt too; copies among the others still flag."""
    rng = np.random.default_rng(11)
    truth = labels(rng)
    template = trained(rng, truth, 0.05)
    prints = {f"t{i}": ModelFingerprint(template.weights, template.predictions) for i in range(5)}
    near = np.frombuffer(template.predictions["test"], dtype=np.uint8).copy()
    moved = rng.choice(len(near), 4, replace=False)
    near[moved] = (near[moved] + 1) % 10  # four predictions of the template's model changed
    prints["rewrite"] = ModelFingerprint(rng.bytes(32).hex(),
                                         {**template.predictions, "test": near.tobytes()})
    prints["rewrite_copy"] = ModelFingerprint(rng.bytes(32).hex(), prints["rewrite"].predictions)
    prints.update({f"s{i}": trained(rng, truth, rng.uniform(0.04, 0.08)) for i in range(10)})
    prints["copy"] = ModelFingerprint(rng.bytes(32).hex(), prints["s1"].predictions)
    prints["weak"] = trained(rng, truth, 0.5)
    prints["weak_copy"] = ModelFingerprint(rng.bytes(32).hex(), prints["weak"].predictions)
    common = common_models(prints.values())
    assert [model.weights for model in common] == [template.weights]
    pairs = compare_models(prints, truth)
    for p in pairs:
        assert p.flagged == (flag_reason(prints[p.a], prints[p.b], truth, common) is not None), p
    flagged = {frozenset((p.a, p.b)) for p in pairs if p.flagged}
    assert flagged == {frozenset(("s1", "copy"))}
    copied = next(p for p in pairs if {p.a, p.b} == {"rewrite", "rewrite_copy"})
    assert copied.agreement == 1.0 and not copied.flagged  # alike the common model: exempt
    # without the common model, the template's students flag one another (identical weights)
    bare = compare_models(prints, truth, common=())
    assert next(p for p in bare if {p.a, p.b} == {"t0", "t1"}).flagged
