"""Evaluation metrics for generated MNIST images."""
