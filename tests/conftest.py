"""Shared fixtures: small synthetic image sets so tests run in seconds."""

import numpy as np
import pytest


@pytest.fixture
def tiny_images():
  """uint8 images [64, 28, 28, 1] with random pixels, the same in every test."""
  return np.random.default_rng(0).integers(0, 256, size=(64, 28, 28, 1), dtype=np.uint8)
