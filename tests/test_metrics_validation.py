"""Tests for metrics.check_images and the input checks shared by all metrics."""

import numpy as np
import pytest

import metrics


def make_images(num_images=4, seed=0):
    """Return float32 images in [-1, 1] with a background of -1."""
    images = np.full((num_images, 28, 28, 1), -1.0, dtype=np.float32)
    images[:, 10:18, 10:18, :] = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(num_images, 8, 8, 1))
    return images


def test_uint8_conversion_is_exact():
    pixel_values = np.arange(256, dtype=np.uint8)
    images = np.zeros((256, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = pixel_values

    converted = metrics.check_images(images)

    expected = (pixel_values.astype(np.float64) / 127.5 - 1.0).astype(np.float32)
    assert converted.dtype == np.float32
    assert converted.shape == (256, 28, 28, 1)
    np.testing.assert_array_equal(converted[:, 0, 0, 0], expected)
    assert converted[0, 0, 0, 0] == -1.0
    assert converted[255, 0, 0, 0] == 1.0
    assert np.all(converted[:, 1:, :, :] == -1.0)


def test_float_images_pass_unchanged():
    images = make_images()

    checked = metrics.check_images(images)

    assert checked.dtype == np.float32
    np.testing.assert_array_equal(checked, images)


def test_float64_images_cast_to_float32():
    images = make_images().astype(np.float64)

    checked = metrics.check_images(images)

    assert checked.dtype == np.float32
    np.testing.assert_array_equal(checked, images.astype(np.float32))


def test_images_without_channel_get_one():
    images = make_images()[..., 0]

    checked = metrics.check_images(images)

    assert checked.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(checked[..., 0], images)


def test_range_endpoints_accepted():
    images = make_images()
    images[0, 0, 0, 0] = 1.0

    checked = metrics.check_images(images)

    assert checked.min() == -1.0
    assert checked.max() == 1.0


def test_images_in_0_255_rejected():
    images = np.zeros((2, 28, 28, 1), dtype=np.float32)
    images[0, 5, 5, 0] = 255.0

    with pytest.raises(ValueError, match=r"must be in the range \[-1, 1\], but have min 0.0 and max 255.0"):
        metrics.check_images(images)


def test_images_below_minus_one_rejected():
    images = make_images()
    images[1, 0, 0, 0] = -1.5

    with pytest.raises(ValueError, match=r"but have min -1.5 and max"):
        metrics.check_images(images)


def test_images_in_0_1_rejected():
    images = (make_images() + 1.0) / 2.0

    with pytest.raises(ValueError, match=r"look like they are in the range \[0, 1\], but the expected range is \[-1, 1\]"):
        metrics.check_images(images)


def test_all_zero_images_rejected_as_0_1():
    with pytest.raises(ValueError, match=r"no negative pixel \(min 0.0, max 0.0\)"):
        metrics.check_images(np.zeros((2, 28, 28), dtype=np.float32))


@pytest.mark.parametrize("bad_value, message", [(np.nan, "1 NaN and 0 Inf"), (np.inf, "0 NaN and 1 Inf")])
def test_non_finite_images_rejected(bad_value, message):
    images = make_images()
    images[2, 3, 4, 0] = bad_value

    with pytest.raises(ValueError, match=message):
        metrics.check_images(images)


@pytest.mark.parametrize(
    "shape",
    [(28, 28), (4, 28, 28, 3), (4, 32, 32, 1), (4, 1, 28, 28), (4, 784), (0, 28, 28), (2, 2, 28, 28, 1)],
)
def test_wrong_image_shapes_rejected(shape):
    images = np.full(shape, -1.0, dtype=np.float32)

    with pytest.raises(ValueError, match=r"images must .*28, 28"):
        metrics.check_images(images)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16, np.bool_])
def test_other_integer_dtypes_rejected(dtype):
    images = np.zeros((2, 28, 28), dtype=dtype)

    with pytest.raises(ValueError, match=r"must be uint8 in \[0, 255\] or floating point in \[-1, 1\], but have dtype"):
        metrics.check_images(images)


def test_check_images_accepts_tensors():
    tf = pytest.importorskip("tensorflow")
    images = make_images()

    checked = metrics.check_images(tf.constant(images))

    np.testing.assert_array_equal(checked, images)


def call_with_two_sets(function):
    """Return a caller that passes two feature sets, or a single one for one-set metrics."""
    if function is metrics.inception_score:
        return lambda first, second: function(first, num_splits=1)
    if function is metrics.precision_recall:
        return lambda first, second: function(first, second, k=1)
    return function


TWO_SET_METRICS = [metrics.frechet_distance, metrics.kernel_distance, metrics.precision_recall]
ALL_FEATURE_METRICS = TWO_SET_METRICS + [metrics.inception_score]


@pytest.mark.parametrize("function", ALL_FEATURE_METRICS, ids=lambda function: function.__name__)
@pytest.mark.parametrize(
    "first, message",
    [
        (np.zeros(10), r"must have rank 2 with shape \[num_samples, num_features\], but has shape \(10,\)"),
        (np.zeros((5, 4, 2)), r"must have rank 2 .* \(rank 3\)"),
        (np.zeros((1, 4)), r"must have at least 2 samples \(rows\), but has shape \(1, 4\)"),
        (np.zeros((0, 4)), "must have at least 2 samples"),
        (np.zeros((5, 0)), r"must have at least 1 feature \(column\)"),
        (np.array([[0.0, np.nan]] * 5), "must contain only finite values, but contains 5 NaN and 0 Inf entries"),
        (np.array([[0.0, -np.inf]] * 5), "but contains 0 NaN and 5 Inf entries"),
        (np.full((5, 4), 1 + 1j), "integer or floating-point dtype, but has dtype complex128"),
    ],
)
def test_metrics_reject_invalid_features(function, first, message):
    second = np.zeros((5, 4))

    with pytest.raises(ValueError, match=message):
        call_with_two_sets(function)(first, second)


@pytest.mark.parametrize("function", TWO_SET_METRICS, ids=lambda function: function.__name__)
def test_metrics_reject_invalid_second_set(function):
    first = np.random.default_rng(0).normal(size=(5, 4))

    with pytest.raises(ValueError, match="generated_.* must contain only finite values"):
        call_with_two_sets(function)(first, np.full((5, 4), np.nan))
    with pytest.raises(ValueError, match=r"generated_.* must have at least 2 samples"):
        call_with_two_sets(function)(first, np.zeros((1, 4)))


@pytest.mark.parametrize("function", TWO_SET_METRICS, ids=lambda function: function.__name__)
def test_metrics_reject_mismatched_feature_sizes(function):
    generator = np.random.default_rng(0)

    with pytest.raises(ValueError, match=r"must have the same number of features, but have shapes \(5, 4\) and \(5, 3\)"):
        call_with_two_sets(function)(generator.normal(size=(5, 4)), generator.normal(size=(5, 3)))


@pytest.mark.parametrize("function", ALL_FEATURE_METRICS, ids=lambda function: function.__name__)
def test_metrics_accept_integer_features(function):
    features = np.arange(20).reshape(5, 4) % 3

    result = call_with_two_sets(function)(features, features[::-1].copy())

    assert result is not None
