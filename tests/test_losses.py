"""Tests of the GAN losses against the cross-entropy formula in float64 numpy."""

import numpy as np
import tensorflow as tf

from gan_lib import losses


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_discriminator_loss_matches_cross_entropy():
  real = np.array([-3.0, -0.5, 0.0, 2.0, 8.0])
  fake = np.array([1.0, -2.0, 0.3, -7.0, 0.0])
  expected = -np.log(_sigmoid(real)) - np.log(1.0 - _sigmoid(fake))
  got = losses.discriminator_loss(tf.constant(real, tf.float32), tf.constant(fake, tf.float32))
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_generator_loss_is_non_saturating():
  fake = np.array([-5.0, -1.0, 0.0, 1.0, 4.0])
  got = losses.generator_loss(tf.constant(fake, tf.float32))
  np.testing.assert_allclose(got.numpy(), -np.log(_sigmoid(fake)), rtol=1e-5)


def test_losses_stay_finite_for_extreme_logits():
  extreme = tf.constant([-1e4, 1e4], tf.float32)
  assert np.all(np.isfinite(losses.discriminator_loss(extreme, extreme).numpy()))
  assert np.all(np.isfinite(losses.generator_loss(extreme).numpy()))


def test_losses_accept_bfloat16_and_return_float32():
  logits = tf.constant([0.5, -0.5], tf.bfloat16)
  assert losses.discriminator_loss(logits, logits).dtype == tf.float32
  assert losses.generator_loss(logits).dtype == tf.float32
