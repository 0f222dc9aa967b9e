"""Inception score computed from classifier logits.

Salimans, Goodfellow, Zaremba, Cheung, Radford and Chen (2016), "Improved Techniques
for Training GANs".
"""

import numpy as np

from metrics import validation


def inception_score(logits, num_splits=10):
    """Compute the Inception score and its spread over splits of the samples.

    For each split S of the samples, with p(y|x) = softmax(logits[x]) and the
    marginal p(y) = mean over x in S of p(y|x):

        score(S) = exp(mean over x in S of KL(p(y|x) || p(y)))

    The samples are split in the order given into `num_splits` contiguous parts.
    Split i contains rows [i * N // num_splits, (i + 1) * N // num_splits), as in the
    Inception score code released with the paper. All math is in float64 with
    log-probabilities from a log-softmax, so a class that is never predicted adds 0
    to the KL divergence instead of NaN. The score ranges from 1 (every sample gets
    the same prediction) to the number of classes (confident predictions spread
    evenly over all classes).

    Args:
      logits: array-like or tf.Tensor of shape [N, num_classes], N >= 2,
        num_classes >= 2, finite, unnormalized log-probabilities.
      num_splits: number of splits, an int in [1, N].

    Returns:
      A tuple (mean, std) of Python floats: the mean of the per-split scores and
      their population standard deviation (ddof=0). std is 0.0 for num_splits=1.

    Raises:
      ValueError: if logits is not 2-D, has fewer than 2 samples or 2 classes,
        contains NaN or Inf, or num_splits is outside [1, N].
    """
    logits = validation.as_float64_matrix(logits, "logits")
    num_samples, num_classes = logits.shape
    if num_classes < 2:
        raise ValueError(f"logits must have at least 2 classes (columns), but have shape {logits.shape}.")
    validation.check_positive_int(num_splits, "num_splits")
    if num_splits > num_samples:
        raise ValueError(
            f"num_splits must be in [1, N] = [1, {num_samples}] so that no split is empty, "
            f"but is {num_splits}."
        )

    log_probabilities = _log_softmax(logits)
    scores = []
    for split in range(num_splits):
        start = split * num_samples // num_splits
        end = (split + 1) * num_samples // num_splits
        scores.append(_split_score(log_probabilities[start:end]))
    scores = np.array(scores)
    return float(np.mean(scores)), float(np.std(scores))


def _log_softmax(logits):
    """Return log(softmax(logits)) along the last axis, stable for large logits."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _split_score(log_probabilities):
    """Return exp(mean KL(p(y|x) || p(y))) for one split of [n, C] log p(y|x)."""
    # log p(y) = log(mean_x p(y|x)), computed as a log-sum-exp over the samples.
    max_per_class = np.max(log_probabilities, axis=0)
    log_marginal = max_per_class + np.log(np.mean(np.exp(log_probabilities - max_per_class), axis=0))
    probabilities = np.exp(log_probabilities)
    # Both logs are finite, so a probability that underflows to 0 contributes 0 * finite = 0.
    kl_divergences = np.sum(probabilities * (log_probabilities - log_marginal), axis=1)
    return float(np.exp(np.mean(kl_divergences)))
