"""The moved copies of the evaluation images (``grader/data/perturb.py``): made from the run's
seed, the same for the same seed, different for another, every image moved, labels kept."""

from __future__ import annotations

import numpy as np
import pytest

from grader.comparators.accuracy import counted_accuracy
from grader.data.perturb import (
    MOVED_SUFFIX,
    Perturbation,
    moved_copies,
    moved_name,
    perturb_images,
    source_name,
)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Digit-like images: a block of ink away from the edges, in a different place per image."""
    rng = np.random.default_rng(0)
    images = np.zeros((300, 28, 28), dtype=np.uint8)
    for image in images:
        top, left = rng.integers(4, 12, size=2)
        image[top:top + 12, left:left + 8] = rng.integers(100, 256, size=(12, 8))
    images.setflags(write=False)
    return images


def test_the_same_seed_gives_the_same_copies_and_another_seed_others(digits):
    first = perturb_images(digits, 1234)
    assert np.array_equal(first, perturb_images(digits, 1234))
    other = perturb_images(digits, 1235)
    assert np.mean(np.any(first != other, axis=(1, 2))) == 1.0


def test_every_image_is_moved_and_no_pixel_survives_an_exact_lookup(digits):
    moved = perturb_images(digits, 7)
    assert moved.dtype == np.uint8 and moved.shape == digits.shape
    assert not np.any(np.all(moved == digits, axis=(1, 2)))
    # an exact-pixel key (the image's bytes) of each moved copy matches no original image
    originals = {image.tobytes() for image in digits}
    assert not any(image.tobytes() in originals for image in moved)
    # nor does any shift of the original by up to the perturbation's range
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            shifted = np.roll(digits, (dy, dx), axis=(1, 2))
            assert not np.any(np.all(moved == shifted, axis=(1, 2)))


def test_the_digit_stays_where_a_cnn_reads_it(digits):
    """Without noise a copy is its original shifted by one pixel (never by nothing), zeros
    filling the edge it left; with noise every pixel is within ``noise`` of that."""
    still = perturb_images(digits, 3, Perturbation(max_shift=1, noise=0))
    noisy = perturb_images(digits, 3, Perturbation(max_shift=1, noise=16))
    shifts = set()
    for original, copy, with_noise in zip(digits, still, noisy, strict=True):
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if np.array_equal(np.roll(original, (dy, dx), axis=(0, 1)), copy)]
        assert len(matches) == 1 and matches[0] != (0, 0)
        shifts.add(matches[0])
        assert np.abs(with_noise.astype(int) - copy.astype(int)).max() <= 16
    assert len(shifts) == 8  # every direction is used
    assert np.abs(noisy.astype(int) - still.astype(int)).mean() > 4


def test_zero_fill_at_the_edge():
    edge = np.full((1, 28, 28), 200, dtype=np.uint8)
    moved = perturb_images(edge, 5, Perturbation(max_shift=1, noise=0))
    assert (moved == 0).sum() in (28, 28 + 27)  # one row or column, or one of each


def test_the_input_is_not_changed_and_bad_input_is_refused(digits):
    before = digits.copy()
    perturb_images(digits, 1)
    assert np.array_equal(digits, before)
    with pytest.raises(ValueError):
        perturb_images(digits.astype(np.float32), 1)
    with pytest.raises(ValueError):
        Perturbation(max_shift=0)


def test_each_set_gets_its_own_copy_under_its_moved_name(digits):
    sets = {"test": digits, "holdout": digits[:100]}
    copies = moved_copies(sets, 99)
    assert list(copies) == ["test" + MOVED_SUFFIX, "holdout" + MOVED_SUFFIX]
    assert [source_name(name) for name in copies] == ["test", "holdout"]
    assert source_name("test") == "test" and moved_name("test") == "test-moved"
    # the two sets are moved independently: the same image is not moved the same way in both
    assert not np.array_equal(copies["test-moved"][:100], copies["holdout-moved"])
    assert np.array_equal(copies["test-moved"], moved_copies(sets, 99)["test-moved"])


def test_the_counted_figure_follows_the_moved_copies_only_beyond_the_error_ratio():
    honest = {"test": 0.979, "holdout": 0.977, "test-moved": 0.955, "holdout-moved": 0.948}
    assert counted_accuracy(honest, 2.75) == pytest.approx(0.977)
    one_epoch = {"test": 0.934, "holdout": 0.925, "test-moved": 0.870, "holdout-moved": 0.860}
    assert counted_accuracy(one_epoch, 2.75) == pytest.approx(0.925)
    table = {"test": 1.0, "holdout": 1.0, "test-moved": 0.11, "holdout-moved": 0.10}
    assert counted_accuracy(table, 2.75) == pytest.approx(1 - 0.9 / 2.75)
    assert counted_accuracy(table, 1.0) == pytest.approx(0.10)
    assert counted_accuracy({"test": 0.9, "holdout": 0.95}, 2.75) == pytest.approx(0.9)


def test_the_calibration_suggests_the_error_ratio_of_the_recorded_runs():
    """The ten runs of docs/accuracy-threshold.md (2026-12-05) give the exercise's ratio."""
    from grader.reference_build import Calibration

    rows = [(0.9785, 0.9762, 0.9533, 0.9468), (0.9800, 0.9776, 0.9577, 0.9532),
            (0.9823, 0.9790, 0.9590, 0.9580), (0.9813, 0.9794, 0.9584, 0.9590),
            (0.9808, 0.9782, 0.9584, 0.9536), (0.9808, 0.9790, 0.9557, 0.9542),
            (0.9808, 0.9806, 0.9581, 0.9530), (0.9812, 0.9776, 0.9566, 0.9500),
            (0.9777, 0.9782, 0.9492, 0.9450), (0.9803, 0.9756, 0.9588, 0.9520)]
    sets = [dict(zip(("test", "holdout", "test-moved", "holdout-moved"), row, strict=True))
            for row in rows]
    calibration = Calibration([min(r[:2]) for r in rows], [100.0] * 10, sets)
    assert min(calibration.error_ratios) == pytest.approx(1.967, abs=1e-3)
    assert max(calibration.error_ratios) == pytest.approx(2.466, abs=1e-3)
    assert calibration.suggested_error_ratio() == 2.75
    assert calibration.suggested_threshold() == pytest.approx(0.970)
    assert all(counted_accuracy(s, 2.75) == min(s["test"], s["holdout"]) for s in sets)


CHAP07_RUNS = [(0.9821, 0.9794, 0.9607, 0.9562), (0.9847, 0.9826, 0.9679, 0.9638),
               (0.9842, 0.9812, 0.9687, 0.9658), (0.9834, 0.9806, 0.9675, 0.9636),
               (0.9834, 0.9824, 0.9633, 0.9600), (0.9815, 0.9768, 0.9624, 0.9602),
               (0.9793, 0.9796, 0.9593, 0.9618), (0.9821, 0.9812, 0.9656, 0.9654),
               (0.9855, 0.9826, 0.9693, 0.9690), (0.9830, 0.9814, 0.9672, 0.9650)]


def _chap07_scored():
    """chap07_keras_cnn's ten runs (2026-12-05, its [accuracy] comments), as scored before the
    exercise had a ratio: the default 1 counts the lower moved set."""
    from grader.reference_build import Calibration

    sets = [dict(zip(("test", "holdout", "test-moved", "holdout-moved"), row, strict=True))
            for row in CHAP07_RUNS]
    return Calibration([counted_accuracy(s, 1.0) for s in sets], [100.0] * 10, sets)


def test_a_calibration_scored_under_the_default_ratio_is_recounted_under_the_suggested_one():
    """Counted again under the suggested ratio, 2.75, chap07's runs give the threshold chap06's
    rules ask for, 0.970, not the 0.950 of the figures as scored."""
    from grader.reference_build import Calibration

    rows = CHAP07_RUNS
    scored = _chap07_scored()
    assert scored.accuracies == [min(r[2:]) for r in rows]
    assert scored.suggested_threshold() == pytest.approx(0.950)
    ratio = scored.suggested_error_ratio()
    assert ratio == 2.75
    recounted = scored.recounted(ratio)
    assert recounted.accuracies == [min(r[:2]) for r in rows]
    assert recounted.summary["min"] == pytest.approx(0.9768)
    assert recounted.suggested_threshold() == pytest.approx(0.970)
    assert recounted.error_ratios == scored.error_ratios and recounted.scores == scored.scores
    # a run without its image sets keeps its figure
    assert Calibration([0.5], [0.0], [{}]).recounted(2.75).accuracies == [0.5]


def test_grader_calibrate_prints_the_threshold_of_the_recounted_figures(monkeypatch, capsys):
    """``grader calibrate`` (its runs replaced by the ten above) prints both suggestions."""
    import json

    import grader.cli
    import grader.reference_build

    scored = _chap07_scored()
    monkeypatch.setattr(grader.reference_build, "calibrate_accuracy",
                        lambda *args, **kwargs: scored)
    monkeypatch.setattr(grader.cli, "_sandbox", lambda config: None)
    assert grader.cli.main(["calibrate", "chap06_cnn", "--runs", "10"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["full_marks"] == 10 and printed["suggested_moved_error_ratio"] == 2.75
    assert printed["suggested_threshold"] == pytest.approx(0.950)
    recounted = printed["at_suggested_moved_error_ratio"]
    assert recounted["suggested_threshold"] == pytest.approx(0.970)
    assert recounted["min"] == pytest.approx(0.9768) and len(recounted["accuracies"]) == 10
