"""Tests of the DCGAN generator and discriminator modules."""

import numpy as np
import pytest
import tensorflow as tf

from gan_lib import networks


def _generator(noise_dim=16, width=8, seed=0):
  return networks.Generator(noise_dim, width, rng=tf.random.Generator.from_seed(seed))


def _discriminator(width=8, dropout_rate=0.3, seed=0):
  return networks.Discriminator(width, dropout_rate, rng=tf.random.Generator.from_seed(seed))


def test_generator_output_shape_dtype_and_range():
  generator = networks.Generator(noise_dim=100, width=64, rng=tf.random.Generator.from_seed(0))
  noise = tf.random.stateless_normal([5, 100], seed=[1, 2]) * 50.0  # Saturates tanh.
  for training in (True, False):
    images = generator(noise, training=training)
    assert images.shape == (5, 28, 28, 1)
    assert images.dtype == tf.float32
    assert float(tf.reduce_min(images)) >= -1.0
    assert float(tf.reduce_max(images)) <= 1.0


def test_default_widths_match_dcgan_layout():
  generator = networks.Generator(noise_dim=100, width=64, rng=tf.random.Generator.from_seed(0))
  discriminator = networks.Discriminator(width=64, rng=tf.random.Generator.from_seed(0))
  assert generator.project.w.shape == (100, 7 * 7 * 256)
  assert generator.upsample1.w.shape == (5, 5, 128, 256)
  assert generator.upsample2.w.shape == (5, 5, 64, 128)
  assert generator.to_image.w.shape == (5, 5, 1, 64)
  assert discriminator.conv1.w.shape == (5, 5, 1, 64)
  assert discriminator.conv2.w.shape == (5, 5, 64, 128)
  assert discriminator.logit.w.shape == (7 * 7 * 128, 1)


def test_discriminator_returns_one_logit_per_image():
  discriminator = _discriminator()
  images = tf.random.stateless_uniform([3, 28, 28, 1], seed=[0, 1], minval=-1, maxval=1)
  logits = discriminator(images)
  assert logits.shape == (3,)
  assert logits.dtype == tf.float32


def test_batch_norm_training_uses_batch_statistics():
  generator = _generator()
  noise = tf.random.stateless_normal([8, 16], seed=[3, 4])
  before = [v.numpy() for v in (generator.norm1.moving_mean, generator.norm1.moving_variance)]
  generator(noise, training=True)
  after = [v.numpy() for v in (generator.norm1.moving_mean, generator.norm1.moving_variance)]
  assert not np.allclose(before[0], after[0])
  assert not np.allclose(before[1], after[1])

  # In training each image depends on the rest of the batch through the statistics.
  alone = generator(noise[:1], training=True)
  in_batch = generator(noise, training=True)[:1]
  assert not np.allclose(alone.numpy(), in_batch.numpy(), atol=1e-5)


def test_batch_norm_sampling_uses_moving_statistics():
  generator = _generator()
  noise = tf.random.stateless_normal([8, 16], seed=[3, 4])
  moving = generator.norm1.moving_mean.numpy()
  alone = generator(noise[:1], training=False)
  in_batch = generator(noise, training=False)[:1]
  np.testing.assert_allclose(alone.numpy(), in_batch.numpy(), atol=1e-6)
  np.testing.assert_array_equal(generator.norm1.moving_mean.numpy(), moving)


def test_batch_norm_layer_matches_numpy_formula():
  norm = networks.layers.BatchNorm(3, momentum=0.9, epsilon=1e-3)
  x = np.random.default_rng(0).normal(5.0, 2.0, size=(4, 2, 2, 3)).astype(np.float32)
  y = norm(tf.constant(x), training=True).numpy()
  mean = x.reshape(-1, 3).mean(axis=0)
  variance = x.reshape(-1, 3).var(axis=0)
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(variance + 1e-3), atol=1e-4)
  np.testing.assert_allclose(norm.moving_mean.numpy(), 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(norm.moving_variance.numpy(), 0.9 + 0.1 * variance, rtol=1e-5)


def test_dropout_only_in_training():
  discriminator = _discriminator(dropout_rate=0.5)
  images = tf.random.stateless_uniform([4, 28, 28, 1], seed=[5, 6], minval=-1, maxval=1)
  seeds_a = tf.constant([[1, 2], [3, 4]], tf.int64)
  seeds_b = tf.constant([[5, 6], [7, 8]], tf.int64)
  eval_1 = discriminator(images, training=False)
  eval_2 = discriminator(images, training=False)
  np.testing.assert_array_equal(eval_1.numpy(), eval_2.numpy())
  train_a = discriminator(images, training=True, dropout_seeds=seeds_a)
  train_a_again = discriminator(images, training=True, dropout_seeds=seeds_a)
  train_b = discriminator(images, training=True, dropout_seeds=seeds_b)
  np.testing.assert_array_equal(train_a.numpy(), train_a_again.numpy())
  assert not np.allclose(train_a.numpy(), train_b.numpy())
  assert not np.allclose(train_a.numpy(), eval_1.numpy())


def test_training_with_dropout_needs_seeds():
  discriminator = _discriminator()
  with pytest.raises(ValueError, match="dropout_seeds"):
    discriminator(tf.zeros([1, 28, 28, 1]), training=True)


def test_same_seed_gives_same_weights():
  first = _generator(seed=4)
  second = _generator(seed=4)
  other = _generator(seed=5)
  for a, b, c in zip(first.trainable_variables, second.trainable_variables,
                     other.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.array_equal(first.project.w.numpy(), other.project.w.numpy())


@pytest.mark.parametrize("kwargs", [dict(noise_dim=0), dict(width=0)])
def test_generator_rejects_bad_sizes(kwargs):
  with pytest.raises(ValueError, match="at least 1"):
    networks.Generator(**kwargs)


def test_discriminator_rejects_bad_dropout_rate():
  with pytest.raises(ValueError, match=r"dropout_rate must be in \[0, 1\)"):
    networks.Discriminator(dropout_rate=1.0)


def test_bfloat16_compute_keeps_float32_variables():
  generator = _generator()
  images = generator(tf.cast(tf.random.stateless_normal([2, 16], seed=[0, 0]), tf.bfloat16))
  assert images.dtype == tf.float32
  assert all(v.dtype == tf.float32 for v in generator.variables)
