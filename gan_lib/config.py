"""Training configuration and its validation.

Field names match the flags of `examples/train_gan.py`, so an error can name the
flag to fix.
"""

import dataclasses
import json
import os
import tempfile
from typing import Optional

JIT_COMPILE_CHOICES = ("auto", "true", "false")
PRECISION_CHOICES = ("auto", "float32", "mixed_bfloat16")
# The names `gan_lib.distribute.make_strategy` accepts; kept here so that
# validating a configuration does not import TensorFlow.
STRATEGY_CHOICES = ("default", "mirrored", "multi_worker")
ON_NON_FINITE_CHOICES = ("stop", "rollback")
# The evaluator's minimum (`metrics.evaluator.MIN_SAMPLES`): the Inception Score
# needs one image in each of its 10 splits.
MIN_EVAL_SAMPLES = 10


class ConfigError(ValueError):
  """A configuration value that is out of range; the message names the flag."""


@dataclasses.dataclass
class TrainConfig:
  """Everything that defines a training run.

  Attributes:
    output_dir: folder for checkpoints, samples, logs and the SavedModel; a run
      resumes from the checkpoint it finds there.
    epochs: passes over the training split, or epochs of `examples_per_epoch`
      images each when that is set.
    batch_size: images per train step.
    noise_dim: size of the generator's noise vector.
    learning_rate: Adam step size of both networks, in (0, 1).
    beta1: Adam first-moment decay, in [0, 1).
    beta2: Adam second-moment decay, in [0, 1).
    width: channel width of both networks.
    seed: seed of the weights, noise, dropout and shuffle order.
    precision: "float32", "mixed_bfloat16", or "auto" for the faster one that the
      device supports.
    jit_compile: "true", "false", or "auto" (XLA on GPUs with one replica only).
    strategy: "default" (one device), "mirrored" (all local GPUs, or all logical
      CPUs without a GPU) or "multi_worker" (the processes `TF_CONFIG` lists).
      `batch_size` stays the global batch, split evenly between replicas.
    checkpoint_every: steps between checkpoints, besides one at every epoch end;
      0 saves at epoch ends only.
    max_steps: stop after this many steps in total (None: run all epochs).
    examples_per_epoch: images in one epoch (None: the whole training split). A
      shorter epoch takes the first `examples_per_epoch // batch_size` batches of
      that epoch's shuffled order, so samples, evaluations, checkpoints and the
      pruning of search trials come more often. Each epoch still draws from
      all the images.
    keep_checkpoints: how many recent checkpoints to keep.
    summary_every: steps between TensorBoard loss summaries.
    eval_every: epochs between evaluations (Inception Score, Frechet distance
      and the rest against the MNIST test split); 0 turns evaluation off. The
      last epoch is always evaluated when this is not 0.
    eval_samples: generated images per evaluation.
    ema_decay: decay of the exponential moving average of the generator's
      weights, in [0, 1); 0 keeps no average. With an average, the sample grids,
      the best checkpoint and the SavedModel use the averaged generator.
    on_non_finite: what to do when a step leaves a NaN or Inf in a loss, a
      gradient norm or a variable (weights, Adam slots, the averaged
      generator). "stop" raises `training.NonFiniteLossError`. "rollback"
      restores the last checkpoint, multiplies the learning rate of both
      optimizers by `rollback_learning_rate_factor` and goes on. It stops as
      "stop" does once `max_rollbacks` rollbacks have happened in the run.
    rollback_learning_rate_factor: factor in (0, 1) applied to the learning
      rate at each rollback.
    max_rollbacks: rollbacks allowed over the whole run, counted across
      resumes; 0 makes "rollback" stop at the first NaN or Inf.
    data_dir: TFDS data dir (None: TFDS's default).
    mnist_source: a local MNIST copy to prepare from if the data dir has none.
  """

  output_dir: str
  epochs: int = 50
  # Batch size, noise size and learning rate come from the random and TPE
  # searches recorded in BUILD_NOTES.md; beta1 = 0.5 beat 0.9 there too.
  batch_size: int = 32
  noise_dim: int = 128
  learning_rate: float = 5e-4
  beta1: float = 0.5
  beta2: float = 0.999
  width: int = 64
  seed: int = 0
  precision: str = "auto"
  jit_compile: str = "auto"
  strategy: str = "default"
  checkpoint_every: int = 500
  max_steps: Optional[int] = None
  examples_per_epoch: Optional[int] = None
  keep_checkpoints: int = 3
  summary_every: int = 50
  eval_every: int = 1
  eval_samples: int = 10000
  ema_decay: float = 0.999
  on_non_finite: str = "stop"
  rollback_learning_rate_factor: float = 0.5
  max_rollbacks: int = 3
  data_dir: Optional[str] = None
  mnist_source: Optional[str] = None

  def validate(self):
    """Raises ConfigError naming the first invalid field, its value and what is allowed."""
    for name in ("epochs", "batch_size", "noise_dim", "width", "keep_checkpoints",
                 "summary_every"):
      _check_integer(name, getattr(self, name), minimum=1)
    _check_integer("checkpoint_every", self.checkpoint_every, minimum=0)
    _check_integer("eval_every", self.eval_every, minimum=0)
    _check_integer("eval_samples", self.eval_samples, minimum=MIN_EVAL_SAMPLES)
    if self.max_steps is not None:
      _check_integer("max_steps", self.max_steps, minimum=1)
    if self.examples_per_epoch is not None:
      _check_integer("examples_per_epoch", self.examples_per_epoch, minimum=self.batch_size)
    _check_integer("seed", self.seed, minimum=0)
    _check_integer("max_rollbacks", self.max_rollbacks, minimum=0)
    _check_open_interval("learning_rate", self.learning_rate, 0.0, 1.0)
    _check_open_interval("rollback_learning_rate_factor", self.rollback_learning_rate_factor,
                         0.0, 1.0)
    for name in ("beta1", "beta2", "ema_decay"):
      value = getattr(self, name)
      if not _is_number(value) or not 0.0 <= value < 1.0:
        raise ConfigError(f"--{name}={value!r} is invalid: expected a number in [0, 1)")
    if self.precision not in PRECISION_CHOICES:
      raise ConfigError(
          f"--precision={self.precision!r} is invalid: expected one of {', '.join(PRECISION_CHOICES)}")
    if self.jit_compile not in JIT_COMPILE_CHOICES:
      raise ConfigError(
          f"--jit_compile={self.jit_compile!r} is invalid: expected one of "
          f"{', '.join(JIT_COMPILE_CHOICES)}")
    if self.strategy not in STRATEGY_CHOICES:
      raise ConfigError(
          f"--strategy={self.strategy!r} is invalid: expected one of {', '.join(STRATEGY_CHOICES)}")
    if self.on_non_finite not in ON_NON_FINITE_CHOICES:
      raise ConfigError(
          f"--on_non_finite={self.on_non_finite!r} is invalid: expected one of "
          f"{', '.join(ON_NON_FINITE_CHOICES)}")
    if self.data_dir is not None and os.path.exists(self.data_dir) and not os.path.isdir(
        self.data_dir):
      raise ConfigError(f"--data_dir={self.data_dir!r} is invalid: it is a file, expected a folder")
    if self.mnist_source is not None and not os.path.exists(self.mnist_source):
      raise ConfigError(
          f"--mnist_source={self.mnist_source!r} is invalid: no such file or folder")
    # Last, because it creates the folder: a rejected run leaves no empty output folder.
    check_writable_directory("output_dir", self.output_dir)

  def to_json(self):
    """Returns the configuration as a JSON string."""
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _check_integer(name, value, minimum):
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ConfigError(f"--{name}={value!r} is invalid: expected a whole number >= {minimum}")


def _check_open_interval(name, value, low, high):
  if not _is_number(value) or not low < value < high:
    raise ConfigError(f"--{name}={value!r} is invalid: expected a number in ({low:g}, {high:g})")


def check_writable_directory(name, path):
  """Checks that `path` is, or can be created as, a folder this process can write to.

  Creates the folder if needed and writes and removes a probe file, because
  permission bits alone do not tell (root ignores them, read-only mounts do not
  show in them).

  Raises:
    ConfigError: naming the flag `name`, the path and the reason.
  """
  if not path:
    raise ConfigError(f"--{name} is missing: expected a folder path")
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f"--{name}={path!r} is invalid: it is a file, expected a folder")
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as error:
    raise ConfigError(
        f"--{name}={path!r} is invalid: the folder is not writable ({error.strerror})") from None
