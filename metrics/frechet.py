"""Frechet distance between Gaussians fitted to two sets of activations (FID).

Heusel, Ramsauer, Unterthiner, Nessler and Hochreiter (2017), "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium".
"""

import numpy as np

from metrics import statistics, validation


def frechet_distance(real_activations, generated_activations):
    """Compute the Frechet distance between Gaussians fitted to two activation sets.

    Means and unbiased covariances are computed in float64 with
    `ActivationStatistics`, then passed to `frechet_distance_from_statistics`.

    Args:
      real_activations: array-like or tf.Tensor of shape [N1, d], N1 >= 2, any real
        numeric dtype, finite.
      generated_activations: array-like or tf.Tensor of shape [N2, d], N2 >= 2.

    Returns:
      The distance as a Python float >= 0.

    Raises:
      ValueError: if an input is not 2-D, has fewer than 2 samples, contains NaN or
        Inf, or the feature sizes differ.
    """
    real = validation.as_float64_matrix(real_activations, "real_activations")
    generated = validation.as_float64_matrix(generated_activations, "generated_activations")
    validation.check_same_num_features(real, "real_activations", generated, "generated_activations")

    real_statistics = statistics.ActivationStatistics().update(real)
    generated_statistics = statistics.ActivationStatistics().update(generated)
    return frechet_distance_from_statistics(
        real_statistics.mean,
        real_statistics.covariance,
        generated_statistics.mean,
        generated_statistics.covariance,
    )


def frechet_distance_from_statistics(mean1, cov1, mean2, cov2):
    """Compute the Frechet distance between two Gaussians from their means and covariances.

        d^2 = |mean1 - mean2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2))

    cov1 cov2 is not symmetric, so the trace of its square root is taken from the
    symmetric matrix cov1^(1/2) cov2 cov1^(1/2), which has the same eigenvalues.
    Both square roots use `np.linalg.eigh` with negative eigenvalues (rounding noise
    of a singular covariance) clipped to 0, so no complex numbers appear and a
    singular covariance (fewer samples than features) gives a finite result. The
    result is clipped at 0 from below.

    Args:
      mean1: array-like of shape [d], finite.
      cov1: array-like of shape [d, d], symmetric positive semi-definite. Only its
        symmetric part (cov1 + cov1^T) / 2 is used.
      mean2: array-like of shape [d].
      cov2: array-like of shape [d, d], like cov1.

    Returns:
      The distance d^2 as a Python float >= 0.

    Raises:
      ValueError: if a shape is wrong, the sizes differ, or a value is NaN or Inf.
    """
    mean1 = validation.as_float64_vector(mean1, "mean1")
    mean2 = validation.as_float64_vector(mean2, "mean2")
    cov1 = _as_covariance(cov1, "cov1", mean1.shape[0])
    cov2 = _as_covariance(cov2, "cov2", mean1.shape[0])
    if mean2.shape != mean1.shape:
        raise ValueError(f"mean1 and mean2 must have the same shape, but have shapes {mean1.shape} and {mean2.shape}.")

    mean_term = float(np.sum(np.square(mean1 - mean2)))
    trace_term = float(np.trace(cov1) + np.trace(cov2)) - 2.0 * _trace_sqrt_product(cov1, cov2)
    return max(0.0, mean_term + trace_term)


def _as_covariance(values, name, num_features):
    array = np.asarray(values)
    validation.check_real_numeric(array, name)
    if array.shape != (num_features, num_features):
        raise ValueError(
            f"{name} must have shape [d, d] = {(num_features, num_features)} to match mean1, "
            f"but has shape {array.shape}."
        )
    array = array.astype(np.float64)
    validation.check_finite(array, name)
    return (array + array.T) / 2.0


def _trace_sqrt_product(cov1, cov2):
    """Return tr((cov1 cov2)^(1/2)) for symmetric positive semi-definite matrices."""
    eigenvalues, eigenvectors = np.linalg.eigh(cov1)
    sqrt_cov1 = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    product = sqrt_cov1 @ cov2 @ sqrt_cov1
    product = (product + product.T) / 2.0
    product_eigenvalues = np.linalg.eigvalsh(product)
    return float(np.sum(np.sqrt(np.clip(product_eigenvalues, 0.0, None))))
