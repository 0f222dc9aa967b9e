"""DCGAN generator and discriminator for 28x28x1 images (Radford et al. 2015)."""

import tensorflow as tf

from gan_lib import layers

IMAGE_SHAPE = (28, 28, 1)


class Generator(tf.Module):
  """Maps noise [B, noise_dim] to images [B, 28, 28, 1] in [-1, 1].

  dense -> batch norm -> leaky ReLU -> reshape 7x7x(4*width) -> transposed conv
  2*width (5x5, stride 1) -> BN -> leaky ReLU -> transposed conv width (5x5,
  stride 2) -> BN -> leaky ReLU -> transposed conv 1 (5x5, stride 2) -> tanh.
  """

  def __init__(self, noise_dim=100, width=64, leaky_relu_alpha=0.2, rng=None, name="generator"):
    """Creates the generator's variables.

    Args:
      noise_dim: size of the noise vector, at least 1.
      width: channels of the last hidden layer; the earlier ones have 2x and 4x.
      leaky_relu_alpha: slope of the leaky ReLU for negative inputs.
      rng: `tf.random.Generator` for the initial weights; a fresh non-deterministic
        one if None.
      name: module name.
    """
    super().__init__(name=name)
    if noise_dim < 1 or width < 1:
      raise ValueError(f"noise_dim and width must be at least 1, got {noise_dim} and {width}")
    rng = rng or tf.random.Generator.from_non_deterministic_state()
    self.noise_dim = noise_dim
    self.width = width
    self.leaky_relu_alpha = leaky_relu_alpha
    self._seed_channels = 4 * width
    with self.name_scope:
      self.project = layers.Dense(
          noise_dim, 7 * 7 * self._seed_channels, rng, with_bias=False, name="project")
      self.project_norm = layers.BatchNorm(self._seed_channels, name="project_norm")
      self.upsample1 = layers.Conv2DTranspose(
          4 * width, 2 * width, 5, 1, rng, with_bias=False, name="upsample1")
      self.norm1 = layers.BatchNorm(2 * width, name="norm1")
      self.upsample2 = layers.Conv2DTranspose(
          2 * width, width, 5, 2, rng, with_bias=False, name="upsample2")
      self.norm2 = layers.BatchNorm(width, name="norm2")
      self.to_image = layers.Conv2DTranspose(
          width, IMAGE_SHAPE[-1], 5, 2, rng, with_bias=False, name="to_image")

  def __call__(self, noise, training=False):
    """Generates images.

    Args:
      noise: [B, noise_dim] float tensor. Its dtype is the compute dtype (float32,
        or bfloat16/float16 under mixed precision).
      training: True to normalise with batch statistics and update the moving
        averages; False (sampling) to use the moving averages.

    Returns:
      float32 images [B, 28, 28, 1] in [-1, 1].
    """
    alpha = self.leaky_relu_alpha
    x = self.project(noise)
    x = tf.reshape(x, [-1, 7, 7, self._seed_channels])
    x = tf.nn.leaky_relu(self.project_norm(x, training), alpha)

    x = tf.nn.leaky_relu(self.norm1(self.upsample1(x), training), alpha)
    x = tf.nn.leaky_relu(self.norm2(self.upsample2(x), training), alpha)
    x = self.to_image(x)
    return tf.tanh(tf.cast(x, tf.float32))


class Discriminator(tf.Module):
  """Maps images [B, 28, 28, 1] in [-1, 1] to one real-vs-fake logit each.

  conv width (5x5, stride 2) -> leaky ReLU -> dropout -> conv 2*width (5x5,
  stride 2) -> leaky ReLU -> dropout -> dense to one logit.
  """

  def __init__(self, width=64, dropout_rate=0.3, leaky_relu_alpha=0.2, rng=None,
               name="discriminator"):
    """Creates the discriminator's variables.

    Args:
      width: channels of the first convolution; the second has 2x.
      dropout_rate: fraction of activations dropped in training, in [0, 1).
      leaky_relu_alpha: slope of the leaky ReLU for negative inputs.
      rng: `tf.random.Generator` for the initial weights; a fresh non-deterministic
        one if None.
      name: module name.
    """
    super().__init__(name=name)
    if width < 1:
      raise ValueError(f"width must be at least 1, got {width}")
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    rng = rng or tf.random.Generator.from_non_deterministic_state()
    self.dropout_rate = dropout_rate
    self.leaky_relu_alpha = leaky_relu_alpha
    with self.name_scope:
      self.conv1 = layers.Conv2D(IMAGE_SHAPE[-1], width, 5, 2, rng, name="conv1")
      self.conv2 = layers.Conv2D(width, 2 * width, 5, 2, rng, name="conv2")
      self.logit = layers.Dense(7 * 7 * 2 * width, 1, rng, name="logit")

  def _dropout(self, x, seed):
    if seed is None or self.dropout_rate == 0.0:
      return x
    return tf.nn.experimental.stateless_dropout(x, self.dropout_rate, seed=seed)

  def __call__(self, images, training=False, dropout_seeds=None):
    """Scores images.

    Args:
      images: [B, 28, 28, 1] in [-1, 1], in the compute dtype.
      training: True to apply dropout, which then needs `dropout_seeds`.
      dropout_seeds: int64 [2, 2] stateless seeds, one column per dropout layer,
        drawn from the trainer's `tf.random.Generator`, so a run is reproducible.

    Returns:
      float32 logits [B], positive for "real".
    """
    if training and dropout_seeds is None and self.dropout_rate > 0.0:
      raise ValueError("training=True with dropout needs dropout_seeds, an int64 [2, 2] tensor")
    seed1 = dropout_seeds[:, 0] if training and dropout_seeds is not None else None
    seed2 = dropout_seeds[:, 1] if training and dropout_seeds is not None else None
    alpha = self.leaky_relu_alpha

    x = self._dropout(tf.nn.leaky_relu(self.conv1(images), alpha), seed1)
    x = self._dropout(tf.nn.leaky_relu(self.conv2(x), alpha), seed2)
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.cast(tf.squeeze(self.logit(x), axis=-1), tf.float32)
