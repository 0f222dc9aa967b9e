"""GAN losses from logits, per example, so a caller can average over the global batch."""

import tensorflow as tf


def discriminator_loss(real_logits, fake_logits):
  """Computes the discriminator's cross-entropy loss (Goodfellow et al. 2014).

  loss = -log sigmoid(real_logits) - log(1 - sigmoid(fake_logits))
       = softplus(-real_logits) + softplus(fake_logits)

  Args:
    real_logits: float [B] logits of real images.
    fake_logits: float [B] logits of generated images.

  Returns:
    float32 [B], one loss per example, >= 0.
  """
  real_logits = tf.cast(real_logits, tf.float32)
  fake_logits = tf.cast(fake_logits, tf.float32)
  return tf.nn.softplus(-real_logits) + tf.nn.softplus(fake_logits)


def generator_loss(fake_logits):
  """Computes the non-saturating generator loss (Goodfellow et al. 2014, section 3).

  loss = -log sigmoid(fake_logits) = softplus(-fake_logits). Its gradient stays
  large while the discriminator rejects the samples, unlike log(1 - D(G(z))).

  Args:
    fake_logits: float [B] logits of generated images.

  Returns:
    float32 [B], one loss per example, >= 0.
  """
  return tf.nn.softplus(-tf.cast(fake_logits, tf.float32))
