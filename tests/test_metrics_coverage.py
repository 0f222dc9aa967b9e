"""Tests for metrics.class_coverage."""

import numpy as np
import pytest

import metrics


def test_collapsed_predictor_covers_one_class():
    labels = np.full(1000, 3)

    coverage = metrics.class_coverage(labels)

    assert coverage["num_classes_present"] == 1
    assert coverage["kl_from_uniform"] == pytest.approx(np.log(10), rel=1e-12)
    assert coverage["most_frequent_class"] == 3
    assert coverage["most_frequent_fraction"] == 1.0
    assert coverage["least_frequent_class"] == 0
    assert coverage["least_frequent_fraction"] == 0.0
    np.testing.assert_array_equal(coverage["counts"], [0, 0, 0, 1000, 0, 0, 0, 0, 0, 0])


def test_uniform_predictor_covers_all_classes():
    labels = np.arange(1000) % 10

    coverage = metrics.class_coverage(labels)

    assert coverage["num_samples"] == 1000
    assert coverage["num_classes_present"] == 10
    assert coverage["kl_from_uniform"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_array_equal(coverage["counts"], np.full(10, 100))
    np.testing.assert_allclose(coverage["fractions"], np.full(10, 0.1))
    assert coverage["most_frequent_class"] == 0
    assert coverage["least_frequent_class"] == 0


def test_logits_use_argmax():
    labels = np.array([0, 1, 1, 2, 2, 2])
    logits = np.random.default_rng(0).normal(size=(6, 3))
    logits[np.arange(6), labels] = 10.0

    from_logits = metrics.class_coverage(logits, num_classes=3)
    from_labels = metrics.class_coverage(labels, num_classes=3)

    np.testing.assert_array_equal(from_logits["counts"], [1, 2, 3])
    np.testing.assert_array_equal(from_logits["counts"], from_labels["counts"])
    assert from_logits["most_frequent_class"] == 2
    assert from_logits["least_frequent_class"] == 0


def test_kl_from_uniform_hand_computed():
    # Fractions (3/4, 1/4) over 2 classes: 3/4 log(3/2) + 1/4 log(1/2).
    labels = np.array([0, 0, 0, 1])

    coverage = metrics.class_coverage(labels, num_classes=2)

    expected = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)
    assert coverage["kl_from_uniform"] == pytest.approx(expected, rel=1e-12)


def test_rare_class_below_min_fraction_not_present():
    # Class 9 gets 5 of 1000 predictions, 0.5%, below the default 1% for 10 classes.
    labels = np.concatenate([np.arange(995) % 9, np.full(5, 9)])

    default = metrics.class_coverage(labels)
    any_count = metrics.class_coverage(labels, min_fraction=0.0)
    strict = metrics.class_coverage(labels, min_fraction=0.2)

    assert default["min_fraction"] == pytest.approx(0.01)
    assert default["num_classes_present"] == 9
    assert any_count["num_classes_present"] == 10
    assert strict["num_classes_present"] == 0
    assert default["least_frequent_class"] == 9
    assert default["least_frequent_fraction"] == pytest.approx(0.005)


def test_min_fraction_boundary_counts_as_present():
    labels = np.array([0] * 99 + [1])

    coverage = metrics.class_coverage(labels, num_classes=2, min_fraction=0.01)

    assert coverage["num_classes_present"] == 2


def test_class_coverage_accepts_tensors():
    tf = pytest.importorskip("tensorflow")
    logits = np.random.default_rng(1).normal(size=(50, 10))

    from_logits = metrics.class_coverage(tf.constant(logits))
    from_argmax = metrics.class_coverage(tf.argmax(tf.constant(logits), axis=1))

    np.testing.assert_array_equal(from_logits["counts"], from_argmax["counts"])
    np.testing.assert_array_equal(from_logits["counts"], np.bincount(logits.argmax(axis=1), minlength=10))


@pytest.mark.parametrize(
    "values, keywords, message",
    [
        (np.array([0, 1, 10]), {}, r"class labels must be in \[0, num_classes\) = \[0, 10\), but range from 0 to 10"),
        (np.array([-1, 1]), {}, "but range from -1 to 1"),
        (np.array([0.0, 1.0]), {}, "must contain integer class labels, but has dtype float64"),
        (np.zeros((4, 3)), {}, r"must have shape \[N, num_classes\] = \[N, 10\], but has shape \(4, 3\)"),
        (np.zeros((4, 3, 2)), {}, "must be logits of shape .* or class labels of shape"),
        (np.array([1]), {}, "at least 2 samples"),
        (np.zeros((1, 10)), {}, "at least 2 samples"),
        (np.array([[0.0] * 9 + [np.nan]] * 2), {}, "1 NaN|2 NaN"),
        (np.array([0, 1]), {"num_classes": 1}, "num_classes must be >= 2, but is 1"),
        (np.array([0, 1]), {"min_fraction": 1.5}, r"min_fraction must be in \[0, 1\], but is 1.5"),
        (np.array([0, 1]), {"min_fraction": float("nan")}, r"min_fraction must be in \[0, 1\]"),
    ],
)
def test_class_coverage_rejects_invalid_input(values, keywords, message):
    with pytest.raises(ValueError, match=message):
        metrics.class_coverage(values, **keywords)
