"""Sample grids as PNG and their progression as an animated GIF."""

import io
import math

import numpy as np
from PIL import Image

from gan_lib import io_utils


def image_grid(images, columns=None):
  """Tiles images into one grayscale grid.

  Args:
    images: float array [N, 28, 28, 1] or [N, 28, 28] in [-1, 1].
    columns: images per row; defaults to ceil(sqrt(N)).

  Returns:
    uint8 array [rows * 28, columns * 28]; empty cells are black.
  """
  images = np.asarray(images, dtype=np.float32)
  if images.ndim == 4:
    images = images[..., 0]
  if images.ndim != 3:
    raise ValueError(f"images must be [N, H, W] or [N, H, W, 1], got shape {images.shape}")
  count, height, width = images.shape
  columns = columns or math.ceil(math.sqrt(count))
  rows = math.ceil(count / columns)
  pixels = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
  grid = np.zeros([rows * height, columns * width], dtype=np.uint8)
  for index in range(count):
    row, column = divmod(index, columns)
    grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = pixels[index]
  return grid


def write_png(path, grid):
  """Writes a uint8 grayscale array [H, W] as a PNG, atomically."""
  buffer = io.BytesIO()
  Image.fromarray(grid, mode="L").save(buffer, format="PNG")
  io_utils.atomic_write_bytes(path, buffer.getvalue())


def write_gif(path, png_paths, frame_milliseconds=300):
  """Writes the PNGs in `png_paths`, in order, as one looping animated GIF, atomically."""
  if not png_paths:
    raise ValueError("write_gif needs at least one PNG")
  frames = []
  for png_path in png_paths:
    with Image.open(png_path) as frame:
      frames.append(frame.convert("L"))
  buffer = io.BytesIO()
  frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                 duration=frame_milliseconds, loop=0)
  io_utils.atomic_write_bytes(path, buffer.getvalue())
