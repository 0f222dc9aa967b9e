"""Tests of sample grids, PNG and GIF writing."""

import numpy as np
from PIL import Image
import pytest

from gan_lib import images


def test_grid_places_images_row_by_row():
  batch = np.full([5, 28, 28, 1], -1.0, np.float32)
  batch[1] = 1.0  # second image white
  grid = images.image_grid(batch, columns=3)
  assert grid.shape == (2 * 28, 3 * 28)
  assert grid.dtype == np.uint8
  assert grid[:28, 28:56].min() == 255
  assert grid[:28, :28].max() == 0
  assert grid[28:, 56:].max() == 0  # the empty sixth cell is black


def test_grid_default_is_square():
  assert images.image_grid(np.zeros([64, 28, 28, 1])).shape == (8 * 28, 8 * 28)


def test_grid_rejects_wrong_rank():
  with pytest.raises(ValueError, match="got shape"):
    images.image_grid(np.zeros([28, 28]))


def test_png_and_gif_open(tmp_path):
  pngs = []
  for value in (0, 128, 255):
    path = str(tmp_path / f"grid_{value}.png")
    images.write_png(path, np.full([56, 56], value, np.uint8))
    pngs.append(path)
  with Image.open(pngs[1]) as png:
    assert png.size == (56, 56)
    assert np.asarray(png)[0, 0] == 128
  gif_path = str(tmp_path / "progress.gif")
  images.write_gif(gif_path, pngs)
  with Image.open(gif_path) as gif:
    assert gif.n_frames == 3
