"""Tests of the Adam module against a float64 numpy reference."""

import numpy as np
import pytest
import tensorflow as tf

from gan_lib import optimizers


def _numpy_adam(value, gradients, learning_rate, beta1, beta2, epsilon):
  m = np.zeros_like(value)
  v = np.zeros_like(value)
  for t, gradient in enumerate(gradients, start=1):
    m = beta1 * m + (1 - beta1) * gradient
    v = beta2 * v + (1 - beta2) * gradient**2
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    # The module adds epsilon to sqrt(v) before the bias correction of v (the
    # efficient form at the end of section 2 of Kingma and Ba), which equals
    # epsilon / sqrt(1 - beta2^t) added to sqrt(v_hat).
    value = value - learning_rate * m_hat / (np.sqrt(v_hat) + epsilon / np.sqrt(1 - beta2**t))
  return value


def test_adam_matches_numpy_reference():
  rng = np.random.default_rng(0)
  initial = rng.normal(size=(3, 4))
  gradients = [rng.normal(size=(3, 4)) for _ in range(5)]
  variable = tf.Variable(initial, dtype=tf.float32)
  # A large epsilon makes the test sensitive to where epsilon enters the formula.
  adam = optimizers.Adam([variable], learning_rate=0.01, beta1=0.5, beta2=0.9, epsilon=0.1)
  for gradient in gradients:
    adam.apply([tf.constant(gradient, tf.float32)])
  expected = _numpy_adam(initial, gradients, 0.01, 0.5, 0.9, 0.1)
  np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6)
  assert int(adam.iterations) == 5


def test_adam_rejects_out_of_range_settings():
  variable = tf.Variable([1.0])
  with pytest.raises(ValueError, match=r"learning_rate must be in \(0, 1\)"):
    optimizers.Adam([variable], learning_rate=0.0)
  with pytest.raises(ValueError, match=r"beta1 must be in \[0, 1\)"):
    optimizers.Adam([variable], learning_rate=0.1, beta1=1.0)


def test_adam_rejects_wrong_gradient_count():
  adam = optimizers.Adam([tf.Variable([1.0])], learning_rate=0.1)
  with pytest.raises(ValueError, match="2 gradients for 1 variables"):
    adam.apply([tf.constant([1.0]), tf.constant([1.0])])
