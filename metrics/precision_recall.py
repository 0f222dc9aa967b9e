"""Improved precision and recall of generated samples from k-nearest-neighbour manifolds.

Kynkaanniemi, Karras, Laine, Lehtinen and Aila (2019), "Improved Precision and Recall
Metric for Assessing Generative Models".
"""

import numpy as np

from metrics import validation

DEFAULT_BATCH_SIZE = 512


def precision_recall(real_features, generated_features, k=3, batch_size=DEFAULT_BATCH_SIZE):
    """Compute improved precision and recall of generated features against real ones.

    The manifold of a set of points is the union of closed balls around each point,
    with a radius equal to the distance to its k-th nearest neighbour in the same set
    (the point itself excluded, its duplicates included). Then

        precision = fraction of generated points inside the real manifold
        recall = fraction of real points inside the generated manifold

    A point on a ball's boundary counts as inside. Distances are Euclidean, computed
    in float64 after subtracting the mean of the real features from both sets, which
    keeps them accurate for features with a large common offset. Distances are
    computed `batch_size` rows at a time against a whole set, so peak memory is
    about a few times 8 * batch_size * max(N1, N2) bytes, not quadratic in N.

    Args:
      real_features: array-like or tf.Tensor of shape [N1, d], N1 >= 2, finite.
      generated_features: array-like or tf.Tensor of shape [N2, d], N2 >= 2.
      k: neighbour rank for the radii, an int in [1, min(N1, N2) - 1].
      batch_size: number of rows per distance block, an int >= 1. It does not
        change the result.

    Returns:
      A dict with float entries "precision" and "recall", each in [0, 1].

    Raises:
      ValueError: if an input is not 2-D, has fewer than 2 samples, contains NaN or
        Inf, the feature sizes differ, or k or batch_size is out of range.
    """
    real = validation.as_float64_matrix(real_features, "real_features")
    generated = validation.as_float64_matrix(generated_features, "generated_features")
    validation.check_same_num_features(real, "real_features", generated, "generated_features")
    validation.check_positive_int(batch_size, "batch_size")
    validation.check_positive_int(k, "k")
    smaller_size = min(real.shape[0], generated.shape[0])
    if k >= smaller_size:
        raise ValueError(
            f"k must be less than the size of each set so that every point has k other points, "
            f"but k is {k} and the smaller set has {smaller_size} samples."
        )

    center = real.mean(axis=0)
    real = real - center
    generated = generated - center

    real_radii_squared = _kth_neighbour_distances_squared(real, k, batch_size)
    generated_radii_squared = _kth_neighbour_distances_squared(generated, k, batch_size)
    precision = np.mean(_inside_manifold(generated, real, real_radii_squared, batch_size))
    recall = np.mean(_inside_manifold(real, generated, generated_radii_squared, batch_size))
    return {"precision": float(precision), "recall": float(recall)}


def _squared_distances(queries, points, points_squared_norms):
    """Return the [b, n] squared Euclidean distances from queries [b, d] to points [n, d]."""
    # NOTE: the expansion |q|^2 - 2 q.p + |p|^2 has a rounding error of about 1e-16
    # times the squared norms, so equal points can get a tiny positive distance. This
    # matters only for radii near 0, as with duplicate points.
    queries_squared_norms = np.sum(np.square(queries), axis=1)
    distances = queries_squared_norms[:, np.newaxis] - 2.0 * (queries @ points.T) + points_squared_norms
    return np.maximum(distances, 0.0)


def _kth_neighbour_distances_squared(points, k, batch_size):
    """Return the squared distance from each point to its k-th nearest other point, shape [n]."""
    num_points = points.shape[0]
    squared_norms = np.sum(np.square(points), axis=1)
    radii_squared = np.empty(num_points)
    for start in range(0, num_points, batch_size):
        end = min(start + batch_size, num_points)
        distances = _squared_distances(points[start:end], points, squared_norms)
        # Exclude each point itself. Its duplicates stay and count as neighbours at distance 0.
        rows = np.arange(end - start)
        distances[rows, start + rows] = np.inf
        radii_squared[start:end] = np.partition(distances, k - 1, axis=1)[:, k - 1]
    return radii_squared


def _inside_manifold(queries, points, radii_squared, batch_size):
    """Return a bool [b] mask of the queries within radius of at least one point."""
    squared_norms = np.sum(np.square(points), axis=1)
    inside = np.empty(queries.shape[0], dtype=bool)
    for start in range(0, queries.shape[0], batch_size):
        end = min(start + batch_size, queries.shape[0])
        distances = _squared_distances(queries[start:end], points, squared_norms)
        inside[start:end] = np.any(distances <= radii_squared, axis=1)
    return inside
