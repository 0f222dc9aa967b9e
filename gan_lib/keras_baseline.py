"""The benchmark baseline: the same DCGAN written the stock way with Keras layers.

`examples/benchmark.py` compares the speed of `gan_lib`'s train step with this
one. The models have the layer sizes of `gan_lib.networks` and Keras' default
Glorot-uniform initialisation, and train with Keras' Adam and
`BinaryCrossentropy`. The `tf.function` step does the same work as
`gan_lib.train_step`: one generator pass, the discriminator on the real and the
generated batch, and one update of each network. Nothing else in the library
uses this module.
"""

import keras
import tensorflow as tf

BASELINE_PRECISIONS = ("float32", "mixed_bfloat16")


def build_generator(noise_dim=100, width=64):
  """Builds the generator as a `keras.Sequential`: noise [B, noise_dim] -> [B, 28, 28, 1]."""
  layers = keras.layers
  return keras.Sequential([
      keras.Input(shape=(noise_dim,)),
      layers.Dense(7 * 7 * 4 * width, use_bias=False),
      layers.BatchNormalization(),
      layers.LeakyReLU(negative_slope=0.2),
      layers.Reshape((7, 7, 4 * width)),
      layers.Conv2DTranspose(2 * width, 5, strides=1, padding="same", use_bias=False),
      layers.BatchNormalization(),
      layers.LeakyReLU(negative_slope=0.2),
      layers.Conv2DTranspose(width, 5, strides=2, padding="same", use_bias=False),
      layers.BatchNormalization(),
      layers.LeakyReLU(negative_slope=0.2),
      layers.Conv2DTranspose(1, 5, strides=2, padding="same", use_bias=False,
                             activation="tanh"),
  ], name="baseline_generator")


def build_discriminator(width=64, dropout_rate=0.3):
  """Builds the discriminator as a `keras.Sequential`: images [B, 28, 28, 1] -> logits [B, 1]."""
  layers = keras.layers
  return keras.Sequential([
      keras.Input(shape=(28, 28, 1)),
      layers.Conv2D(width, 5, strides=2, padding="same"),
      layers.LeakyReLU(negative_slope=0.2),
      layers.Dropout(dropout_rate),
      layers.Conv2D(2 * width, 5, strides=2, padding="same"),
      layers.LeakyReLU(negative_slope=0.2),
      layers.Dropout(dropout_rate),
      layers.Flatten(),
      # Keeps the logits and the loss in float32 under mixed precision. Under float32
      # the argument changes nothing.
      layers.Dense(1, dtype="float32"),
  ], name="baseline_discriminator")


class KerasBaselineGan:
  """Both Keras models, their Adam optimizers and the loss of the benchmark baseline."""

  def __init__(self, noise_dim=100, width=64, dropout_rate=0.3, learning_rate=2e-4, beta1=0.5,
               precision="float32"):
    """Builds the models and optimizers.

    Args:
      noise_dim: size of the generator's noise vector.
      width: channel width of both networks, as in `gan_lib.networks`.
      dropout_rate: the discriminator's dropout rate.
      learning_rate: Adam step size of both networks.
      beta1: Adam first-moment decay.
      precision: "float32", or "mixed_bfloat16" to build the models under the Keras
        global policy of that name. The previous global policy is restored afterwards.
    """
    if precision not in BASELINE_PRECISIONS:
      raise ValueError(f"precision must be one of {BASELINE_PRECISIONS}, got {precision!r}")
    self.noise_dim = noise_dim
    self.precision = precision
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
      self.generator = build_generator(noise_dim, width)
      self.discriminator = build_discriminator(width, dropout_rate)
    finally:
      keras.mixed_precision.set_global_policy(previous_policy)
    self.generator_optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta1)
    self.discriminator_optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta1)
    # Creating the optimizer slots here keeps variable creation out of the traced step.
    self.generator_optimizer.build(self.generator.trainable_variables)
    self.discriminator_optimizer.build(self.discriminator.trainable_variables)
    self.cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)

  def make_train_step(self, batch_size):
    """Builds the baseline's train step for batches of `batch_size` images.

    Returns:
      A `tf.function` mapping real images [batch_size, 28, 28, 1] float32 in
      [-1, 1] to a dict of float32 scalars `discriminator_loss` and
      `generator_loss`, the same keys `gan_lib.train_step` returns them under.
    """
    generator = self.generator
    discriminator = self.discriminator
    cross_entropy = self.cross_entropy

    def train_step(real_images):
      noise = tf.random.normal([batch_size, self.noise_dim])
      with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
        fake_images = generator(noise, training=True)
        real_logits = discriminator(real_images, training=True)
        fake_logits = discriminator(fake_images, training=True)
        generator_loss = cross_entropy(tf.ones_like(fake_logits), fake_logits)
        discriminator_loss = (cross_entropy(tf.ones_like(real_logits), real_logits)
                              + cross_entropy(tf.zeros_like(fake_logits), fake_logits))
      generator_gradients = generator_tape.gradient(
          generator_loss, generator.trainable_variables)
      discriminator_gradients = discriminator_tape.gradient(
          discriminator_loss, discriminator.trainable_variables)
      self.generator_optimizer.apply_gradients(
          zip(generator_gradients, generator.trainable_variables))
      self.discriminator_optimizer.apply_gradients(
          zip(discriminator_gradients, discriminator.trainable_variables))
      return dict(discriminator_loss=tf.cast(discriminator_loss, tf.float32),
                  generator_loss=tf.cast(generator_loss, tf.float32))

    return tf.function(train_step)
