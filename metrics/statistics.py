"""Streaming statistics in float64: feature mean and covariance for the Frechet
distance, and per-split sums for the Inception Score."""

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


class InceptionScoreStatistics:
    """Streaming per-split sums for the Inception Score, in float64.

    For each split s of the images it stores the count n_s, the sum over its
    images x of p(y|x) for every class y, and the sum of sum_y p(y|x) log p(y|x),
    with p(y|x) = softmax(logits[x]). The score of a split then follows from

        mean_x KL(p(y|x) || p(y)) = mean_x sum_y p(y|x) log p(y|x) - sum_y p(y) log p(y),

    where p(y) = sum_x p(y|x) / n_s is the split's marginal. Memory is
    O(num_splits * num_classes), images may arrive in any order and grouping, and
    accumulators of disjoint images merge by adding their sums. The score equals
    `metrics.inception_score` on the same splits up to float64 rounding.

    Example:
      statistics = InceptionScoreStatistics(num_splits=10, num_classes=10)
      for logits, split_ids in batches:
          statistics.update(logits, split_ids)
      mean, std = statistics.score()
    """

    def __init__(self, num_splits, num_classes):
        """Creates empty sums for `num_splits` splits (an int >= 1) and `num_classes` classes (>= 2)."""
        validation.check_positive_int(num_splits, "num_splits")
        validation.check_positive_int(num_classes, "num_classes", minimum=2)
        self.num_splits = num_splits
        self.num_classes = num_classes
        self._counts = np.zeros(num_splits, dtype=np.int64)
        self._probability_sums = np.zeros((num_splits, num_classes), dtype=np.float64)
        self._negative_entropy_sums = np.zeros(num_splits, dtype=np.float64)

    @property
    def counts(self):
        """int64 [num_splits], the number of images added to each split."""
        return self._counts.copy()

    @property
    def probability_sums(self):
        """float64 [num_splits, num_classes], the sum of p(y|x) over each split's images."""
        return self._probability_sums.copy()

    @property
    def negative_entropy_sums(self):
        """float64 [num_splits], the sum of sum_y p(y|x) log p(y|x) over each split's images."""
        return self._negative_entropy_sums.copy()

    @classmethod
    def from_sums(cls, counts, probability_sums, negative_entropy_sums):
        """Creates statistics from the three arrays another accumulator's properties returned."""
        probability_sums = np.asarray(probability_sums, dtype=np.float64)
        if probability_sums.ndim != 2:
            raise ValueError(
                f"probability_sums must have shape [num_splits, num_classes], but has shape {probability_sums.shape}."
            )
        statistics = cls(*probability_sums.shape)
        counts = np.asarray(counts)
        negative_entropy_sums = np.asarray(negative_entropy_sums, dtype=np.float64)
        if counts.shape != (statistics.num_splits,) or negative_entropy_sums.shape != (statistics.num_splits,):
            raise ValueError(
                f"counts and negative_entropy_sums must have shape [{statistics.num_splits}], but have shapes "
                f"{counts.shape} and {negative_entropy_sums.shape}."
            )
        statistics._counts = counts.astype(np.int64)
        statistics._probability_sums = probability_sums.copy()
        statistics._negative_entropy_sums = negative_entropy_sums.copy()
        return statistics

    def update(self, logits, split_ids):
        """Add images given by their logits [n, num_classes] and their split ids [n].

        Args:
          logits: array-like or tf.Tensor [n, num_classes], finite; n may be 0.
          split_ids: integer array [n] with values in [0, num_splits).

        Returns:
          self, so calls can be chained.

        Raises:
          ValueError: if the shapes do not match, the logits contain NaN or Inf, or a
            split id is out of range.
        """
        logits = validation.as_float64_matrix(logits, "logits", min_rows=0)
        split_ids = np.asarray(split_ids)
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must have {self.num_classes} classes (columns), but have shape {logits.shape}.")
        if split_ids.shape != (logits.shape[0],) or not np.issubdtype(split_ids.dtype, np.integer):
            raise ValueError(
                f"split_ids must be integers of shape [{logits.shape[0]}], one per row of logits, but have "
                f"shape {split_ids.shape} and dtype {split_ids.dtype}."
            )
        if logits.shape[0] == 0:
            return self
        if split_ids.min() < 0 or split_ids.max() >= self.num_splits:
            raise ValueError(
                f"split_ids must be in [0, {self.num_splits}), but range from {split_ids.min()} to {split_ids.max()}."
            )
        shifted = logits - np.max(logits, axis=1, keepdims=True)
        log_probabilities = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        probabilities = np.exp(log_probabilities)
        # log p is finite, so a probability that underflows to 0 adds 0, as in the KL divergence.
        negative_entropies = np.sum(probabilities * log_probabilities, axis=1)
        # np.add.at adds the rows one by one in order, so the sums do not depend on
        # how the rows of one batch are laid out in memory.
        np.add.at(self._probability_sums, split_ids, probabilities)
        np.add.at(self._negative_entropy_sums, split_ids, negative_entropies)
        self._counts += np.bincount(split_ids, minlength=self.num_splits)
        return self

    def merge(self, other):
        """Add the sums of another InceptionScoreStatistics, over other images, to these.

        `other` is not changed.

        Raises:
          ValueError: if `other` is not an InceptionScoreStatistics or has other
            numbers of splits or classes.
        """
        if not isinstance(other, InceptionScoreStatistics):
            raise ValueError(f"merge needs an InceptionScoreStatistics, but got {type(other).__name__}.")
        if (other.num_splits, other.num_classes) != (self.num_splits, self.num_classes):
            raise ValueError(
                f"other has {other.num_splits} splits and {other.num_classes} classes, but these statistics "
                f"have {self.num_splits} and {self.num_classes}."
            )
        self._counts += other._counts
        self._probability_sums += other._probability_sums
        self._negative_entropy_sums += other._negative_entropy_sums
        return self

    def score(self):
        """Returns (mean, std) of the per-split scores, as `metrics.inception_score` does.

        Raises:
          ValueError: if a split has no images.
        """
        if np.any(self._counts == 0):
            raise ValueError(
                f"every split needs at least 1 image, but the splits have {self._counts.tolist()} images."
            )
        marginals = self._probability_sums / self._counts[:, np.newaxis]
        # A marginal of exactly 0 means every p(y|x) of the class underflowed, and
        # each such image adds 0 to the KL divergence, so the term is 0.
        log_marginals = np.log(marginals, where=marginals > 0, out=np.zeros_like(marginals))
        mean_kl_divergences = self._negative_entropy_sums / self._counts - np.sum(marginals * log_marginals, axis=1)
        scores = np.exp(mean_kl_divergences)
        return float(np.mean(scores)), float(np.std(scores))
