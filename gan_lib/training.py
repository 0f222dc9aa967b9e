"""The training loop: epochs, checkpoints, samples, summaries and export.

The loop owns everything around the compiled step (`train_step`): resuming,
checkpoint cadence, TensorBoard summaries, the per-epoch JSON Lines log, sample
grids, the GIF and the SavedModel. It keeps the math out and the files in.
"""

import dataclasses
import fcntl
import functools
import glob
import json
import math
import os
import shutil
import signal
import sys
import time

from absl import logging
import numpy as np
import tensorflow as tf

from gan_lib import config as config_lib
from gan_lib import data
from gan_lib import devices
from gan_lib import distribute
from gan_lib import evaluation
from gan_lib import images
from gan_lib import io_utils
from gan_lib import train_step

NUM_SAMPLES = 64  # images in each sample grid, drawn from the same noise every epoch
_SAMPLE_NOISE_SALT = 7919  # separates the sample noise seed from the training seed


class NonFiniteLossError(FloatingPointError):
  """A step left a NaN or Inf in a loss, a gradient norm or a variable, and training stopped.

  Attributes:
    step: the step that produced the NaN or Inf.
    checkpoint: the last checkpoint saved before it, all of whose values are
      finite, or None.
    rollbacks: rollbacks made in the run before it stopped.
  """

  def __init__(self, message, step=None, checkpoint=None, rollbacks=0):
    super().__init__(message)
    self.step = step
    self.checkpoint = checkpoint
    self.rollbacks = rollbacks


class TrainingInterrupted(Exception):
  """SIGINT or SIGTERM stopped training after a checkpoint was saved."""

  def __init__(self, signal_number, step):
    super().__init__(f"stopped by signal {signal_number} at step {step}; checkpoint saved")
    self.signal_number = signal_number
    self.step = step


@dataclasses.dataclass
class TrainResult:
  """The outcome of a finished or stopped `train` call."""

  model: train_step.GanModel
  step: int
  epoch: int
  precision: str
  jit_compile: bool
  epoch_rows: list


class OutputPaths:
  """The files and folders of a run's output folder."""

  def __init__(self, output_dir):
    self.root = output_dir
    self.checkpoints = os.path.join(output_dir, "checkpoints")
    self.samples = os.path.join(output_dir, "samples")
    self.tensorboard = os.path.join(output_dir, "tensorboard")
    self.saved_model = os.path.join(output_dir, "saved_model")
    self.metrics = os.path.join(output_dir, "metrics.jsonl")
    self.metrics_plot = os.path.join(output_dir, "metrics.png")
    self.best_checkpoint = os.path.join(output_dir, "best_checkpoint")
    self.best = os.path.join(output_dir, "best.json")
    self.config = os.path.join(output_dir, "config.json")
    self.gif = os.path.join(self.samples, "progress.gif")

  def sample_png(self, epoch):
    return os.path.join(self.samples, f"epoch_{epoch:04d}.png")

  def make_folders(self):
    for folder in (self.root, self.checkpoints, self.samples):
      os.makedirs(folder, exist_ok=True)
    io_utils.remove_temporary_files(self.root)
    io_utils.remove_temporary_files(self.samples)
    remove_checkpoint_leftovers(self.checkpoints)


class _SignalCatcher:
  """Turns SIGINT and SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self.signal_number = None
    self._previous = {}

  def __enter__(self):
    for number in (signal.SIGINT, signal.SIGTERM):
      try:
        self._previous[number] = signal.signal(number, self._handle)
      except ValueError:
        pass  # Not the main thread: signals stay with the caller.
    return self

  def _handle(self, number, frame):
    del frame
    self.signal_number = number

  def __exit__(self, *exc_info):
    for number, handler in self._previous.items():
      signal.signal(number, handler)


class OutputDirInUseError(RuntimeError):
  """Another live process is training into the same output folder."""


class OutputDirLock:
  """An exclusive lock on an output folder, held while a process trains into it.

  The lock is an `flock` on `.lock` in the folder, so the kernel releases it when
  the holder exits, even after SIGKILL, and no stale lock survives a crash. The
  file contains the holder's process id for the error message.
  """

  def __init__(self, output_dir):
    self.path = os.path.join(output_dir, ".lock")
    self._file = None

  def __enter__(self):
    with io_utils.reporting_write_errors("the lock file", self.path):
      lock_file = open(self.path, "a+", encoding="utf-8")
    try:
      fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock_file.seek(0)
      holder = lock_file.read().strip() or "unknown"
      lock_file.close()
      raise OutputDirInUseError(
          f"output folder {os.path.dirname(self.path)} is in use by process {holder}; "
          "wait for it to finish, stop it, or choose another --output_dir") from None
    try:
      with io_utils.reporting_write_errors("the lock file", self.path):
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
    except io_utils.OutputWriteError:
      lock_file.close()
      raise
    self._file = lock_file
    return self

  def __exit__(self, *exc_info):
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


class NoGoodCheckpointError(RuntimeError):
  """Checkpoints exist in the output folder but none of them can be restored."""


def restore_latest_good_checkpoint(checkpoint, manager):
  """Restores the newest checkpoint that reads back whole, newest first.

  A truncated or corrupted checkpoint is skipped with a warning that names it
  and the one used instead, rather than crashing or starting over.

  Returns:
    The path restored, or None when the folder has no checkpoint.

  Raises:
    NoGoodCheckpointError: every checkpoint failed to restore.
  """
  candidates = list(reversed(manager.checkpoints))
  failures = []
  for path in candidates:
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
    # Truncated files surface as IndexError from the checkpoint reader, corrupt ones
    # as OpError (DataLossError) or ValueError.
    except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError, OSError) as error:
      first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
      logging.warning("Checkpoint %s cannot be restored (%s)", path, first_line)
      failures.append(path)
      continue
    if failures:
      logging.warning("Fell back from unreadable checkpoint(s) %s to %s",
                      ", ".join(failures), path)
    return path
  if failures:
    raise NoGoodCheckpointError(
        f"none of the checkpoints in {manager.directory} can be restored: "
        f"{', '.join(failures)}; move them away to start over")
  return None


class ScratchCheckpointSaver:
  """Saves checkpoints into a scratch folder and deletes each one right after.

  Non-chief workers of a multi-worker run use it. Saving may run collective
  operations, so every worker saves, but only the chief's copy is kept.
  """

  def __init__(self, checkpoint, directory):
    self._checkpoint = checkpoint
    self._directory = directory

  def save(self, checkpoint_number):
    manager = tf.train.CheckpointManager(self._checkpoint, self._directory, max_to_keep=1)
    path = manager.save(checkpoint_number=checkpoint_number)
    shutil.rmtree(self._directory)
    return path


def _resume_advice(checkpoint_path):
  """Returns the advice on resuming after a failed write."""
  if checkpoint_path is None:
    return "No checkpoint was saved yet, so the same command starts the run over"
  return (f"The last checkpoint {checkpoint_path} is intact; run the same command again "
          "to resume from it")


def save_checkpoint_or_raise(saver, number, description, last_checkpoint, directory=None):
  """Saves checkpoint number `number` with `saver`, turning a failed write into OutputWriteError.

  A failed save leaves `directory` as it was: TensorFlow writes the new
  checkpoint into a `ckpt-N_temp` folder and records it in the `checkpoint`
  state file only after its files are complete, and this function removes the
  partial files. Checkpoints saved before stay readable.

  Args:
    saver: a `tf.train.CheckpointManager` or `ScratchCheckpointSaver`.
    number: the checkpoint number, the step.
    description: what the checkpoint is, for the error message.
    last_checkpoint: the path of the last good checkpoint, for the error message.
    directory: the folder `saver` writes, whose partial files are removed on
      failure; None removes nothing.

  Returns:
    The path of the saved checkpoint.

  Raises:
    io_utils.OutputWriteError: naming the checkpoint, the reason and how to resume.
  """
  prefix = os.path.join(directory, f"ckpt-{number}") if directory else f"ckpt-{number}"
  # NOTE: a run stopped by a signal on the last step of an epoch saves that step
  # again when it resumes. Such a save replaces the old data file first and then
  # rewrites the index in place. A failure between the two leaves that checkpoint
  # unreadable, so the next run falls back to the one before it.
  existed = directory is not None and os.path.exists(prefix + ".index")
  try:
    return saver.save(checkpoint_number=number)
  except (tf.errors.OpError, OSError) as error:
    if directory is not None:
      _remove_partial_checkpoint(directory, prefix, keep_final_files=existed)
    raise io_utils.OutputWriteError(description, prefix, error,
                                    _resume_advice(last_checkpoint)) from error


def _remove_partial_checkpoint(directory, prefix, keep_final_files):
  """Removes what a failed save of `prefix` left: its `_temp` folder, its files and state temps."""
  leftovers = glob.glob(os.path.join(glob.escape(directory), "checkpoint.tmp*"))
  if not keep_final_files:
    # "ckpt-1.*" matches ckpt-1.index and ckpt-1.data-00000-of-00001, not ckpt-10.
    leftovers += glob.glob(glob.escape(prefix) + ".*")
  for path in [prefix + "_temp"] + leftovers:
    try:
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)
    except OSError as error:
      logging.warning("Cannot remove %s, left by the failed checkpoint save: %s", path, error)


def remove_checkpoint_leftovers(directory):
  """Deletes the `_temp` folders and state-file temporaries of checkpoint saves that crashed."""
  for path in glob.glob(os.path.join(glob.escape(directory), "*_temp")):
    if os.path.isdir(path):
      shutil.rmtree(path)
  for path in glob.glob(os.path.join(glob.escape(directory), "checkpoint.tmp*")):
    os.remove(path)


def _checkpoint_savers(checkpoint, manager, paths, scratch_dir):
  """Returns the savers of the latest and the best checkpoints.

  On the chief (`scratch_dir` is None) they write the output folder, and the
  first one is `manager`. On other workers they write scratch copies.
  """
  if scratch_dir is None:
    return manager, tf.train.CheckpointManager(checkpoint, paths.best_checkpoint, max_to_keep=1)
  return (ScratchCheckpointSaver(checkpoint, os.path.join(scratch_dir, "checkpoints")),
          ScratchCheckpointSaver(checkpoint, os.path.join(scratch_dir, "best_checkpoint")))


def _keep_if_best(row, model, best_frechet_distance, best_saver, paths, epoch, step, strategy,
                  last_checkpoint):
  """Saves a best checkpoint and best.json when this epoch's Frechet distance is the lowest.

  The distance compared is the averaged generator's when the model keeps one.
  Every worker evaluates and gets the same scores, but the chief's distance is
  still broadcast, so an evaluator that scores on the chief alone works too.
  Every worker must call this, because of that broadcast and because every
  worker saves the best checkpoint. `last_checkpoint` is named
  in the error raised when a write fails.
  """
  chief = distribute.is_chief(strategy)
  prefix = "ema_" if model.ema_generator is not None else ""
  frechet_distance = row[prefix + "frechet_distance"] if chief else 0.0
  frechet_distance = distribute.broadcast_from_chief(strategy, frechet_distance)
  if chief:
    logging.info("Epoch %d: Frechet distance %.3f, Inception Score %.3f (%s)", epoch,
                 frechet_distance, row[prefix + "inception_score"],
                 "averaged generator" if prefix else "generator")
  if frechet_distance >= float(best_frechet_distance):
    return
  best_frechet_distance.assign(frechet_distance)
  best_path = save_checkpoint_or_raise(best_saver, step, "the best checkpoint", last_checkpoint,
                                       directory=paths.best_checkpoint if chief else None)
  if chief:
    # Relative to the output folder, so best.json stays valid when the folder moves.
    relative_path = os.path.relpath(best_path, paths.root)
    with io_utils.reporting_write_errors("the best-epoch record", paths.best,
                                         _resume_advice(last_checkpoint)):
      io_utils.atomic_write_text(
          paths.best, json.dumps(dict(row, checkpoint=relative_path), sort_keys=True) + "\n")
    logging.info("New best Frechet distance %.3f: saved %s", frechet_distance, best_path)


class ServingGenerator(tf.Module):
  """The generator with a serving signature: noise [N, noise_dim] -> images [N, 28, 28, 1]."""

  def __init__(self, generator):
    super().__init__(name="serving_generator")
    self.generator = generator
    self.serve = tf.function(
        self._serve,
        input_signature=[tf.TensorSpec([None, generator.noise_dim], tf.float32, name="noise")])

  def _serve(self, noise):
    return {"images": self.generator(noise, training=False)}


def export_generator(generator, export_dir):
  """Saves `generator` as a SavedModel at `export_dir`, replacing an old one atomically.

  The `serving_default` signature maps float32 noise [N, noise_dim] to float32
  `images` [N, 28, 28, 1] in [-1, 1]; `tf.saved_model.load` reads it without this
  library. Variables created under a strategy are saved as plain variables.
  """
  temporary_dir = export_dir + ".tmp"
  if os.path.exists(temporary_dir):
    shutil.rmtree(temporary_dir)
  module = ServingGenerator(generator)
  try:
    tf.saved_model.save(module, temporary_dir, signatures={"serving_default": module.serve})
  except (tf.errors.OpError, OSError) as error:
    shutil.rmtree(temporary_dir, ignore_errors=True)
    raise io_utils.OutputWriteError(
        "the SavedModel", temporary_dir, error,
        "The previous SavedModel, if any, is intact; the checkpoints are complete, so run "
        "the same command again to export") from error
  with io_utils.reporting_write_errors("the SavedModel", export_dir):
    io_utils.replace_directory(temporary_dir, export_dir)


def _export_on_every_worker(generator, paths, scratch_dir):
  """Exports the SavedModel on the chief and into a deleted scratch copy elsewhere.

  Saving may run collective operations in a multi-worker run, so every worker saves.
  """
  if scratch_dir is None:
    export_generator(generator, paths.saved_model)
    logging.info("Exported the generator SavedModel to %s", paths.saved_model)
    return
  scratch_export = os.path.join(scratch_dir, "saved_model")
  export_generator(generator, scratch_export)
  shutil.rmtree(scratch_export)


def sample_noise(seed, noise_dim, count=NUM_SAMPLES):
  """Returns the fixed float32 noise [count, noise_dim] used for every sample grid."""
  return tf.random.stateless_normal([count, noise_dim], seed=[seed, _SAMPLE_NOISE_SALT])


def _progress_bar(total, initial, epoch):
  """Returns a tqdm bar when stderr is a terminal, else None."""
  if not sys.stderr.isatty():
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}", unit="step",
                   leave=False)


def train(config, pipeline=None, epoch_callback=None, evaluator=None, strategy=None):
  """Trains a DCGAN with the settings in `config`, resuming from a checkpoint in its output folder.

  Under a multi-worker strategy every worker calls `train` with the same
  configuration. The chief writes the output folder. The other workers read
  its checkpoints when they resume, so the folder must be on a file system that
  every worker can read, and they write nothing there.

  Args:
    config: a `gan_lib.config.TrainConfig`; it is validated first.
    pipeline: a `data.EpochPipeline` of training images; None builds one from the
      TFDS `mnist` train split, preparing it offline if needed. Its batches are
      global batches, split between the replicas.
    epoch_callback: optional `fn(model, epoch) -> dict` called after each epoch
      on the chief only; its float values join that epoch's JSON Lines row and
      summaries.
    evaluator: a `metrics.evaluator.Evaluator` for the evaluations that
      `config.eval_every` asks for, run on every worker, each scoring its
      replicas' share of the samples; None builds one against the MNIST test
      split.
    strategy: the `tf.distribute.Strategy` to train under; None builds the one
      `config.strategy` names. Create a "multi_worker" strategy with
      `distribute.make_strategy` before any TensorFlow op, which includes
      building `pipeline`.

  Returns:
    A `TrainResult`.

  Raises:
    ConfigError: on an invalid configuration, before any work.
    NonFiniteLossError: when a loss or gradient norm turns NaN or Inf.
    TrainingInterrupted: after SIGINT or SIGTERM, once a checkpoint is saved.
    OutputDirInUseError: another process is training into the same folder.
    NoGoodCheckpointError: the folder has checkpoints and none restores.
  """
  config.validate()
  if strategy is None:
    strategy = distribute.make_strategy(config.strategy)
  num_replicas = strategy.num_replicas_in_sync
  if config.batch_size % num_replicas:
    raise config_lib.ConfigError(
        f"--batch_size={config.batch_size} is invalid: expected a multiple of the "
        f"{num_replicas} replicas of --strategy={config.strategy}")
  if num_replicas > 1 and config.jit_compile == "true":
    raise config_lib.ConfigError(
        f"--jit_compile=true is invalid with {num_replicas} replicas: expected false or auto")
  if distribute.is_chief(strategy):
    with OutputDirLock(config.output_dir):
      return _run_training(config, pipeline, epoch_callback, evaluator, strategy, None)
  with distribute.worker_scratch_dir(strategy) as scratch_dir:
    return _run_training(config, pipeline, epoch_callback, evaluator, strategy, scratch_dir)


# Settings a run cannot change when it resumes: they set the variables' shapes
# or the steps of an epoch, which the checkpoint and its step counter rely on.
RESUME_FIXED_FIELDS = ("noise_dim", "width", "batch_size", "examples_per_epoch")


def check_resume_config(paths, config):
  """Raises ConfigError if `config` changes a fixed setting of the run it would resume.

  A folder without a checkpoint has nothing to resume, so any setting goes.
  """
  if not os.path.exists(paths.config) or tf.train.latest_checkpoint(paths.checkpoints) is None:
    return
  with open(paths.config, encoding="utf-8") as file:
    try:
      stored = json.load(file)
    except json.JSONDecodeError:
      return  # An unreadable config.json is rewritten; the checkpoint restore still checks shapes.
  for name in RESUME_FIXED_FIELDS:
    if name in stored and stored[name] != getattr(config, name):
      raise config_lib.ConfigError(
          f"--{name}={getattr(config, name)!r} is invalid: the run in {config.output_dir} was "
          f"started with {name}={stored[name]!r} and resumes from its checkpoint; use that "
          "value, or another --output_dir to start a new run")


def _run_training(config, pipeline, epoch_callback, evaluator, strategy, scratch_dir):
  """Runs `train` on the chief, which holds the output folder's lock, or on another worker.

  `scratch_dir` is None on the chief. On other workers it is the folder for the
  checkpoint and SavedModel copies they must write and then delete.
  """
  chief = scratch_dir is None
  paths = OutputPaths(config.output_dir)
  if chief:
    check_resume_config(paths, config)
    with io_utils.reporting_write_errors("the output folder", paths.root):
      paths.make_folders()
    with io_utils.reporting_write_errors("the run configuration", paths.config):
      io_utils.atomic_write_text(paths.config, config.to_json() + "\n")

  if pipeline is None:
    from gan_lib import mnist_prep
    source = mnist_prep.ensure_mnist(config.data_dir, local_source=config.mnist_source)
    logging.info("MNIST source: %s", source)
    pipeline = data.EpochPipeline.from_tfds(config.batch_size, config.seed,
                                            data_dir=config.data_dir)
  if pipeline.batch_size != config.batch_size:
    raise ValueError(
        f"pipeline batch size {pipeline.batch_size} differs from --batch_size={config.batch_size}")

  precision = devices.resolve_precision(config.precision)
  # "auto" turns XLA off with several replicas, which the compiled step does not support.
  jit_compile = (devices.resolve_jit_compile(config.jit_compile)
                 and strategy.num_replicas_in_sync == 1)
  logging.info("Train step mode: precision=%s, jit_compile=%s (requested %s, %s), device=%s, "
               "strategy=%s with %d replicas, task %s%s", precision, jit_compile,
               config.precision, config.jit_compile, "GPU" if devices.has_gpu() else "CPU",
               config.strategy, strategy.num_replicas_in_sync, distribute.task_name(strategy),
               " (chief)" if chief else "")

  with strategy.scope():
    model = train_step.GanModel(
        noise_dim=config.noise_dim, width=config.width, learning_rate=config.learning_rate,
        beta1=config.beta1, beta2=config.beta2, seed=config.seed,
        ema_decay=config.ema_decay or None)
  # The generator whose samples, best checkpoint and SavedModel the run keeps.
  output_generator = model.ema_generator or model.generator
  # Every worker evaluates, because the evaluation is split over all replicas.
  if config.eval_every and evaluator is None:
    from metrics import evaluator as evaluator_lib  # pylint: disable=g-import-not-at-top
    evaluator = evaluator_lib.Evaluator(data_dir=config.data_dir)
  step_function = train_step.make_train_step(
      model, config.batch_size, precision=precision, jit_compile=jit_compile,
      strategy=strategy)

  # Completed epochs and the running loss sums of the current epoch are checkpointed
  # too, so a resumed epoch reports the same means as an uninterrupted one.
  epoch_variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
  epoch_sums = tf.Variable(tf.zeros([3], tf.float64), trainable=False, name="epoch_sums")
  best_frechet_distance = tf.Variable(
      np.inf, dtype=tf.float64, trainable=False, name="best_frechet_distance")
  # Rollbacks made so far, checkpointed so that --max_rollbacks counts across resumes.
  rollback_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="rollbacks")
  checkpoint = tf.train.Checkpoint(
      **model.checkpoint_items(), epoch=epoch_variable, epoch_sums=epoch_sums,
      best_frechet_distance=best_frechet_distance, rollbacks=rollback_count)
  # Every worker restores from the chief's folder; only the chief saves into it.
  manager = tf.train.CheckpointManager(
      checkpoint, paths.checkpoints, max_to_keep=config.keep_checkpoints)
  saver, best_saver = _checkpoint_savers(checkpoint, manager, paths, scratch_dir)
  restored = restore_latest_good_checkpoint(checkpoint, manager)
  if restored:
    logging.info("Resumed from %s at step %d, epoch %d", restored, int(model.step.numpy()),
                 int(epoch_variable))
    _log_restored_learning_rate(model, config, int(rollback_count))
  distribute.check_workers_agree(strategy, int(model.step.numpy()), "the step restored")

  step = int(model.step.numpy())
  epoch = int(epoch_variable)
  steps_per_epoch = pipeline.steps_for(config.examples_per_epoch)
  epoch_rows = [row for row in io_utils.read_json_lines(paths.metrics) if row["epoch"] <= epoch]
  fixed_noise = sample_noise(config.seed, config.noise_dim)
  # The newest checkpoint, the one a rollback returns to. The loop checks every
  # step before it saves, so its weights and optimizer state are finite.
  last_checkpoint = restored
  if chief:
    writer = tf.summary.create_file_writer(paths.tensorboard)
  else:
    writer = tf.summary.create_noop_writer()

  def save_checkpoint():
    nonlocal last_checkpoint
    path = save_checkpoint_or_raise(saver, step, "the checkpoint", last_checkpoint,
                                    directory=paths.checkpoints if chief else None)
    if chief:
      logging.info("Saved checkpoint %s", path)
      last_checkpoint = path
    else:
      # Other workers roll back to the chief's copy in the shared folder, as they resume.
      last_checkpoint = os.path.join(paths.checkpoints, f"ckpt-{step}")
    return path

  def reached_max_steps():
    return config.max_steps is not None and step >= config.max_steps

  def roll_back_or_raise(description):
    """Restores the last checkpoint with a lower learning rate, or raises NonFiniteLossError."""
    nonlocal step, epoch, epoch_rows
    bad_step = step
    rollbacks = int(rollback_count)
    message = (f"non-finite values at step {bad_step}: {description}; last good checkpoint: "
               f"{last_checkpoint or 'none'}")

    if config.on_non_finite == "stop":
      restart_point = "that checkpoint" if last_checkpoint else "the initial weights"
      raise NonFiniteLossError(
          f"{message}. Run the same command with --on_non_finite=rollback to restart from "
          f"{restart_point} and lower the learning rate when a NaN or Inf comes back",
          bad_step, last_checkpoint, rollbacks)
    if rollbacks >= config.max_rollbacks or last_checkpoint is None:
      raise NonFiniteLossError(
          f"{message}; stopped after {rollbacks} rollbacks (--max_rollbacks="
          f"{config.max_rollbacks}). Raise --max_rollbacks to allow more, or start a new run "
          "with a lower --learning_rate", bad_step, last_checkpoint, rollbacks)

    # NOTE: rollback is tested on one device only. Under a multi-worker strategy
    # every worker gets the same NaN, because losses are reduced and variables
    # mirrored, and restores the chief's checkpoint from the shared folder.
    old_rate, new_rate = roll_back(checkpoint, last_checkpoint, model,
                                   config.rollback_learning_rate_factor)
    rollback_count.assign(rollbacks + 1)

    step = int(model.step.numpy())
    epoch = int(epoch_variable)
    epoch_rows = [row for row in epoch_rows if row["epoch"] <= epoch]
    logging.warning(
        "NaN or Inf at step %d (%s); rolled back to checkpoint %s at step %d and lowered the "
        "learning rate from %s to %s (rollback %d of at most %d)", bad_step, description,
        last_checkpoint, step, old_rate, new_rate, rollbacks + 1, config.max_rollbacks)

  if restored is None and config.on_non_finite == "rollback":
    # A rollback before the first checkpoint returns to the initial weights.
    save_checkpoint()

  with _SignalCatcher() as signals, writer.as_default():
    while epoch < config.epochs and not reached_max_steps():
      skip = step - epoch * steps_per_epoch
      epoch_end_step = (epoch + 1) * steps_per_epoch
      progress = _progress_bar(steps_per_epoch, skip, epoch) if chief else None
      epoch_start = time.perf_counter()
      steps_this_run = 0
      rolled_back = False
      batches = distribute.distribute_batches(
          strategy, functools.partial(pipeline.epoch, epoch, skip_batches=skip,
                                      num_batches=steps_per_epoch),
          config.batch_size)
      for batch in batches:
        outputs = step_function(batch)
        step += 1
        steps_this_run += 1
        variables_finite = bool(outputs.pop("variables_finite"))
        values = {name: float(value) for name, value in outputs.items()}
        if not variables_finite or not all(math.isfinite(value) for value in values.values()):
          roll_back_or_raise(describe_non_finite(values, variables_finite, model))
          rolled_back = True
          break
        epoch_sums.assign_add(
            [values["discriminator_loss"], values["generator_loss"], 1.0])
        if step % config.summary_every == 0:
          for name, value in values.items():
            tf.summary.scalar(f"train/{name}", value, step=step)
        if progress is not None:
          progress.update(1)
          progress.set_postfix(d_loss=f"{values['discriminator_loss']:.3f}",
                               g_loss=f"{values['generator_loss']:.3f}")
        if signals.signal_number is not None:
          # NOTE: in a multi-worker run only the signalled worker stops here; the
          # others fail at their next collective operation once it has exited.
          save_checkpoint()
          raise TrainingInterrupted(signals.signal_number, step)
        if reached_max_steps():
          break
        # The last step of an epoch is saved by the checkpoint at the epoch's end.
        if config.checkpoint_every and step % config.checkpoint_every == 0 and (
            step < epoch_end_step):
          save_checkpoint()
      if progress is not None:
        progress.close()
      if rolled_back:
        continue  # Start over from the restored step.
      seconds = time.perf_counter() - epoch_start
      if step < epoch_end_step:
        save_checkpoint()  # Stopped inside the epoch by --max_steps.
        break

      epoch += 1
      sums = epoch_sums.numpy()
      steps_per_second = steps_this_run / seconds if seconds > 0 else float("nan")
      row = dict(
          epoch=epoch,
          step=step,
          discriminator_loss=sums[0] / max(sums[2], 1.0),
          generator_loss=sums[1] / max(sums[2], 1.0),
          steps_per_second=steps_per_second,
          images_per_second=steps_per_second * config.batch_size,
          seconds=seconds,
          time=time.time(),
          adam_learning_rate=learning_rate_of(model),
          rollbacks=int(rollback_count),
      )
      evaluated = config.eval_every and (
          epoch % config.eval_every == 0 or epoch == config.epochs)
      resume_advice = _resume_advice(last_checkpoint)
      if evaluated:
        # Every worker calls this: each generates and classifies its replicas'
        # share of the images, and all get the same scores from a gather.
        row.update(evaluation.evaluate_model(
            evaluator, model, config.eval_samples, seed=config.seed, strategy=strategy))
      if chief:
        # Sampling and the callback run no collective operation, so the other
        # workers go on and wait at the next one.
        grid = images.image_grid(output_generator(fixed_noise, training=False).numpy())
        with io_utils.reporting_write_errors("the sample PNG", paths.sample_png(epoch),
                                             resume_advice):
          images.write_png(paths.sample_png(epoch), grid)
        tf.summary.image("samples", grid[None, :, :, None], step=step)
        tf.summary.scalar("train/steps_per_second", steps_per_second, step=step)
        if epoch_callback is not None:
          row.update(epoch_callback(model, epoch))
        for name, value in row.items():
          if name not in ("epoch", "step", "time", "seconds"):
            tf.summary.scalar(f"epoch/{name}", value, step=step)
        writer.flush()

      epoch_rows = [r for r in epoch_rows if r["epoch"] < epoch] + [row]
      if chief:
        with io_utils.reporting_write_errors("the JSON Lines log", paths.metrics, resume_advice):
          io_utils.write_json_lines(paths.metrics, epoch_rows)
      epoch_variable.assign(epoch)
      epoch_sums.assign(tf.zeros([3], tf.float64))
      logging.info(
          "Epoch %d/%d: step %d, discriminator_loss %.4f, generator_loss %.4f, "
          "%.2f steps/s, %.1f s, learning rate %s", epoch, config.epochs, step,
          row["discriminator_loss"], row["generator_loss"], steps_per_second, seconds,
          row["adam_learning_rate"])
      if evaluated:
        _keep_if_best(row, model, best_frechet_distance, best_saver, paths, epoch, step,
                      strategy, last_checkpoint)
      save_checkpoint()

  if chief:
    resume_advice = _resume_advice(last_checkpoint)
    sample_paths = [paths.sample_png(e) for e in range(1, epoch + 1)
                    if os.path.exists(paths.sample_png(e))]
    if sample_paths:
      with io_utils.reporting_write_errors("the sample GIF", paths.gif, resume_advice):
        images.write_gif(paths.gif, sample_paths)
    with io_utils.reporting_write_errors("the metrics plot", paths.metrics_plot, resume_advice):
      evaluation.write_metrics_plot(epoch_rows, paths.metrics_plot)
  _export_on_every_worker(output_generator, paths, scratch_dir)
  return TrainResult(model=model, step=step, epoch=epoch, precision=precision,
                     jit_compile=jit_compile, epoch_rows=epoch_rows)


def learning_rate_of(model):
  """Returns the Adam learning rate of both networks, which rollbacks lower together.

  The value is the variable's float32, written with the fewest digits that
  read back as it (2e-4, not 0.00019999999494757503).
  """
  return float(str(model.generator_optimizer.learning_rate.numpy()))


def _log_restored_learning_rate(model, config, rollbacks):
  """Logs the learning rate a resumed run takes from its checkpoint when it is not the flag's."""
  restored_rate = learning_rate_of(model)
  if math.isclose(restored_rate, config.learning_rate, rel_tol=1e-6):
    return
  logging.warning("Using the learning rate %s from the checkpoint, not --learning_rate=%s, "
                  "which applies only to a new run (rollbacks so far: %d)", restored_rate,
                  config.learning_rate, rollbacks)


def roll_back(checkpoint, path, model, factor):
  """Restores `checkpoint` from `path`, then sets both learning rates to `factor` times their old values.

  The old values are the ones before the restore, so rolling back twice to the
  same checkpoint lowers the rate twice.

  Returns:
    (old learning rate, new learning rate) as floats.

  Raises:
    NoGoodCheckpointError: the checkpoint at `path` cannot be restored.
  """
  old_rate = learning_rate_of(model)
  optimizers = (model.generator_optimizer, model.discriminator_optimizer)
  old_rates = [optimizer.learning_rate.numpy() for optimizer in optimizers]
  try:
    checkpoint.restore(path).assert_existing_objects_matched()
  except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError, OSError) as error:
    raise NoGoodCheckpointError(
        f"cannot roll back: checkpoint {path} cannot be restored ({error})") from error
  for optimizer, rate in zip(optimizers, old_rates):
    optimizer.learning_rate.assign(rate * factor)
  return old_rate, learning_rate_of(model)


def describe_non_finite(values, variables_finite, model):
  """Returns which step outputs and which variables hold a NaN or Inf, for the log and errors.

  Args:
    values: the step's outputs as floats.
    variables_finite: the step's `variables_finite` flag; when it is False the
      variables are read again to name the ones at fault.
    model: the `GanModel`.
  """
  parts = [f"{name}={value}" for name, value in values.items() if not math.isfinite(value)]
  if not variables_finite:
    groups = model.non_finite_variables()
    for owner, names in groups.items():
      listed_names = ", ".join(names[:3])
      if len(names) > 3:
        listed_names += f" and {len(names) - 3} more"
      parts.append(f"{len(names)} {owner} variables ({listed_names})")
    if not groups:
      parts.append("variables_finite=False, but no variable holds a NaN or Inf when read again")
  return ", ".join(parts)
