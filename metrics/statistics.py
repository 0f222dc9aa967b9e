"""Streaming mean and covariance of activations, for the Frechet distance."""

import numpy as np

from metrics import validation


class ActivationStatistics:
    """Streaming count, mean and covariance of feature vectors, in float64.

    The accumulator stores the count n, the mean and the centered sum of outer
    products M2 = sum_i (x_i - mean)(x_i - mean)^T. Batches and other accumulators
    are combined with the pairwise update of Chan, Golub and LeVeque (1979):

        n = n_a + n_b
        delta = mean_b - mean_a
        mean = mean_a + delta * n_b / n
        M2 = M2_a + M2_b + outer(delta, delta) * n_a * n_b / n

    Each batch is centered on its own mean before its M2 is formed. Unlike raw sums
    of x and x x^T, this stays accurate when all features share a large offset.
    Memory is O(d^2) for d features, independent of the number of samples.

    Example:
      statistics = ActivationStatistics()
      for batch in batches:
          statistics.update(batch)
      mean, covariance = statistics.mean, statistics.covariance
    """

    def __init__(self):
        self._count = 0
        self._mean = None
        self._centered_outer_sum = None

    @property
    def count(self):
        """Number of samples accumulated so far, an int >= 0."""
        return self._count

    @property
    def num_features(self):
        """Feature size d, or None before the first non-empty batch."""
        return None if self._mean is None else self._mean.shape[0]

    @property
    def mean(self):
        """Sample mean, a float64 array of shape [d]. Requires count >= 1."""
        if self._count < 1:
            raise ValueError("mean needs at least 1 sample, but no samples were accumulated.")
        return self._mean.copy()

    @property
    def covariance(self):
        """Unbiased sample covariance M2 / (n - 1), float64 of shape [d, d]. Requires count >= 2."""
        if self._count < 2:
            raise ValueError(f"covariance needs at least 2 samples, but {self._count} were accumulated.")
        return self._centered_outer_sum / (self._count - 1)

    def update(self, batch):
        """Add a batch of feature vectors to the statistics.

        Args:
          batch: array-like or tf.Tensor of shape [N, d] with a real numeric dtype and
            finite values. N may be 0, which leaves the statistics unchanged. d must
            equal the feature size of earlier batches.

        Returns:
          self, so calls can be chained.

        Raises:
          ValueError: if the batch is not 2-D, contains NaN or Inf, or has a different
            feature size than earlier batches.
        """
        batch = validation.as_float64_matrix(batch, "batch", min_rows=0)
        batch_count = batch.shape[0]
        if batch_count == 0:
            self._check_num_features(batch.shape[1], "batch")
            return self
        batch_mean = batch.mean(axis=0)
        centered = batch - batch_mean
        batch_outer_sum = centered.T @ centered
        self._combine(batch_count, batch_mean, batch_outer_sum, "batch")
        return self

    def merge(self, other):
        """Add the samples accumulated by another ActivationStatistics to this one.

        The result equals accumulating both sets of samples in one object, up to
        floating-point rounding. `other` is not changed.

        Args:
          other: an ActivationStatistics with the same feature size, or empty.

        Returns:
          self, so calls can be chained.

        Raises:
          ValueError: if `other` is not an ActivationStatistics or its feature size
            differs.
        """
        if not isinstance(other, ActivationStatistics):
            raise ValueError(f"merge needs an ActivationStatistics, but got {type(other).__name__}.")
        if other._count == 0:
            return self
        self._combine(other._count, other._mean, other._centered_outer_sum, "other")
        return self

    def _check_num_features(self, num_features, name):
        if self._mean is not None and num_features != self._mean.shape[0]:
            raise ValueError(
                f"{name} has {num_features} features, but the statistics were accumulated "
                f"with {self._mean.shape[0]} features."
            )

    def _combine(self, count, mean, centered_outer_sum, name):
        """Merge a group of samples given by its count, mean and M2 into self."""
        self._check_num_features(mean.shape[0], name)
        if self._count == 0:
            self._count = count
            self._mean = mean.copy()
            self._centered_outer_sum = centered_outer_sum.copy()
            return
        total = self._count + count
        delta = mean - self._mean
        self._mean = self._mean + delta * (count / total)
        self._centered_outer_sum = (
            self._centered_outer_sum
            + centered_outer_sum
            + np.outer(delta, delta) * (self._count * count / total)
        )
        self._count = total
