"""Tests for metrics.ActivationStatistics."""

import numpy as np
import pytest

import metrics


def make_features(seed, num_samples=250, num_features=6, offset=0.0):
    generator = np.random.default_rng(seed)
    mixing = generator.normal(size=(num_features, num_features))
    return offset + generator.normal(size=(num_samples, num_features)) @ mixing


def accumulate_in_batches(features, batch_size):
    statistics = metrics.ActivationStatistics()
    for start in range(0, features.shape[0], batch_size):
        statistics.update(features[start : start + batch_size])
    return statistics


def test_statistics_match_numpy():
    features = make_features(0)

    statistics = metrics.ActivationStatistics().update(features)

    assert statistics.count == 250
    assert statistics.num_features == 6
    np.testing.assert_allclose(statistics.mean, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(statistics.covariance, np.cov(features, rowvar=False), rtol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 7, 100, 250])
def test_statistics_independent_of_batch_size(batch_size):
    features = make_features(1)
    expected = metrics.ActivationStatistics().update(features)

    statistics = accumulate_in_batches(features, batch_size)

    assert statistics.count == expected.count
    np.testing.assert_allclose(statistics.mean, expected.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(statistics.covariance, expected.covariance, rtol=1e-12, atol=1e-12)


def test_merge_equals_single_accumulator():
    features = make_features(2)
    first = metrics.ActivationStatistics().update(features[:30])
    second = accumulate_in_batches(features[30:], 17)
    expected = metrics.ActivationStatistics().update(features)

    merged = first.merge(second)

    assert merged is first
    assert merged.count == 250
    np.testing.assert_allclose(merged.mean, expected.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.covariance, expected.covariance, rtol=1e-12, atol=1e-12)


def test_merge_leaves_other_unchanged():
    features = make_features(3)
    first = metrics.ActivationStatistics().update(features[:100])
    second = metrics.ActivationStatistics().update(features[100:])
    second_mean = second.mean
    second_covariance = second.covariance

    first.merge(second)

    assert second.count == 150
    np.testing.assert_array_equal(second.mean, second_mean)
    np.testing.assert_array_equal(second.covariance, second_covariance)


def test_merge_with_empty_statistics():
    features = make_features(4)
    filled = metrics.ActivationStatistics().update(features)

    empty_into_filled = metrics.ActivationStatistics().update(features).merge(metrics.ActivationStatistics())
    filled_into_empty = metrics.ActivationStatistics().merge(filled)

    for statistics in (empty_into_filled, filled_into_empty):
        assert statistics.count == 250
        np.testing.assert_array_equal(statistics.mean, filled.mean)
        np.testing.assert_array_equal(statistics.covariance, filled.covariance)


def test_large_offset_float32_accuracy():
    # All features share an offset of 1e4 and have a variance near 1. In float32,
    # (sum x x^T - n mean mean^T) / (n - 1) loses every digit of the variance: with
    # this data it gave the variances 8.2, -73.8, -16.4 and -139.4 (numpy 2.4, x86-64).
    generator = np.random.default_rng(5)
    features = (1e4 + generator.normal(size=(1000, 4))).astype(np.float32)
    reference = features.astype(np.float64)

    statistics = accumulate_in_batches(features, 64)

    np.testing.assert_allclose(statistics.mean, reference.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(statistics.covariance, np.cov(reference, rowvar=False), rtol=1e-9, atol=1e-9)


def test_single_sample_has_mean_but_no_covariance():
    statistics = metrics.ActivationStatistics().update(np.array([[1.0, 2.0]]))

    np.testing.assert_array_equal(statistics.mean, [1.0, 2.0])
    with pytest.raises(ValueError, match="covariance needs at least 2 samples, but 1 were accumulated"):
        statistics.covariance


def test_empty_statistics_have_no_mean():
    statistics = metrics.ActivationStatistics()

    assert statistics.count == 0
    assert statistics.num_features is None
    with pytest.raises(ValueError, match="mean needs at least 1 sample"):
        statistics.mean


def test_empty_batch_changes_nothing():
    features = make_features(6)
    statistics = metrics.ActivationStatistics().update(features)

    statistics.update(np.zeros((0, 6)))

    assert statistics.count == 250


def test_update_rejects_feature_size_change():
    statistics = metrics.ActivationStatistics().update(np.zeros((3, 4)))

    with pytest.raises(ValueError, match="batch has 5 features, but the statistics were accumulated with 4"):
        statistics.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="batch has 5 features"):
        statistics.update(np.zeros((0, 5)))


def test_merge_rejects_feature_size_change():
    statistics = metrics.ActivationStatistics().update(np.zeros((3, 4)))
    other = metrics.ActivationStatistics().update(np.zeros((3, 2)))

    with pytest.raises(ValueError, match="other has 2 features"):
        statistics.merge(other)


def test_merge_rejects_other_types():
    with pytest.raises(ValueError, match="merge needs an ActivationStatistics, but got ndarray"):
        metrics.ActivationStatistics().merge(np.zeros((3, 4)))


@pytest.mark.parametrize(
    "batch, message",
    [
        (np.zeros(4), r"must have rank 2 .* has shape \(4,\)"),
        (np.zeros((2, 3, 4)), "must have rank 2"),
        (np.array([[1.0, np.nan]]), "1 NaN and 0 Inf"),
        (np.array([[np.inf, 1.0]]), "0 NaN and 1 Inf"),
        (np.array([["a", "b"]]), "integer or floating-point dtype"),
    ],
)
def test_update_rejects_invalid_batch(batch, message):
    with pytest.raises(ValueError, match=message):
        metrics.ActivationStatistics().update(batch)
