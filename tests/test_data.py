"""Tests of the per-epoch input pipeline."""

import numpy as np
import pytest

from gan_lib import data


def _epoch_batches(pipeline, epoch, skip=0):
  return [batch.numpy() for batch in pipeline.epoch(epoch, skip_batches=skip)]


def test_batches_are_float32_in_model_range(tiny_images):
  pipeline = data.EpochPipeline.from_array(tiny_images, batch_size=10, seed=0)
  batches = _epoch_batches(pipeline, 0)
  assert len(batches) == 6  # 64 images, the partial seventh batch is dropped
  assert pipeline.steps_per_epoch == 6
  for batch in batches:
    assert batch.shape == (10, 28, 28, 1)
    assert batch.dtype == np.float32
    assert batch.min() >= -1.0
    assert batch.max() <= 1.0


def test_uint8_to_model_range_is_exact():
  pixels = np.arange(256, dtype=np.uint8)
  converted = data.to_model_range(pixels).numpy()
  np.testing.assert_allclose(converted, pixels / 127.5 - 1.0, atol=1e-7)
  assert converted[0] == -1.0
  assert converted[-1] == 1.0


def test_epoch_order_depends_on_seed_and_epoch_only(tiny_images):
  first = data.EpochPipeline.from_array(tiny_images, batch_size=8, seed=1)
  second = data.EpochPipeline.from_array(tiny_images, batch_size=8, seed=1)
  other_seed = data.EpochPipeline.from_array(tiny_images, batch_size=8, seed=2)
  np.testing.assert_array_equal(_epoch_batches(first, 3), _epoch_batches(second, 3))
  assert not np.array_equal(_epoch_batches(first, 3), _epoch_batches(first, 4))
  assert not np.array_equal(_epoch_batches(first, 3), _epoch_batches(other_seed, 3))


def test_skip_continues_where_an_epoch_stopped(tiny_images):
  pipeline = data.EpochPipeline.from_array(tiny_images, batch_size=8, seed=5)
  full = _epoch_batches(pipeline, 2)
  resumed = _epoch_batches(pipeline, 2, skip=3)
  np.testing.assert_array_equal(np.stack(full[3:]), np.stack(resumed))


def test_each_epoch_is_a_permutation_of_the_data(tiny_images):
  pipeline = data.EpochPipeline.from_array(tiny_images, batch_size=8, seed=0)
  seen = np.concatenate(_epoch_batches(pipeline, 0))
  expected = tiny_images.astype(np.float32) / 127.5 - 1.0
  np.testing.assert_allclose(np.sort(seen.reshape(64, -1), axis=0),
                             np.sort(expected.reshape(64, -1), axis=0), atol=1e-6)


def test_batch_larger_than_data_is_rejected(tiny_images):
  with pytest.raises(ValueError, match="larger than the data set"):
    data.EpochPipeline.from_array(tiny_images, batch_size=65, seed=0)


def test_short_epoch_is_epoch_prefix(tiny_images):
  pipeline = data.EpochPipeline.from_array(tiny_images, batch_size=8, seed=5)
  assert pipeline.steps_for(None) == 8
  assert pipeline.steps_for(20) == 2
  assert pipeline.steps_for(1000) == 8
  full = _epoch_batches(pipeline, 1)
  short = [batch.numpy() for batch in pipeline.epoch(1, num_batches=3)]
  resumed = [batch.numpy() for batch in pipeline.epoch(1, skip_batches=2, num_batches=3)]
  np.testing.assert_array_equal(np.stack(full[:3]), np.stack(short))
  np.testing.assert_array_equal(np.stack(full[2:3]), np.stack(resumed))
