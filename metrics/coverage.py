"""Histogram of predicted classes, to make mode collapse visible."""

import numpy as np

from metrics import validation


def class_coverage(logits_or_predictions, num_classes=10, min_fraction=None):
    """Summarize how the predicted classes of a sample set are spread over all classes.

    A class counts as present when its fraction of the predictions is at least
    `min_fraction` and it is predicted at least once. The KL divergence of the
    predicted-class histogram f from the uniform distribution is

        KL(f || uniform) = sum_c f_c log(f_c * num_classes), with 0 log 0 = 0,

    in nats. It is 0 for a perfectly balanced histogram and log(num_classes) when
    every sample gets the same class.

    Args:
      logits_or_predictions: array-like or tf.Tensor, either logits or probabilities
        of shape [N, num_classes] (the argmax of each row is the prediction), or
        integer class labels of shape [N] in [0, num_classes). N >= 2, finite.
      num_classes: number of classes, an int >= 2.
      min_fraction: minimum fraction of the predictions for a class to count as
        present, a float in [0, 1]. None means one tenth of the uniform share,
        0.1 / num_classes, which is 0.01 for MNIST.

    Returns:
      A dict with entries
        "num_samples": int, N.
        "counts": int64 array [num_classes], predictions per class.
        "fractions": float64 array [num_classes], counts / N.
        "num_classes_present": int, classes with count > 0 and fraction >= min_fraction.
        "min_fraction": float, the threshold used.
        "kl_from_uniform": float >= 0, KL(fractions || uniform) in nats.
        "most_frequent_class", "least_frequent_class": ints. Ties go to the lowest
          class index, and a class never predicted can be the least frequent.
        "most_frequent_fraction", "least_frequent_fraction": floats in [0, 1].

    Raises:
      ValueError: if the input shape or dtype does not fit the description above,
        has fewer than 2 samples, contains NaN or Inf, has labels outside
        [0, num_classes), or num_classes or min_fraction is out of range.
    """
    validation.check_positive_int(num_classes, "num_classes", minimum=2)
    if min_fraction is None:
        min_fraction = 0.1 / num_classes
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], but is {min_fraction}.")

    predictions = _as_predictions(logits_or_predictions, num_classes)
    num_samples = predictions.shape[0]
    counts = np.bincount(predictions, minlength=num_classes).astype(np.int64)
    fractions = counts / num_samples

    present = (counts > 0) & (fractions >= min_fraction)
    nonzero = fractions > 0
    kl_from_uniform = float(np.sum(fractions[nonzero] * np.log(fractions[nonzero] * num_classes)))
    most_frequent_class = int(np.argmax(counts))
    least_frequent_class = int(np.argmin(counts))
    return {
        "num_samples": int(num_samples),
        "counts": counts,
        "fractions": fractions,
        "num_classes_present": int(np.count_nonzero(present)),
        "min_fraction": float(min_fraction),
        "kl_from_uniform": max(0.0, kl_from_uniform),
        "most_frequent_class": most_frequent_class,
        "most_frequent_fraction": float(fractions[most_frequent_class]),
        "least_frequent_class": least_frequent_class,
        "least_frequent_fraction": float(fractions[least_frequent_class]),
    }


def _as_predictions(values, num_classes):
    """Return int64 class labels [N] from logits [N, num_classes] or labels [N]."""
    array = np.asarray(values)
    name = "logits_or_predictions"
    validation.check_real_numeric(array, name)

    if array.ndim == 2:
        logits = validation.as_float64_matrix(array, name)
        if logits.shape[1] != num_classes:
            raise ValueError(
                f"{name} with rank 2 must have shape [N, num_classes] = [N, {num_classes}], "
                f"but has shape {logits.shape}."
            )
        return np.argmax(logits, axis=1)

    if array.ndim != 1:
        raise ValueError(
            f"{name} must be logits of shape [N, num_classes] or class labels of shape [N], "
            f"but has shape {array.shape}."
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} of shape [N] must contain integer class labels, but has dtype {array.dtype}.")
    if array.shape[0] < 2:
        raise ValueError(f"{name} must have at least 2 samples, but has shape {array.shape}.")
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(
            f"class labels must be in [0, num_classes) = [0, {num_classes}), but range from "
            f"{array.min()} to {array.max()}."
        )
    return array.astype(np.int64)
