"""Tests for metrics.precision_recall."""

import numpy as np
import pytest

import metrics

# One-dimensional points whose expected results are worked out by hand below. The real mean
# is exactly 5, so centering keeps every coordinate exact in float64.
REAL_POINTS = np.array([[0.0], [1.0], [2.0], [3.0], [19.0]])
GENERATED_POINTS = np.array([[0.5], [10.0], [-2.0], [2.5]])


def test_hand_made_sets_with_k1():
    # Real radii (nearest other real point): 1, 1, 1, 1, 16.
    # Generated 0.5, 10 (9 from 19) and 2.5 are inside, -2 is 2 from 0: precision 3/4.
    # Generated radii: -2 -> 2.5, 0.5 -> 2, 2.5 -> 2, 10 -> 7.5.
    # Real 0, 1, 2, 3 are inside, 19 is 9 from 10: recall 4/5.
    result = metrics.precision_recall(REAL_POINTS, GENERATED_POINTS, k=1)

    assert result["precision"] == pytest.approx(0.75)
    assert result["recall"] == pytest.approx(0.8)


def test_hand_made_sets_with_k2():
    # Real radii (2nd nearest): 2, 1, 1, 2, 17. Generated -2 is exactly 2 from real 0,
    # on the ball's boundary, which counts as inside: precision 1.
    # Generated radii: -2 -> 4.5, 0.5 -> 2.5, 2.5 -> 4.5, 10 -> 9.5. Real 19 is 9 from
    # generated 10: recall 1.
    result = metrics.precision_recall(REAL_POINTS, GENERATED_POINTS, k=2)

    assert result["precision"] == pytest.approx(1.0)
    assert result["recall"] == pytest.approx(1.0)


def test_hand_made_two_dimensional_sets():
    # Real: corners of the unit square, each with radius 1 for k=1.
    real = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # Inside: the center and (0.2, 1.9), 0.92 from (0, 1).
    # Outside: (3, 3) and (2.1, 0), 1.1 from (1, 0).
    generated = np.array([[0.5, 0.5], [3.0, 3.0], [0.2, 1.9], [2.1, 0.0]])

    result = metrics.precision_recall(real, generated, k=1)

    assert result["precision"] == pytest.approx(0.5)
    # Every corner is within 0.71 of the center, whose generated radius is 1.43.
    assert result["recall"] == pytest.approx(1.0)


def test_identical_sets_give_one():
    features = np.random.default_rng(0).normal(size=(300, 8))

    result = metrics.precision_recall(features, features.copy(), k=3)

    assert result == {"precision": 1.0, "recall": 1.0}


def test_disjoint_sets_give_zero():
    generator = np.random.default_rng(1)
    real = generator.normal(size=(100, 4))
    generated = 100.0 + generator.normal(size=(100, 4))

    result = metrics.precision_recall(real, generated, k=3)

    assert result == {"precision": 0.0, "recall": 0.0}


def test_collapsed_generator_has_low_recall():
    generator = np.random.default_rng(2)
    real = generator.normal(size=(500, 2))
    # Every generated point lies near the real mode at the origin.
    generated = 0.05 * generator.normal(size=(500, 2))

    result = metrics.precision_recall(real, generated, k=3)

    assert result["precision"] > 0.95
    assert result["recall"] < 0.2


@pytest.mark.parametrize("batch_size", [1, 7, 64, 10_000])
def test_batch_size_does_not_change_result(batch_size):
    generator = np.random.default_rng(3)
    real = generator.normal(size=(230, 5))
    generated = 0.3 + 1.2 * generator.normal(size=(170, 5))
    expected = metrics.precision_recall(real, generated, k=4, batch_size=100_000)

    result = metrics.precision_recall(real, generated, k=4, batch_size=batch_size)

    assert result == expected
    assert 0.0 < result["precision"] < 1.0
    assert 0.0 < result["recall"] < 1.0


def test_large_common_offset_does_not_change_result():
    generator = np.random.default_rng(4)
    real = generator.normal(size=(200, 6))
    generated = 0.3 + generator.normal(size=(200, 6))

    result = metrics.precision_recall(real, generated, k=3)
    shifted = metrics.precision_recall(real + 1e6, generated + 1e6, k=3)

    assert shifted == result


def test_precision_recall_accepts_tensors():
    tf = pytest.importorskip("tensorflow")

    result = metrics.precision_recall(tf.constant(REAL_POINTS), tf.constant(GENERATED_POINTS), k=1)

    assert result == {"precision": 0.75, "recall": 0.8}


@pytest.mark.parametrize(
    "keyword, value, message",
    [
        ("k", 0, "k must be >= 1, but is 0"),
        ("k", 4, "k must be less than the size of each set .* k is 4 and the smaller set has 4 samples"),
        ("batch_size", 0, "batch_size must be >= 1, but is 0"),
    ],
)
def test_precision_recall_rejects_invalid_options(keyword, value, message):
    with pytest.raises(ValueError, match=message):
        metrics.precision_recall(REAL_POINTS, GENERATED_POINTS, **{keyword: value})
