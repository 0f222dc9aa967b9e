"""The GAN state and its compiled train step.

The step is a function of (state, batch): everything it reads or changes lives in
`tf.Variable`s of `GanModel`, so it can be traced once, checkpointed, and run
under a `tf.distribute` strategy.
"""

import numpy as np
import tensorflow as tf

from gan_lib import losses
from gan_lib import networks
from gan_lib import optimizers

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def compute_dtype_for(precision):
  """Returns the compute dtype for a precision name in `PRECISIONS`."""
  dtypes = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}
  if precision not in dtypes:
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
  return dtypes[precision]


class GanModel(tf.Module):
  """Both networks, both Adam optimizers, the random generator and the counters."""

  def __init__(self, noise_dim=100, width=64, learning_rate=2e-4, beta1=0.5, beta2=0.999,
               dropout_rate=0.3, seed=0, ema_decay=0.999, name="gan"):
    """Creates every variable the train step uses, initialised from `seed`.

    Args:
      noise_dim: size of the generator's noise vector, at least 1.
      width: channel width of both networks (see `networks`).
      learning_rate: Adam step size of both networks, in (0, 1).
      beta1: Adam first-moment decay, in [0, 1).
      beta2: Adam second-moment decay, in [0, 1).
      dropout_rate: the discriminator's dropout rate, in [0, 1).
      seed: integer; the same seed gives the same weights and the same random
        noise and dropout masks in training.
      ema_decay: decay of the exponential moving average of the generator's
        variables kept in `ema_generator`, in [0, 1); None keeps no average.
      name: module name.
    """
    super().__init__(name=name)
    self.noise_dim = noise_dim
    init_rng = tf.random.Generator.from_seed(seed)
    with self.name_scope:
      self.generator = networks.Generator(noise_dim, width, rng=init_rng)
      self.discriminator = networks.Discriminator(width, dropout_rate, rng=init_rng)
      self.generator_optimizer = optimizers.Adam(
          self.generator.trainable_variables, learning_rate, beta1, beta2,
          name="generator_optimizer")
      self.discriminator_optimizer = optimizers.Adam(
          self.discriminator.trainable_variables, learning_rate, beta1, beta2,
          name="discriminator_optimizer")
      # Draws the training noise and dropout seeds; its state is checkpointed, so a
      # resumed run draws the same numbers as an uninterrupted one.
      self.rng = init_rng.split(1)[0]
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      self.ema_decay = ema_decay
      self.ema_generator = None
      if ema_decay is not None:
        if not 0.0 <= ema_decay < 1.0:
          raise ValueError(f"ema_decay must be in [0, 1) or None, got {ema_decay}")
        # Same shapes as the generator; its initial values are overwritten with
        # copies of the generator's below.
        self.ema_generator = networks.Generator(
            noise_dim, width, rng=tf.random.Generator.from_seed(seed), name="ema_generator")
        for average, variable in zip(self.ema_generator.variables, self.generator.variables):
          average.assign(variable)

  def update_ema(self):
    """Moves the averaged generator towards the generator after an update.

    The decay ramps up as min(ema_decay, (1 + step) / (10 + step)), as in
    `tf.train.ExponentialMovingAverage` with `num_updates`, so early averages are
    not dominated by the random initial weights. Batch-norm moving statistics
    are averaged too.
    """
    if self.ema_generator is None:
      return
    step = tf.cast(self.step, tf.float32)
    decay = tf.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
    for average, variable in zip(self.ema_generator.variables, self.generator.variables):
      average.assign(decay * average + (1.0 - decay) * variable)

  def checkpoint_items(self):
    """Returns the objects a `tf.train.Checkpoint` needs to resume training exactly."""
    items = dict(
        generator=self.generator,
        discriminator=self.discriminator,
        generator_optimizer=self.generator_optimizer,
        discriminator_optimizer=self.discriminator_optimizer,
        rng=self.rng,
        step=self.step,
    )
    if self.ema_generator is not None:
      items["ema_generator"] = self.ema_generator
    return items

  def checked_variables(self):
    """Returns the float variables a step updates: both networks, their Adam slots, the average.

    The integer counters and the random generator's state cannot hold NaN or
    Inf, so they are left out.
    """
    return [variable for variable in self.variables if variable.dtype.is_floating]

  def non_finite_variables(self):
    """Returns the names of the checked variables that hold a NaN or Inf, grouped by owner.

    The groups are the keys of `checkpoint_items` (`generator`,
    `generator_optimizer`, `ema_generator` and so on). An optimizer's group
    contains its own variables only (learning rate and moment slots), not the
    network's. It reads every variable eagerly, so it is meant for explaining
    a failure, not for every step.
    """
    groups = {}
    seen = set()
    for owner, item in self.checkpoint_items().items():
      if not isinstance(item, tf.Module):
        continue
      names = []
      for variable in item.variables:
        if id(variable) in seen or not variable.dtype.is_floating:
          continue
        seen.add(id(variable))
        if not np.all(np.isfinite(variable.numpy())):
          names.append(variable.name)
      if names:
        groups[owner] = names
    return groups


def all_finite(variables):
  """Returns a scalar bool tensor: whether every element of every variable is finite."""
  return tf.reduce_all(
      tf.stack([tf.reduce_all(tf.math.is_finite(variable)) for variable in variables]))


def replica_train_step(model, real_images, noise, dropout_seeds, global_batch_size, compute_dtype):
  """Updates both networks once on one replica's share of the global batch.

  Both networks see the same generated batch: one forward pass, two gradient
  computations, then the discriminator and generator updates. Losses are summed
  over this replica's examples and divided by the global batch size, and the
  gradients are summed over replicas, so the update equals the one-device update
  on the whole global batch.

  Args:
    model: the `GanModel` to update.
    real_images: [B, 28, 28, 1] float32 in [-1, 1].
    noise: [B, noise_dim] float32 standard normal noise.
    dropout_seeds: int64 [2, 2] stateless seeds for the discriminator's dropout.
    global_batch_size: number of examples over all replicas.
    compute_dtype: dtype of the forward and backward pass; variables stay float32.

  Returns:
    A dict of float32 scalars: `discriminator_loss`, `generator_loss` (this
    replica's share of the global mean), `real_logit_mean`, `fake_logit_mean`
    (also scaled to the global mean), and `discriminator_gradient_norm`,
    `generator_gradient_norm`.
  """
  generator = model.generator
  discriminator = model.discriminator
  real_images = tf.cast(real_images, compute_dtype)
  noise = tf.cast(noise, compute_dtype)

  with tf.GradientTape(persistent=True) as tape:
    fake_images = tf.cast(generator(noise, training=True), compute_dtype)
    real_logits = discriminator(real_images, training=True, dropout_seeds=dropout_seeds)
    fake_logits = discriminator(fake_images, training=True, dropout_seeds=dropout_seeds)
    discriminator_loss = tf.nn.compute_average_loss(
        losses.discriminator_loss(real_logits, fake_logits), global_batch_size=global_batch_size)
    generator_loss = tf.nn.compute_average_loss(
        losses.generator_loss(fake_logits), global_batch_size=global_batch_size)

  discriminator_gradients = tape.gradient(
      discriminator_loss, discriminator.trainable_variables)
  generator_gradients = tape.gradient(generator_loss, generator.trainable_variables)
  del tape
  context = tf.distribute.get_replica_context()
  if context is not None and context.num_replicas_in_sync > 1:
    discriminator_gradients = context.all_reduce(
        tf.distribute.ReduceOp.SUM, discriminator_gradients)
    generator_gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, generator_gradients)

  model.discriminator_optimizer.apply(discriminator_gradients)
  model.generator_optimizer.apply(generator_gradients)
  return dict(
      discriminator_loss=discriminator_loss,
      generator_loss=generator_loss,
      real_logit_mean=tf.nn.compute_average_loss(real_logits, global_batch_size=global_batch_size),
      fake_logit_mean=tf.nn.compute_average_loss(fake_logits, global_batch_size=global_batch_size),
      discriminator_gradient_norm=tf.linalg.global_norm(discriminator_gradients),
      generator_gradient_norm=tf.linalg.global_norm(generator_gradients),
  )


def _replica_dropout_seeds(dropout_seeds, replica_id):
  """Folds the replica id into each seed, so replicas draw independent dropout masks."""
  columns = [tf.random.experimental.stateless_fold_in(dropout_seeds[:, i], replica_id)
             for i in range(dropout_seeds.shape[1])]
  return tf.stack(columns, axis=1)


def make_train_step(model, global_batch_size, precision="float32", jit_compile=False,
                    strategy=None):
  """Builds the compiled train step for `model`.

  The noise [global_batch_size, noise_dim] and the dropout seeds are drawn once
  per step from `model.rng` in cross-replica context, where every replica's copy
  of the generator state gives the same numbers as one device would draw. Each
  replica then takes the noise rows of its slice of the global batch, so with
  dropout off the update does not depend on the number of replicas beyond
  floating-point rounding. With dropout on, each replica folds its id into the
  dropout seeds.

  Args:
    model: a `GanModel`, created under `strategy.scope()`.
    global_batch_size: images per step over all replicas; a multiple of the
      number of replicas.
    precision: one of `PRECISIONS`; the mixed ones compute in bfloat16 or float16
      and keep variables, losses and optimizer state in float32.
    jit_compile: whether to compile the step with XLA; only with one replica.
    strategy: the `tf.distribute.Strategy` to run under; None for the current one.

  Returns:
    A `tf.function` mapping real images to the dict of metrics described in
    `replica_train_step`, summed over replicas (the gradient norms, equal on all
    replicas, are averaged), plus `variables_finite`: a scalar bool that is
    False when any variable of `model.checked_variables()` holds a NaN or Inf
    after the update. With one replica the images are a float32 tensor
    [global_batch_size, 28, 28, 1] in [-1, 1]. With several they are the
    per-replica batches of `distribute.distribute_batches`, where replica r
    receives rows [r * B / R, (r + 1) * B / R) of the global batch. It is traced
    once per input shape, and `experimental_get_tracing_count()` counts traces.
  """
  compute_dtype = compute_dtype_for(precision)
  if precision == "mixed_float16":
    # NOTE: float16 needs loss scaling to keep small gradients from flushing to
    # zero; it is not implemented, so only bfloat16 is a safe mixed mode.
    raise NotImplementedError("mixed_float16 needs loss scaling, which is not implemented")
  strategy = strategy or tf.distribute.get_strategy()
  num_replicas = strategy.num_replicas_in_sync
  if global_batch_size % num_replicas:
    raise ValueError(f"global batch size {global_batch_size} is not a multiple of the "
                     f"{num_replicas} replicas")
  if jit_compile and num_replicas > 1:
    # NOTE: XLA compiles the step for one device. MirroredStrategy can compile
    # the per-replica part on GPUs only (TF 2.21 needs merge_call elsewhere),
    # and that path is not tested here.
    raise ValueError(f"jit_compile needs a single replica, got {num_replicas}")
  replica_batch_size = global_batch_size // num_replicas
  noise_dim = model.noise_dim
  checked_variables = model.checked_variables()

  def replica_step(real_images, noise, dropout_seeds):
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    start = replica_id * replica_batch_size
    noise = noise[start:start + replica_batch_size]
    if num_replicas > 1:
      dropout_seeds = _replica_dropout_seeds(dropout_seeds, replica_id)
    return replica_train_step(
        model, real_images, noise, dropout_seeds, global_batch_size, compute_dtype)

  def train_step(real_images):
    noise = model.rng.normal([global_batch_size, noise_dim])
    dropout_seeds = model.rng.make_seeds(2)
    replica_metrics = strategy.run(replica_step, args=(real_images, noise, dropout_seeds))
    metrics = {}
    for name, value in replica_metrics.items():
      operation = (tf.distribute.ReduceOp.MEAN if name.endswith("gradient_norm")
                   else tf.distribute.ReduceOp.SUM)
      metrics[name] = strategy.reduce(operation, value, axis=None)
    model.step.assign_add(1)
    model.update_ema()
    # One reduced bool, so the loop learns in the same step when an update left a
    # NaN or Inf in a weight, a slot or the average even while the losses are finite.
    metrics["variables_finite"] = all_finite(checked_variables)
    return metrics

  return tf.function(train_step, jit_compile=jit_compile)
