"""Evaluation metrics for generated MNIST images.

All metrics are pure functions of numpy arrays or TensorFlow tensors. They compute in
numpy float64, and importing this package does not import TensorFlow.

`Evaluator` (metrics.evaluator) and the evaluation classifier (metrics.classifier)
need TensorFlow, so they are imported on first access of their names here.
"""

import importlib

from metrics.coverage import class_coverage
from metrics.frechet import frechet_distance, frechet_distance_from_statistics
from metrics.inception_score import inception_score
from metrics.kernel_distance import kernel_distance
from metrics.precision_recall import precision_recall
from metrics.statistics import ActivationStatistics
from metrics.validation import check_images

_LAZY_EXPORTS = {
    "Evaluator": "metrics.evaluator",
    "MnistClassifier": "metrics.classifier",
    "load_classifier": "metrics.classifier",
    "save_classifier_weights": "metrics.classifier",
}

__all__ = [
    "ActivationStatistics",
    "Evaluator",
    "MnistClassifier",
    "check_images",
    "class_coverage",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "inception_score",
    "kernel_distance",
    "load_classifier",
    "precision_recall",
    "save_classifier_weights",
]


def __getattr__(name):
    """Imports the TensorFlow-based exports on first access."""
    if name in _LAZY_EXPORTS:
        return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")
