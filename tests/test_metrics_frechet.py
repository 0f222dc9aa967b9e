"""Tests for metrics.frechet_distance and metrics.frechet_distance_from_statistics."""

import hypothesis
import hypothesis.extra.numpy as hypothesis_numpy
import numpy as np
import pytest
import scipy.linalg
from hypothesis import strategies

import metrics


def reference_frechet_distance(real, generated):
    """Frechet distance in float64 with scipy.linalg.sqrtm, as in the FID reference code."""
    real = np.asarray(real, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    mean_real = real.mean(axis=0)
    mean_generated = generated.mean(axis=0)
    cov_real = np.cov(real, rowvar=False)
    cov_generated = np.cov(generated, rowvar=False)
    sqrt_product = np.real(scipy.linalg.sqrtm(cov_real @ cov_generated))
    return float(
        np.sum((mean_real - mean_generated) ** 2)
        + np.trace(cov_real)
        + np.trace(cov_generated)
        - 2.0 * np.trace(sqrt_product)
    )


def make_activation_pair(seed, num_samples=400, num_features=10, shift=0.5, offset=0.0):
    """Return two well-conditioned [num_samples, num_features] sets that differ in mean and covariance."""
    generator = np.random.default_rng(seed)
    real = offset + generator.normal(size=(num_samples, num_features))
    mixing = np.eye(num_features) + 0.3 * generator.normal(size=(num_features, num_features))
    generated = offset + shift + generator.normal(size=(num_samples, num_features)) @ mixing
    return real, generated


@pytest.mark.parametrize("seed", range(5))
def test_frechet_matches_sqrtm_reference(seed):
    real, generated = make_activation_pair(seed)

    actual = metrics.frechet_distance(real, generated)

    assert actual == pytest.approx(reference_frechet_distance(real, generated), rel=1e-6)


def test_frechet_of_different_sizes_matches_reference():
    real, _ = make_activation_pair(10, num_samples=500)
    _, generated = make_activation_pair(11, num_samples=120)

    actual = metrics.frechet_distance(real, generated)

    assert actual == pytest.approx(reference_frechet_distance(real, generated), rel=1e-6)


def test_frechet_of_identical_sets_is_zero():
    real, _ = make_activation_pair(20)

    assert metrics.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(real, real.copy()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("seed", range(50))
def test_frechet_never_negative_for_close_sets(seed):
    generator = np.random.default_rng(seed)
    real = generator.normal(size=(20, 8))
    generated = real + 1e-9 * generator.normal(size=real.shape)

    assert metrics.frechet_distance(real, generated) >= 0.0


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    real=hypothesis_numpy.arrays(
        np.float64,
        hypothesis_numpy.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=12),
        elements=strategies.floats(-100.0, 100.0),
    ),
    scale=strategies.floats(0.0, 1e-3),
)
def test_frechet_never_negative_property(real, scale):
    generated = real * (1.0 + scale)

    distance = metrics.frechet_distance(real, generated)

    assert np.isfinite(distance)
    assert distance >= 0.0


@pytest.mark.parametrize("num_samples, num_features", [(5, 20), (2, 3), (30, 64)])
def test_frechet_finite_for_singular_covariance(num_samples, num_features):
    # With fewer samples than features, both covariances have rank < num_features.
    real, generated = make_activation_pair(30, num_samples=num_samples, num_features=num_features)

    distance = metrics.frechet_distance(real, generated)

    assert np.isfinite(distance)
    assert distance >= 0.0
    assert metrics.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_frechet_of_constant_features_is_mean_distance():
    real = np.zeros((10, 3))
    generated = np.full((10, 3), 2.0)

    assert metrics.frechet_distance(real, generated) == pytest.approx(12.0, rel=1e-12)


def test_frechet_large_offset_float32():
    # Features share an offset of 1e4 and have unit variance, stored in float32. Naive
    # float32 accumulation (sum x x^T / n - mean mean^T) gave variances between -139
    # and 8 for such data instead of about 1 (numpy 2.4, x86-64), and so a meaningless
    # distance. The reference uses the same float32 values converted to float64.
    real, generated = make_activation_pair(40, num_samples=1000, num_features=4, shift=0.3, offset=1e4)
    real = real.astype(np.float32)
    generated = generated.astype(np.float32)

    identical = metrics.frechet_distance(real, real)
    different = metrics.frechet_distance(real, generated)

    assert identical == pytest.approx(0.0, abs=1e-6)
    assert different == pytest.approx(reference_frechet_distance(real, generated), rel=1e-6)


def test_frechet_same_for_any_batch_size():
    real, generated = make_activation_pair(50, num_samples=700)
    results = []

    for batch_size in (7, 100, 700):
        real_statistics = metrics.ActivationStatistics()
        generated_statistics = metrics.ActivationStatistics()
        for start in range(0, 700, batch_size):
            real_statistics.update(real[start : start + batch_size])
            generated_statistics.update(generated[start : start + batch_size])
        results.append(
            metrics.frechet_distance_from_statistics(
                real_statistics.mean,
                real_statistics.covariance,
                generated_statistics.mean,
                generated_statistics.covariance,
            )
        )

    assert results[0] == pytest.approx(results[2], abs=1e-9)
    assert results[1] == pytest.approx(results[2], abs=1e-9)
    assert metrics.frechet_distance(real, generated) == pytest.approx(results[2], abs=1e-9)


def test_frechet_from_statistics_matches_reference():
    real, generated = make_activation_pair(60)

    actual = metrics.frechet_distance_from_statistics(
        real.mean(axis=0), np.cov(real, rowvar=False), generated.mean(axis=0), np.cov(generated, rowvar=False)
    )

    assert actual == pytest.approx(reference_frechet_distance(real, generated), rel=1e-6)


def test_frechet_accepts_tensors():
    tf = pytest.importorskip("tensorflow")
    real, generated = make_activation_pair(70)

    actual = metrics.frechet_distance(tf.constant(real, tf.float32), tf.constant(generated, tf.float32))

    expected = reference_frechet_distance(real.astype(np.float32), generated.astype(np.float32))
    assert actual == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "mean1, cov1, mean2, cov2, message",
    [
        (np.zeros((2, 2)), np.eye(2), np.zeros(2), np.eye(2), r"mean1 must be a non-empty vector .* \(2, 2\)"),
        (np.zeros(2), np.eye(3), np.zeros(2), np.eye(2), r"cov1 must have shape \[d, d\] = \(2, 2\)"),
        (np.zeros(2), np.eye(2), np.zeros(3), np.eye(2), r"mean1 and mean2 must have the same shape"),
        (np.zeros(2), np.eye(2), np.zeros(2), np.full((2, 2), np.nan), "cov2 must contain only finite values"),
        (np.array([0.0, np.inf]), np.eye(2), np.zeros(2), np.eye(2), "mean1 must contain only finite values"),
    ],
)
def test_frechet_from_statistics_rejects_invalid_input(mean1, cov1, mean2, cov2, message):
    with pytest.raises(ValueError, match=message):
        metrics.frechet_distance_from_statistics(mean1, cov1, mean2, cov2)
