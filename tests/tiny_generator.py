"""A tiny generator module shared by the evaluator and evaluate.py tests."""

import tensorflow as tf


class TinyGenerator(tf.Module):
  """A one-layer generator: tanh(noise @ w) reshaped to [N, 28, 28, 1]."""

  def __init__(self, noise_dim=4):
    super().__init__()
    self.noise_dim = noise_dim
    self.w = tf.Variable(tf.random.stateless_normal([noise_dim, 784], seed=[1, 2]))

  def __call__(self, noise, training=False):
    del training
    return tf.reshape(tf.tanh(noise @ self.w), [-1, 28, 28, 1])
