"""Tests for metrics.inception_score."""

import numpy as np
import pytest

import metrics

# A logit gap of 50 gives the other classes probabilities below 1e-21.
CONFIDENT_LOGIT = 50.0


def confident_logits(labels, num_classes):
    """Return logits that put almost all probability on the given labels."""
    logits = np.zeros((len(labels), num_classes))
    logits[np.arange(len(labels)), labels] = CONFIDENT_LOGIT
    return logits


def reference_split_score(logits):
    """exp(mean KL(p(y|x) || p(y))) with plain probabilities, skipping zero terms."""
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    marginal = probabilities.mean(axis=0)
    kl_divergences = []
    for row in probabilities:
        nonzero = row > 0
        kl_divergences.append(np.sum(row[nonzero] * np.log(row[nonzero] / marginal[nonzero])))
    return np.exp(np.mean(kl_divergences))


def test_uniform_predictions_score_one():
    mean, std = metrics.inception_score(np.zeros((100, 10)), num_splits=4)

    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_same_prediction_for_all_samples_scores_one():
    logits = np.tile(np.random.default_rng(0).normal(size=10), (50, 1))

    mean, _ = metrics.inception_score(logits, num_splits=1)

    assert mean == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_confident_balanced_predictions_score_num_classes(num_classes):
    labels = np.arange(20 * num_classes) % num_classes

    mean, std = metrics.inception_score(confident_logits(labels, num_classes), num_splits=20)

    assert mean == pytest.approx(num_classes, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_class_never_predicted_gives_finite_score():
    # Class 2 has a probability of exp(-1000) = 0 in float64 for every sample, so a
    # KL divergence computed as p * log(p / p(y)) would contain 0 * log(0 / 0).
    logits = confident_logits(np.arange(40) % 2, num_classes=3)
    logits[:, 2] = -1000.0

    mean, std = metrics.inception_score(logits, num_splits=2)

    assert np.isfinite(mean)
    assert np.isfinite(std)
    assert mean == pytest.approx(2.0, rel=1e-9)


def test_extreme_logits_give_finite_score():
    logits = np.array([[1e300, -1e300], [-1e300, 1e300], [0.0, 0.0]])

    mean, _ = metrics.inception_score(logits, num_splits=1)

    assert np.isfinite(mean)


def test_splits_are_contiguous_in_given_order():
    # Split i contains rows [i * N // num_splits, (i + 1) * N // num_splits), so with
    # N=5 and 2 splits, split 0 contains rows [0, 2) and split 1 rows [2, 5).
    labels = np.array([0, 1, 0, 1, 2])
    logits = confident_logits(labels, num_classes=3)
    # Split 0 predicts {0, 1} evenly: score 2.
    # Split 1 predicts 0, 1, 2 once each: score 3.

    mean, std = metrics.inception_score(logits, num_splits=2)

    assert mean == pytest.approx(2.5, rel=1e-9)
    assert std == pytest.approx(0.5, rel=1e-9)


def test_reordering_samples_changes_splits():
    labels = np.array([2, 1, 0, 1, 0])
    logits = confident_logits(labels, num_classes=3)
    # Split 0 predicts {2, 1}: score 2. Split 1 predicts 0, 1, 0: the KL divergences
    # are log(3/2), log(3), log(3/2), so the score is exp(mean) = (3/2 * 3 * 3/2) ** (1/3).
    expected_second = (1.5 * 3.0 * 1.5) ** (1.0 / 3.0)

    mean, std = metrics.inception_score(logits, num_splits=2)

    assert mean == pytest.approx((2.0 + expected_second) / 2.0, rel=1e-9)
    assert std == pytest.approx(abs(2.0 - expected_second) / 2.0, rel=1e-9)


@pytest.mark.parametrize("num_splits", [1, 3, 10, 37])
def test_inception_score_matches_reference(num_splits):
    logits = 4.0 * np.random.default_rng(num_splits).normal(size=(370, 10))
    boundaries = [split * 370 // num_splits for split in range(num_splits + 1)]
    reference_scores = [
        reference_split_score(logits[start:end]) for start, end in zip(boundaries[:-1], boundaries[1:])
    ]

    mean, std = metrics.inception_score(logits, num_splits=num_splits)

    assert mean == pytest.approx(np.mean(reference_scores), rel=1e-9)
    assert std == pytest.approx(np.std(reference_scores), rel=1e-6, abs=1e-12)


def test_inception_score_float32_input():
    logits = np.random.default_rng(1).normal(size=(100, 10))

    from_float32 = metrics.inception_score(logits.astype(np.float32), num_splits=5)

    assert from_float32[0] == pytest.approx(
        metrics.inception_score(logits.astype(np.float32).astype(np.float64), num_splits=5)[0], rel=1e-15
    )


def test_inception_score_accepts_tensors():
    tf = pytest.importorskip("tensorflow")
    logits = np.random.default_rng(2).normal(size=(100, 10))

    from_tensor = metrics.inception_score(tf.constant(logits), num_splits=5)

    assert from_tensor == metrics.inception_score(logits, num_splits=5)


@pytest.mark.parametrize(
    "num_splits, message",
    [
        (0, "num_splits must be >= 1, but is 0"),
        (-1, "num_splits must be >= 1"),
        (11, r"num_splits must be in \[1, N\] = \[1, 10\] so that no split is empty, but is 11"),
        (2.0, "num_splits must be an integer"),
        (True, "num_splits must be an integer"),
    ],
)
def test_inception_score_rejects_invalid_num_splits(num_splits, message):
    with pytest.raises(ValueError, match=message):
        metrics.inception_score(np.zeros((10, 3)), num_splits=num_splits)


def test_inception_score_rejects_single_class():
    with pytest.raises(ValueError, match="at least 2 classes"):
        metrics.inception_score(np.zeros((10, 1)), num_splits=1)
