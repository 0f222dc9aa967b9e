"""Small `tf.Module` layers built from `tf.Variable`s and `tf.nn` ops.

Variables are created once, in the constructor, in float32. Each layer casts its
weights to the dtype of its input, so the same module runs in float32 or, under
mixed precision, in bfloat16 or float16 with float32 master weights.

Every variable is created with `tf.VariableAggregation.ONLY_FIRST_REPLICA`: under a
`tf.distribute` strategy all replicas apply the same all-reduced update, so an
assignment in replica context may take the first replica's value.
"""

import math

import tensorflow as tf


def make_variable(initial_value, name, trainable=True):
  """Creates a float32 variable that replicas may assign in replica context."""
  return tf.Variable(
      initial_value,
      name=name,
      trainable=trainable,
      dtype=tf.float32,
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
      synchronization=tf.VariableSynchronization.ON_WRITE,
  )


def glorot_uniform(rng, shape, fan_in, fan_out):
  """Draws Glorot-uniform weights (Glorot and Bengio 2010) from a `tf.random.Generator`."""
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return rng.uniform(shape, minval=-limit, maxval=limit, dtype=tf.float32)


class Dense(tf.Module):
  """A fully connected layer: `x @ w (+ b)`."""

  def __init__(self, input_size, output_size, rng, with_bias=True, name=None):
    """Creates the layer.

    Args:
      input_size: number of input features.
      output_size: number of output features.
      rng: `tf.random.Generator` that draws the initial weights.
      with_bias: whether to add a bias, initialised to zero.
      name: module name.
    """
    super().__init__(name=name)
    self.input_size = input_size
    self.output_size = output_size
    with self.name_scope:
      self.w = make_variable(
          glorot_uniform(rng, [input_size, output_size], input_size, output_size), "w")
      self.b = make_variable(tf.zeros([output_size]), "b") if with_bias else None

  def __call__(self, x):
    """Applies the layer to `x` of shape [B, input_size]; returns [B, output_size]."""
    y = tf.matmul(x, tf.cast(self.w, x.dtype))
    if self.b is not None:
      y = tf.nn.bias_add(y, tf.cast(self.b, x.dtype))
    return y


class Conv2D(tf.Module):
  """A 2-D convolution with SAME padding on NHWC inputs."""

  def __init__(self, input_channels, output_channels, kernel_size, stride, rng,
               with_bias=True, name=None):
    super().__init__(name=name)
    self.stride = stride
    fan_in = kernel_size * kernel_size * input_channels
    fan_out = kernel_size * kernel_size * output_channels
    shape = [kernel_size, kernel_size, input_channels, output_channels]
    with self.name_scope:
      self.w = make_variable(glorot_uniform(rng, shape, fan_in, fan_out), "w")
      self.b = make_variable(tf.zeros([output_channels]), "b") if with_bias else None

  def __call__(self, x):
    """Convolves `x` [B, H, W, C_in]; returns [B, ceil(H/stride), ceil(W/stride), C_out]."""
    y = tf.nn.conv2d(x, tf.cast(self.w, x.dtype), strides=self.stride, padding="SAME")
    if self.b is not None:
      y = tf.nn.bias_add(y, tf.cast(self.b, x.dtype))
    return y


class Conv2DTranspose(tf.Module):
  """A 2-D transposed convolution with SAME padding: upsamples by `stride`."""

  def __init__(self, input_channels, output_channels, kernel_size, stride, rng,
               with_bias=True, name=None):
    super().__init__(name=name)
    self.stride = stride
    self.output_channels = output_channels
    # A transposed convolution's kernel is laid out [h, w, out, in]; the fans follow
    # the forward convolution it is the gradient of.
    fan_in = kernel_size * kernel_size * output_channels
    fan_out = kernel_size * kernel_size * input_channels
    shape = [kernel_size, kernel_size, output_channels, input_channels]
    with self.name_scope:
      self.w = make_variable(glorot_uniform(rng, shape, fan_in, fan_out), "w")
      self.b = make_variable(tf.zeros([output_channels]), "b") if with_bias else None

  def __call__(self, x):
    """Upsamples `x` [B, H, W, C_in]; returns [B, H*stride, W*stride, C_out]."""
    batch = tf.shape(x)[0]
    height, width = x.shape[1], x.shape[2]
    output_shape = tf.stack(
        [batch, height * self.stride, width * self.stride, self.output_channels])
    y = tf.nn.conv2d_transpose(
        x, tf.cast(self.w, x.dtype), output_shape, strides=self.stride, padding="SAME")
    # conv2d_transpose loses the static batch size; restore the known dimensions.
    y = tf.ensure_shape(
        y, [x.shape[0], height * self.stride, width * self.stride, self.output_channels])
    if self.b is not None:
      y = tf.nn.bias_add(y, tf.cast(self.b, x.dtype))
    return y


class BatchNorm(tf.Module):
  """Batch normalisation (Ioffe and Szegedy 2015) over all axes but the last.

  In training it normalises with the batch statistics and updates exponential
  moving averages of them; at sampling time it uses the moving averages. Under a
  `tf.distribute` strategy with several replicas the batch statistics are summed
  over all replicas first (synchronised batch norm), so the result does not
  depend on how the global batch was split.
  """

  def __init__(self, num_features, momentum=0.99, epsilon=1e-3, name=None):
    super().__init__(name=name)
    self.momentum = momentum
    self.epsilon = epsilon
    with self.name_scope:
      self.scale = make_variable(tf.ones([num_features]), "scale")
      self.offset = make_variable(tf.zeros([num_features]), "offset")
      self.moving_mean = make_variable(tf.zeros([num_features]), "moving_mean", trainable=False)
      self.moving_variance = make_variable(
          tf.ones([num_features]), "moving_variance", trainable=False)

  def _batch_moments(self, x):
    """Returns the mean and biased variance of `x` (float32) over the global batch.

    Two passes (mean, then squared deviations) keep the variance accurate when the
    mean is large compared with the spread.
    """
    axes = list(range(len(x.shape) - 1))
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
      return tf.nn.moments(x, axes=axes)
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
    count, total = context.all_reduce(
        tf.distribute.ReduceOp.SUM, [count, tf.reduce_sum(x, axis=axes)])
    mean = total / count
    squared_deviations = context.all_reduce(
        tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.square(x - mean), axis=axes))
    return mean, squared_deviations / count

  def __call__(self, x, training):
    """Normalises `x` [..., num_features]; returns the same shape and dtype."""
    input_dtype = x.dtype
    x = tf.cast(x, tf.float32)
    if training:
      mean, variance = self._batch_moments(x)
      self.moving_mean.assign(self.momentum * self.moving_mean + (1.0 - self.momentum) * mean)
      self.moving_variance.assign(
          self.momentum * self.moving_variance + (1.0 - self.momentum) * variance)
    else:
      mean, variance = self.moving_mean, self.moving_variance
    y = tf.nn.batch_normalization(
        x, mean, variance, self.offset, self.scale, self.epsilon)
    return tf.cast(y, input_dtype)
