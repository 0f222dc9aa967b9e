"""Shared fixtures: small synthetic image sets so tests run in seconds."""

import numpy as np
import pytest


@pytest.fixture
def tiny_images():
  """uint8 images [64, 28, 28, 1] with random pixels, the same in every test."""
  return np.random.default_rng(0).integers(0, 256, size=(64, 28, 28, 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
  """A TFDS data dir with a 96-image train split and a 20-image test split."""
  from gan_lib import mnist_prep  # pylint: disable=g-import-not-at-top

  folder = tmp_path_factory.mktemp("tiny_mnist")
  rng = np.random.default_rng(0)
  source = folder / "mnist.npz"
  np.savez(source,
           x_train=rng.integers(0, 256, size=(96, 28, 28), dtype=np.uint8),
           y_train=rng.integers(0, 10, size=96).astype(np.uint8),
           x_test=rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
           y_test=np.arange(20, dtype=np.uint8) % 10)
  data_dir = folder / "tfds"
  mnist_prep.prepare_mnist(str(source), str(data_dir), expected=None)
  return str(data_dir)
