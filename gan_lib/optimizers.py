"""Adam as a `tf.Module`, so its slots checkpoint beside the networks."""

import tensorflow as tf

from gan_lib import layers


class Adam(tf.Module):
  """Adam (Kingma and Ba 2014) for a fixed list of float32 variables.

  The learning rate is a variable, so training can lower it (for example after
  rolling back from a NaN) and a checkpoint restores it.
  """

  def __init__(self, variables, learning_rate, beta1=0.5, beta2=0.999, epsilon=1e-7, name=None):
    """Creates the moment slots, one pair per variable.

    Args:
      variables: the trainable variables this optimizer updates, in a fixed order.
      learning_rate: step size in (0, 1).
      beta1: decay of the first-moment average, in [0, 1).
      beta2: decay of the second-moment average, in [0, 1).
      epsilon: added to the root of the second moment for stability.
      name: module name.
    """
    super().__init__(name=name)
    if not 0.0 < learning_rate < 1.0:
      raise ValueError(f"learning_rate must be in (0, 1), got {learning_rate}")
    for label, beta in (("beta1", beta1), ("beta2", beta2)):
      if not 0.0 <= beta < 1.0:
        raise ValueError(f"{label} must be in [0, 1), got {beta}")
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self._variables = list(variables)
    with self.name_scope:
      self.learning_rate = layers.make_variable(learning_rate, "learning_rate", trainable=False)
      self.iterations = tf.Variable(
          0, dtype=tf.int64, trainable=False, name="iterations",
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.first_moments = [
          layers.make_variable(tf.zeros_like(v), f"m{i}", trainable=False)
          for i, v in enumerate(self._variables)]
      self.second_moments = [
          layers.make_variable(tf.zeros_like(v), f"v{i}", trainable=False)
          for i, v in enumerate(self._variables)]

  def apply(self, gradients):
    """Applies one update; `gradients` are float32 and in the order of the variables."""
    if len(gradients) != len(self._variables):
      raise ValueError(
          f"got {len(gradients)} gradients for {len(self._variables)} variables")
    step = tf.cast(self.iterations + 1, tf.float32)
    # Bias corrections of both moments folded into the step size.
    corrected_rate = (self.learning_rate * tf.sqrt(1.0 - tf.pow(self.beta2, step))
                      / (1.0 - tf.pow(self.beta1, step)))
    for variable, gradient, m, v in zip(
        self._variables, gradients, self.first_moments, self.second_moments):
      gradient = tf.cast(gradient, tf.float32)
      m.assign(self.beta1 * m + (1.0 - self.beta1) * gradient)
      v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(gradient))
      variable.assign_sub(corrected_rate * m / (tf.sqrt(v) + self.epsilon))
    self.iterations.assign_add(1)
