"""Evaluation metrics for generated MNIST images.

All metrics are pure functions of numpy arrays or TensorFlow tensors. They compute in
numpy float64, and importing this package does not import TensorFlow.
"""

from metrics.coverage import class_coverage
from metrics.frechet import frechet_distance, frechet_distance_from_statistics
from metrics.inception_score import inception_score
from metrics.kernel_distance import kernel_distance
from metrics.precision_recall import precision_recall
from metrics.statistics import ActivationStatistics
from metrics.validation import check_images

__all__ = [
    "ActivationStatistics",
    "check_images",
    "class_coverage",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "inception_score",
    "kernel_distance",
    "precision_recall",
]
