"""Tests for metrics.kernel_distance."""

import numpy as np
import pytest

import metrics


def reference_unbiased_mmd_squared(real, generated):
    """Unbiased MMD^2 with k(x, y) = (x . y / d + 1)^3, summed pair by pair in float64."""
    num_real, num_features = real.shape
    num_generated = generated.shape[0]

    def kernel(x, y):
        return (np.dot(x, y) / num_features + 1.0) ** 3

    real_sum = sum(kernel(real[i], real[j]) for i in range(num_real) for j in range(num_real) if i != j)
    generated_sum = sum(
        kernel(generated[i], generated[j]) for i in range(num_generated) for j in range(num_generated) if i != j
    )
    cross_sum = sum(kernel(real[i], generated[j]) for i in range(num_real) for j in range(num_generated))
    return (
        real_sum / (num_real * (num_real - 1))
        + generated_sum / (num_generated * (num_generated - 1))
        - 2.0 * cross_sum / (num_real * num_generated)
    )


def make_activation_pair(seed, num_samples, num_features=8, shift=0.0):
    generator = np.random.default_rng(seed)
    real = generator.normal(size=(num_samples, num_features))
    generated = shift + generator.normal(size=(num_samples, num_features))
    return real, generated


@pytest.mark.parametrize("seed", range(3))
def test_single_subset_matches_reference(seed):
    real, generated = make_activation_pair(seed, num_samples=40, shift=0.3)

    mean, std = metrics.kernel_distance(real, generated, num_subsets=1, max_subset_size=40)

    assert mean == pytest.approx(reference_unbiased_mmd_squared(real, generated), rel=1e-9)
    assert std == 0.0


def test_single_subset_ignores_large_max_subset_size():
    real, generated = make_activation_pair(3, num_samples=30, shift=0.3)

    mean, _ = metrics.kernel_distance(real, generated, num_subsets=1, max_subset_size=1000)

    assert mean == pytest.approx(reference_unbiased_mmd_squared(real, generated), rel=1e-9)


def test_subsets_use_size_of_smaller_set():
    real, _ = make_activation_pair(4, num_samples=60)
    _, generated = make_activation_pair(5, num_samples=25, shift=0.3)

    mean, _ = metrics.kernel_distance(real, generated, num_subsets=3, max_subset_size=1000, seed=7)

    # Replay the documented sampling: one Generator, real then generated subset per pair.
    generator = np.random.default_rng(7)
    expected = []
    for _ in range(3):
        real_subset = real[generator.choice(60, 25, replace=False)]
        generated_subset = generated[generator.choice(25, 25, replace=False)]
        expected.append(reference_unbiased_mmd_squared(real_subset, generated_subset))
    assert mean == pytest.approx(np.mean(expected), rel=1e-9)


def test_same_distribution_near_zero():
    real, generated = make_activation_pair(6, num_samples=2000, num_features=16)

    mean, std = metrics.kernel_distance(real, generated, num_subsets=50, max_subset_size=500)

    assert abs(mean) < 0.01
    assert abs(mean) < 3.0 * std


def test_shifted_distribution_clearly_positive():
    real, generated = make_activation_pair(7, num_samples=2000, num_features=16, shift=0.5)
    same_mean, _ = metrics.kernel_distance(
        *make_activation_pair(8, num_samples=2000, num_features=16), num_subsets=50, max_subset_size=500
    )

    mean, std = metrics.kernel_distance(real, generated, num_subsets=50, max_subset_size=500)

    assert mean > 0.1
    assert mean > 10.0 * std
    assert mean > 10.0 * abs(same_mean)


def test_seed_makes_result_reproducible():
    real, generated = make_activation_pair(9, num_samples=300, shift=0.2)

    first = metrics.kernel_distance(real, generated, num_subsets=5, max_subset_size=100, seed=3)
    second = metrics.kernel_distance(real, generated, num_subsets=5, max_subset_size=100, seed=3)
    other_seed = metrics.kernel_distance(real, generated, num_subsets=5, max_subset_size=100, seed=4)

    assert first == second
    assert first != other_seed


def test_std_is_population_std_over_subsets():
    real, generated = make_activation_pair(10, num_samples=50, shift=0.3)

    mean, std = metrics.kernel_distance(real, generated, num_subsets=4, max_subset_size=20, seed=1)

    generator = np.random.default_rng(1)
    estimates = []
    for _ in range(4):
        real_subset = real[generator.choice(50, 20, replace=False)]
        generated_subset = generated[generator.choice(50, 20, replace=False)]
        estimates.append(reference_unbiased_mmd_squared(real_subset, generated_subset))
    assert mean == pytest.approx(np.mean(estimates), rel=1e-9)
    assert std == pytest.approx(np.std(estimates), rel=1e-6)


def test_kernel_distance_accepts_tensors():
    tf = pytest.importorskip("tensorflow")
    real, generated = make_activation_pair(11, num_samples=30, shift=0.3)

    from_tensors = metrics.kernel_distance(tf.constant(real), tf.constant(generated), num_subsets=2)

    assert from_tensors == metrics.kernel_distance(real, generated, num_subsets=2)


@pytest.mark.parametrize(
    "keyword, value, message",
    [
        ("num_subsets", 0, "num_subsets must be >= 1, but is 0"),
        ("max_subset_size", 1, "max_subset_size must be >= 2, but is 1"),
        ("max_subset_size", 10.5, "max_subset_size must be an integer"),
    ],
)
def test_kernel_distance_rejects_invalid_options(keyword, value, message):
    real, generated = make_activation_pair(12, num_samples=10)

    with pytest.raises(ValueError, match=message):
        metrics.kernel_distance(real, generated, **{keyword: value})
