"""Searches DCGAN hyperparameters with Optuna, one training run per trial.

Grid search over lists of values:

  python examples/sweep.py --output_dir=runs/sweep --method=grid \
      --batch_sizes=64,128 --learning_rates=1e-4,2e-4 --noise_dims=64,100 --epochs=5

TPE with pruning, over a log-uniform learning rate range:

  python examples/sweep.py --output_dir=runs/tpe --method=tpe --num_trials=12 \
      --learning_rate_range=1e-5:1e-3 --batch_sizes=64,128 --pruner=median

The study lives in OUTPUT/study.db (or --storage), so rerunning the same command
resumes it, and several processes running it at once share its trials. The
report (OUTPUT/trials.csv, best_command.txt, score_vs_*.png,
score_over_epochs.png and tensorboard/) is written when no trial is left.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # Hide TensorFlow's C++ info lines.

from absl import app
from absl import flags
from absl import logging

from gan_lib import config as config_lib
from gan_lib import search

_DEFAULTS = config_lib.TrainConfig(output_dir="")

flags.DEFINE_string("output_dir", "runs/sweep", "Folder of the trials (trials/trial_NNNN), the "
                    "report and the default SQLite study.")
flags.DEFINE_enum("method", "grid", list(search.METHODS), "grid: every combination once; "
                  "random: --num_trials seeded draws; tpe: Optuna's TPE sampler.")
flags.DEFINE_integer("num_trials", None, "Trials to run for --method=random or tpe. Random "
                     "search over lists only draws without replacement and caps this at the "
                     "number of combinations.")
flags.DEFINE_integer("seed", 0, "Seed of the grid order and the random and TPE draws; the "
                     "same seed draws the same configurations.")
flags.DEFINE_enum("pruner", "none", list(search.PRUNERS), "Stop hopeless trials on their "
                  "per-epoch Frechet distance: median (MedianPruner), halving "
                  "(SuccessiveHalvingPruner) or none.")
flags.DEFINE_integer("pruner_startup_trials", 5, "Finished trials before the median pruner "
                     "prunes.")
flags.DEFINE_integer("tpe_startup_trials", 10, "Trials TPE draws at random before it models the "
                     "scores.")
flags.DEFINE_enum("objective", "best", list(search.OBJECTIVES), "Score of a trial: the best or "
                  "the final Frechet distance of its evaluations (of the averaged generator "
                  "when --ema_decay > 0).")
flags.DEFINE_string("storage", None, "Database URL of the study, such as "
                    "postgresql://user:password@host/db to share it between machines; default: "
                    "sqlite:///OUTPUT/study.db.")
flags.DEFINE_string("study_name", "dcgan_sweep", "Name of the study in the storage.")
flags.DEFINE_float("heartbeat_seconds", 30.0, "Seconds between heartbeats of a running trial.")
flags.DEFINE_float("grace_seconds", 180.0, "Seconds without a heartbeat after which a running "
                   "trial of another machine counts as interrupted and runs again. On this "
                   "machine a trial whose process is gone is rerun at once.")
flags.DEFINE_float("poll_seconds", 10.0, "Seconds between checks while other workers finish the "
                   "last trials.")
flags.DEFINE_bool("wait_for_others", True, "When no trial is left to claim, wait for the other "
                  "workers' running trials before writing the report.")
flags.DEFINE_bool("retry_failed", False, "Run again the planned trials whose every attempt "
                  "failed (for example after fixing the cause).")
flags.DEFINE_bool("report_only", False, "Write the report of the study as it is and run no "
                  "trial.")

# The search space.
flags.DEFINE_string("space", None, "JSON or YAML file of the search space: {name: [values]} or "
                    "{name: {low: x, high: y}}. Excludes the space flags below.")
flags.DEFINE_string("batch_sizes", None, "Batch sizes to search, comma-separated, e.g. 64,128.")
flags.DEFINE_string("learning_rates", None, "Learning rates to search, e.g. 1e-4,2e-4.")
flags.DEFINE_string("learning_rate_range", None, "Learning rate range low:high, drawn "
                    "log-uniformly by random search and TPE, e.g. 1e-5:1e-3.")
flags.DEFINE_string("noise_dims", None, "Noise vector sizes to search, e.g. 64,100.")
flags.DEFINE_string("beta1_values", None, "Adam beta1 values to search, e.g. 0.5,0.9.")
flags.DEFINE_string("beta1_range", None, "Adam beta1 range low:high, drawn uniformly, e.g. 0:0.9.")
flags.DEFINE_string("epochs_values", None, "Epoch counts to search, e.g. 5,10.")
flags.DEFINE_string("max_steps_values", None, "Train step limits to search, e.g. 500,1000.")

# Settings of every trial that the space does not set.
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Epochs of each trial.")
flags.DEFINE_integer("max_steps", None, "Stop each trial after this many train steps.")
flags.DEFINE_integer("examples_per_epoch", None, "Images per epoch of each trial (default: the "
                     "60,000 of the train split); a shorter epoch gives the pruners more "
                     "evaluations to act on.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Batch size when it is not searched.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Learning rate when it is not "
                   "searched.")
flags.DEFINE_integer("noise_dim", _DEFAULTS.noise_dim, "Noise size when it is not searched.")
flags.DEFINE_float("beta1", _DEFAULTS.beta1, "Adam beta1 when it is not searched.")
flags.DEFINE_float("beta2", _DEFAULTS.beta2, "Adam second-moment decay, in [0, 1).")
flags.DEFINE_integer("width", _DEFAULTS.width, "Channel width of both networks.")
flags.DEFINE_integer("train_seed", _DEFAULTS.seed, "Training seed of every trial (weights, "
                     "noise, dropout, shuffle order).")
flags.DEFINE_enum("precision", _DEFAULTS.precision, list(config_lib.PRECISION_CHOICES),
                  "Compute precision of the train step.")
flags.DEFINE_enum("jit_compile", _DEFAULTS.jit_compile, list(config_lib.JIT_COMPILE_CHOICES),
                  "Compile the train step with XLA; auto turns it on for GPUs only.")
flags.DEFINE_integer("checkpoint_every", _DEFAULTS.checkpoint_every, "Steps between "
                     "checkpoints of a trial, besides one at each epoch end.")
flags.DEFINE_integer("eval_every", _DEFAULTS.eval_every, "Epochs between evaluations of a "
                     "trial; the pruners see these. Must be >= 1.")
flags.DEFINE_integer("eval_samples", _DEFAULTS.eval_samples, "Generated images per "
                     "evaluation.")
flags.DEFINE_float("ema_decay", _DEFAULTS.ema_decay, "Decay of the generator's weight average, "
                   "in [0, 1); trials are scored on the averaged generator unless this is 0.")
flags.DEFINE_string("data_dir", None, "TFDS data dir of the prepared mnist data set.")
flags.DEFINE_string("mnist_source", None, "Local MNIST copy to prepare the data set from.")

_VALUE_FLAGS = {"batch_size": "batch_sizes", "learning_rate": "learning_rates",
                "noise_dim": "noise_dims", "beta1": "beta1_values", "epochs": "epochs_values",
                "max_steps": "max_steps_values"}
_RANGE_FLAGS = {"learning_rate": "learning_rate_range", "beta1": "beta1_range"}


def _space_from_flags():
  """Builds the SearchSpace from --space or the space flags."""
  space_flags = list(_VALUE_FLAGS.values()) + list(_RANGE_FLAGS.values())
  space_flags_set = [name for name in space_flags if flags.FLAGS[name].value is not None]
  if flags.FLAGS.space is None and not space_flags_set:
    # SearchSpace's own message names hyperparameters, not the flags that set them.
    raise search.SearchError(
        f"search space is empty: pass --space=FILE or at least one of --{', --'.join(space_flags)}")
  if flags.FLAGS.space is not None:
    if space_flags_set:
      raise search.SearchError(
          f"--space and --{', --'.join(space_flags_set)} both set the search space; give one "
          "of them")
    return search.SearchSpace.from_file(flags.FLAGS.space)
  choices = {name: search.parse_values(name, flags.FLAGS[flag].value)
             for name, flag in _VALUE_FLAGS.items() if flags.FLAGS[flag].value is not None}
  ranges = {name: search.parse_range(name, flags.FLAGS[flag].value)
            for name, flag in _RANGE_FLAGS.items() if flags.FLAGS[flag].value is not None}
  return search.SearchSpace(choices, ranges)


def _settings_from_flags(space):
  """Builds the SearchSettings; rejects a fixed flag for a hyperparameter that is searched."""
  if flags.FLAGS.method != "grid" and flags.FLAGS.num_trials is None:
    raise search.SearchError(f"--num_trials is required with --method={flags.FLAGS.method}: give "
                             "the number of trials to run, a whole number >= 1")
  for name in space.names:
    if flags.FLAGS[name].present:
      raise search.SearchError(f"--{name} sets a hyperparameter that the search space varies; "
                               "remove it")
  train = config_lib.TrainConfig(
      output_dir=flags.FLAGS.output_dir,
      epochs=flags.FLAGS.epochs,
      max_steps=flags.FLAGS.max_steps,
      examples_per_epoch=flags.FLAGS.examples_per_epoch,
      batch_size=flags.FLAGS.batch_size,
      learning_rate=flags.FLAGS.learning_rate,
      noise_dim=flags.FLAGS.noise_dim,
      beta1=flags.FLAGS.beta1,
      beta2=flags.FLAGS.beta2,
      width=flags.FLAGS.width,
      seed=flags.FLAGS.train_seed,
      precision=flags.FLAGS.precision,
      jit_compile=flags.FLAGS.jit_compile,
      checkpoint_every=flags.FLAGS.checkpoint_every,
      eval_every=flags.FLAGS.eval_every,
      eval_samples=flags.FLAGS.eval_samples,
      ema_decay=flags.FLAGS.ema_decay,
      data_dir=flags.FLAGS.data_dir,
      mnist_source=flags.FLAGS.mnist_source,
  )
  return search.SearchSettings(
      output_dir=flags.FLAGS.output_dir,
      train=train,
      method=flags.FLAGS.method,
      num_trials=flags.FLAGS.num_trials,
      seed=flags.FLAGS.seed,
      pruner=flags.FLAGS.pruner,
      pruner_startup_trials=flags.FLAGS.pruner_startup_trials,
      tpe_startup_trials=flags.FLAGS.tpe_startup_trials,
      objective=flags.FLAGS.objective,
      storage=flags.FLAGS.storage,
      study_name=flags.FLAGS.study_name,
      heartbeat_seconds=flags.FLAGS.heartbeat_seconds,
      grace_seconds=flags.FLAGS.grace_seconds,
      poll_seconds=flags.FLAGS.poll_seconds,
      wait_for_others=flags.FLAGS.wait_for_others,
      retry_failed=flags.FLAGS.retry_failed,
  )


def _print_report(report):
  print(report.table)
  print()
  counts = ", ".join(f"{count} {state}" for state, count in sorted(report.counts.items()))
  print(f"Trials: {counts}")
  if report.best_command:
    print(f"Best: trial {report.best_trial}. Train it with:\n{report.best_command}")
  else:
    print("No trial completed, so there is no best configuration.")


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}; every setting is a --flag")
  try:
    space = _space_from_flags()
    settings = _settings_from_flags(space)
    # Checked before TensorFlow is imported, so a bad flag gets its one-line error at once.
    settings.validate(space)
    space.validate(settings.train)
    # Creates the folder, as the search would next.
    config_lib.check_writable_directory("output_dir", settings.output_dir)
  except (search.SearchError, config_lib.ConfigError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  from gan_lib import training  # pylint: disable=g-import-not-at-top

  try:
    if flags.FLAGS.report_only:
      study, _, lock = search.prepare_search(settings, space)
      with lock:
        report = search.write_report(study, settings, space)
    else:
      report = search.run_search(settings, space)
  except search.SearchError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  except training.TrainingInterrupted as interruption:
    logging.warning("%s; rerun the command to run the interrupted trial again", interruption)
    sys.exit(128 + interruption.signal_number)
  except KeyboardInterrupt:
    logging.warning("Stopped; rerun the command to run the interrupted trial again")
    sys.exit(130)
  _print_report(report)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
