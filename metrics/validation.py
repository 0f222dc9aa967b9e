"""Input checks shared by the metric functions, and `check_images` for the evaluator.

Every metric accepts numpy arrays or TensorFlow tensors. Tensors are converted with
`np.asarray`, so this module never imports TensorFlow. `check_mnist_split` imports
tensorflow_datasets, which does not import TensorFlow either.
"""

import re

import numpy as np

IMAGE_SHAPE = (28, 28, 1)
# The splits of TFDS's mnist 3.0.1. TFDS also accepts "all", both splits together.
MNIST_SPLITS = ("train", "test")


def _as_array(values, name, expected_shape):
    """Convert `values` with `np.asarray`, naming the argument if numpy cannot.

    A ragged nested list (rows of different lengths) makes numpy raise a
    ValueError that names neither the argument nor the shape it should have.

    Args:
      values: array-like or tf.Tensor.
      name: name of the argument, used in error messages.
      expected_shape: the shape the caller expects, such as "[N, d]", for the message.
    """
    try:
        return np.asarray(values)
    except ValueError as error:
        raise ValueError(
            f"{name} must be an array of shape {expected_shape}, but numpy could not convert it: {error}"
        ) from None


def as_float64_matrix(values, name, min_rows=2):
    """Convert a batch of feature vectors to a float64 numpy matrix after checking it.

    Args:
      values: array-like or tf.Tensor of shape [N, d] with a real numeric dtype.
      name: name of the argument, used in error messages.
      min_rows: minimum number of rows (samples) N.

    Returns:
      np.ndarray float64 of shape [N, d].

    Raises:
      ValueError: if `values` is not 2-D, is not real numeric, has fewer than
        `min_rows` rows, has no columns, or contains NaN or Inf.
    """
    array = _as_array(values, name, "[num_samples, num_features]")
    check_real_numeric(array, name)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must have rank 2 with shape [num_samples, num_features], "
            f"but has shape {array.shape} (rank {array.ndim})."
        )
    num_rows, num_columns = array.shape
    if num_rows < min_rows:
        raise ValueError(
            f"{name} must have at least {min_rows} samples (rows), but has shape {array.shape}."
        )
    if num_columns < 1:
        raise ValueError(f"{name} must have at least 1 feature (column), but has shape {array.shape}.")
    array = array.astype(np.float64)
    check_finite(array, name)
    return array


def as_float64_vector(values, name):
    """Convert a 1-D array or tensor to float64 numpy after checking it.

    Args:
      values: array-like or tf.Tensor of shape [d] with a real numeric dtype.
      name: name of the argument, used in error messages.

    Returns:
      np.ndarray float64 of shape [d].

    Raises:
      ValueError: if `values` is not 1-D, is empty, is not real numeric, or contains
        NaN or Inf.
    """
    array = _as_array(values, name, "[d]")
    check_real_numeric(array, name)
    if array.ndim != 1 or array.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty vector of shape [d], but has shape {array.shape}.")
    array = array.astype(np.float64)
    check_finite(array, name)
    return array


def check_real_numeric(array, name):
    """Raise ValueError unless `array` has an integer or floating-point dtype.

    Booleans, complex numbers, strings and Python objects are rejected.
    """
    is_integer = np.issubdtype(array.dtype, np.integer)
    is_floating = np.issubdtype(array.dtype, np.floating)
    if not (is_integer or is_floating):
        raise ValueError(f"{name} must have an integer or floating-point dtype, but has dtype {array.dtype}.")


def check_finite(array, name):
    """Raise ValueError naming the number of NaN and Inf entries in `array`, if any."""
    if np.all(np.isfinite(array)):
        return
    num_nan = int(np.count_nonzero(np.isnan(array)))
    num_inf = int(np.count_nonzero(np.isinf(array)))
    raise ValueError(
        f"{name} must contain only finite values, but contains {num_nan} NaN and {num_inf} Inf entries."
    )


def check_same_num_features(first, first_name, second, second_name):
    """Raise ValueError unless two [N, d] matrices have the same number of columns d."""
    if first.shape[1] != second.shape[1]:
        raise ValueError(
            f"{first_name} and {second_name} must have the same number of features, but have shapes "
            f"{first.shape} and {second.shape}."
        )


def check_positive_int(value, name, minimum=1):
    """Raise ValueError unless `value` is an integer (not a bool) of at least `minimum`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, but is {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, but is {value}.")


def check_images(images):
    """Check a batch of MNIST-sized images and convert it to float32 in [-1, 1].

    The generator and the evaluation classifier work on pixels in [-1, 1], where the
    MNIST background is -1. uint8 images in [0, 255] are converted as x / 127.5 - 1,
    so 0 maps to -1.0 and 255 to 1.0 exactly. Floating-point images are returned
    unchanged apart from the cast to float32. Other integer dtypes are rejected
    because their value range is ambiguous.

    Args:
      images: array-like or tf.Tensor of shape [N, 28, 28] or [N, 28, 28, 1], either
        uint8 in [0, 255] or floating point in [-1, 1], with N >= 1.

    Returns:
      np.ndarray float32 of shape [N, 28, 28, 1] with values in [-1, 1].

    Raises:
      ValueError: if the shape or dtype is not one of the above, or a value is NaN
        or Inf. Also if a floating-point value is outside [-1, 1], as in images in
        [0, 255], or a floating-point batch has no negative pixel, as in images in
        [0, 1].
    """
    array = _as_array(images, "images", "[N, 28, 28] or [N, 28, 28, 1]")
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4 or array.shape[1:] != IMAGE_SHAPE:
        raise ValueError(
            f"images must have shape [N, 28, 28] or [N, 28, 28, 1], but have shape {np.shape(images)}."
        )
    if array.shape[0] < 1:
        raise ValueError(f"images must contain at least 1 image, but have shape {np.shape(images)}.")

    if array.dtype == np.uint8:
        # float64 makes every quotient exact before the single rounding to float32.
        return (array.astype(np.float64) / 127.5 - 1.0).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"images must be uint8 in [0, 255] or floating point in [-1, 1], but have dtype {array.dtype}. "
            "Convert them to one of these explicitly."
        )

    check_finite(array, "images")
    minimum = float(array.min())
    maximum = float(array.max())
    if minimum < -1.0 or maximum > 1.0:
        raise ValueError(
            f"images must be in the range [-1, 1], but have min {minimum} and max {maximum}. "
            "For float images in [0, 255], use x / 127.5 - 1."
        )
    if minimum >= 0.0:
        raise ValueError(
            f"images have no negative pixel (min {minimum}, max {maximum}), so they look like they are "
            "in the range [0, 1], but the expected range is [-1, 1], where the MNIST background is -1. "
            "Use x * 2 - 1."
        )
    return array.astype(np.float32)


def check_mnist_split(split, name="reference_split"):
    """Raise ValueError unless `split` is a TFDS split of mnist, such as "test" or "train[:50%]+test".

    TFDS's own parser checks the syntax, then every split named must be train,
    test or all. TFDS itself reports an unknown split name only when it reads the
    data, after the evaluation has started.

    Args:
      split: the split spec.
      name: name of the argument or flag, used in error messages.
    """
    # tensorflow_datasets 4.9 imports no TensorFlow here. It is imported on first
    # use because the import takes about a second.
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    expected = (
        f"expected {', '.join(MNIST_SPLITS)} or all, optionally sliced as in test[:1000] "
        "or joined as in train[:50%]+test"
    )
    if not isinstance(split, str):
        raise ValueError(f"{name}={split!r} is invalid: {expected}")
    try:
        tfds.core.ReadInstruction.from_spec(split)
    except (ValueError, NotImplementedError):
        raise ValueError(f"{name}={split!r} is invalid: it is not a TFDS split; {expected}") from None
    # The parser accepted it, so each "+"-separated part is a name with an optional [slice].
    for part in re.split(r"\s*\+\s*", split):
        split_name = part.split("[", 1)[0]
        if split_name not in MNIST_SPLITS + ("all",):
            raise ValueError(f"{name}={split!r} is invalid: mnist has no split {split_name!r}; {expected}")
