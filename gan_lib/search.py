"""Hyperparameter search over DCGAN training runs, durable and shared by workers.

Each trial trains one run with `training.train` into its own folder
`OUTPUT/trials/trial_NNNN/`. Its score is the Frechet distance of the averaged
generator, or of the generator when the run keeps no average, and lower is
better.
Optuna keeps the study in a relational database: a SQLite file
(`OUTPUT/study.db`) by default, or a PostgreSQL server that several machines
share.

How several workers share one study without running a planned trial twice:
  * The planned trials are drawn once and enqueued as WAITING trials, each with a
    `plan_index` user attribute. Grid search enqueues every combination (drawn by
    Optuna's GridSampler). Random search over a discrete space enqueues a prefix
    of GridSampler's seeded shuffle of the grid, which is a draw without
    replacement. Random search over a space with a range uses RandomSampler.
    TPE enqueues empty slots that its TPESampler fills when a trial starts.
  * Every change of the queue (enqueueing, claiming, recovering) happens under a
    study lock: an `flock` beside the SQLite file, or a PostgreSQL advisory lock.
    Optuna's own claim of a WAITING trial reads the state and then writes it, and
    on SQLite two processes can both pass that check, so claims need the lock.
  * A worker writes its host and process id to the trial it claims and records a
    heartbeat while the trial runs. A RUNNING trial is interrupted when its
    worker process on this host is gone, or when its heartbeat is older than the
    grace period. Such a trial is marked FAIL with a reason that starts with
    "interrupted", and is enqueued again with the same parameters and plan index.

A trial that raises (NaN losses, any other exception) is marked FAIL with its
reason in the `fail_reason` user attribute, and the search goes on. At the end
the worker writes the report: `trials.csv`, `best_command.txt`, a
`score_vs_<hyperparameter>.png` per hyperparameter, `score_over_epochs.png` and
TensorBoard HParams summaries in `tensorboard/`.
"""

import contextlib
import csv
import dataclasses
import fcntl
import gc
import hashlib
import io
import json
import math
import os
import re
import shlex
import socket
import tempfile
import threading
import time
from typing import Optional
import uuid
import warnings

from absl import logging
import optuna
from optuna.trial import TrialState

from gan_lib import config as config_lib
from gan_lib import io_utils

METHODS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "halving")
OBJECTIVES = ("best", "final")

PLAN_INDEX_ATTR = "plan_index"
RETRY_OF_ATTR = "retry_of"
RETRY_REASON_ATTR = "retry_reason"
FAIL_REASON_ATTR = "fail_reason"
CURVE_ATTR = "frechet_curve"  # [[epoch, train step, Frechet distance], ...]
_SPEC_ATTR = "search_spec"
_NUM_TRIALS_ATTR = "num_trials"
_INTERRUPTED = "interrupted"

# TrainConfig fields that change a trial's result. A resumed study must keep them,
# or its trials would not be comparable.
_RESULT_FIELDS = ("epochs", "max_steps", "examples_per_epoch", "batch_size", "noise_dim", "learning_rate", "beta1",
                  "beta2", "width", "seed", "precision", "ema_decay", "eval_every",
                  "eval_samples")
# Flags of examples/train_gan.py, in the order the best command lists them.
_TRAIN_GAN_FLAGS = ("epochs", "max_steps", "examples_per_epoch", "batch_size", "noise_dim", "learning_rate", "beta1",
                    "beta2", "width", "seed", "precision", "jit_compile", "checkpoint_every",
                    "eval_every", "eval_samples", "ema_decay", "data_dir", "mnist_source")

# Worker processes of this process whose search is still running, by token.
_ACTIVE_WORKER_TOKENS = set()


class SearchError(ValueError):
  """A search setting, search space or storage that is invalid; raised before any trial runs."""


class StudyMismatchError(SearchError):
  """The stored study was created with another search space or other training settings."""


# ---------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Hyperparameter:
  """Rules for the values of one hyperparameter of the space.

  Attributes:
    integer: whether values are whole numbers.
    minimum: smallest allowed value.
    minimum_inclusive: whether `minimum` itself is allowed.
    range_log: None if the hyperparameter takes lists only; otherwise whether a
      range is sampled log-uniformly (True) or uniformly (False).
  """

  integer: bool
  minimum: float
  minimum_inclusive: bool
  range_log: Optional[bool] = None


HYPERPARAMETERS = {
    "batch_size": _Hyperparameter(integer=True, minimum=1, minimum_inclusive=True),
    "learning_rate": _Hyperparameter(integer=False, minimum=0.0, minimum_inclusive=False,
                                     range_log=True),
    "noise_dim": _Hyperparameter(integer=True, minimum=1, minimum_inclusive=True),
    "beta1": _Hyperparameter(integer=False, minimum=0.0, minimum_inclusive=True,
                             range_log=False),
    "epochs": _Hyperparameter(integer=True, minimum=1, minimum_inclusive=True),
    "max_steps": _Hyperparameter(integer=True, minimum=1, minimum_inclusive=True),
}


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_value(name, value, context):
  """Raises SearchError unless `value` has the type and sign that `name` accepts."""
  spec = HYPERPARAMETERS[name]
  if spec.integer:
    if isinstance(value, bool) or not isinstance(value, int):
      raise SearchError(f"search space: {name} {context} {value!r} is invalid: expected a whole "
                        "number")
  elif not _is_number(value):
    raise SearchError(f"search space: {name} {context} {value!r} is invalid: expected a number")
  if spec.minimum_inclusive and value < spec.minimum:
    kind = "a whole number" if spec.integer else "a number"
    raise SearchError(f"search space: {name} {context} {value!r} is invalid: expected {kind} "
                      f">= {spec.minimum:g}")
  if not spec.minimum_inclusive and value <= spec.minimum:
    raise SearchError(f"search space: {name} {context} {value!r} is invalid: expected a number "
                      f"> {spec.minimum:g}")


class SearchSpace:
  """The hyperparameters a search varies, each with a list of values or a range.

  A list is searched as given (grid search tries every combination). A range is
  only for random search and TPE: learning_rate is drawn log-uniformly and beta1
  uniformly from [low, high]. Every other setting of a trial comes from the
  search's base `TrainConfig`.

  The file and mapping form:

    batch_size: [64, 128]
    learning_rate: {low: 1.0e-5, high: 1.0e-3}
    noise_dim: [64, 100]
  """

  def __init__(self, choices=None, ranges=None):
    """Checks the space's structure and values.

    Args:
      choices: {hyperparameter: list of values}.
      ranges: {hyperparameter: (low, high)}, for learning_rate and beta1.

    Raises:
      SearchError: the space is empty, names an unknown hyperparameter, gives one
        both a list and a range, or has an empty list, repeated values, a value
        of the wrong type or sign, or a range with low >= high.
    """
    choices = dict(choices or {})
    ranges = dict(ranges or {})
    if not choices and not ranges:
      raise SearchError(
          "search space is empty: give at least one hyperparameter to search, from "
          f"{', '.join(HYPERPARAMETERS)}")
    for name in list(choices) + list(ranges):
      if name not in HYPERPARAMETERS:
        raise SearchError(f"search space: unknown hyperparameter {name!r}; expected one of "
                          f"{', '.join(HYPERPARAMETERS)}")
    for name in sorted(set(choices) & set(ranges)):
      raise SearchError(f"search space: {name} has both a list of values and a range; give one")

    self._choices = {}
    for name, values in sorted(choices.items()):
      if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise SearchError(f"search space: {name} must be a list of values, got {values!r}")
      if not values:
        raise SearchError(f"search space: {name} has an empty list of values")
      for value in values:
        _check_value(name, value, "value")
      if len(set(values)) != len(values):
        raise SearchError(f"search space: {name} repeats a value in {list(values)}")
      self._choices[name] = list(values)

    self._ranges = {}
    for name, bounds in sorted(ranges.items()):
      if HYPERPARAMETERS[name].range_log is None:
        takes_ranges = [n for n, spec in HYPERPARAMETERS.items() if spec.range_log is not None]
        raise SearchError(f"search space: {name} takes a list of values; only "
                          f"{' and '.join(takes_ranges)} take a range")
      if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise SearchError(f"search space: the {name} range must be (low, high), got {bounds!r}")
      low, high = bounds
      _check_value(name, low, "range low")
      _check_value(name, high, "range high")
      if low >= high:
        raise SearchError(f"search space: the {name} range {low!r}:{high!r} is invalid: low must "
                          "be below high")
      self._ranges[name] = (float(low), float(high))

  @classmethod
  def from_mapping(cls, mapping, source="search space"):
    """Builds a space from {name: [values]} and {name: {"low": x, "high": y}} entries.

    Args:
      mapping: the parsed JSON or YAML document.
      source: where the mapping comes from, for error messages.

    Raises:
      SearchError: on a malformed entry or any error of `__init__`.
    """
    if not isinstance(mapping, dict):
      raise SearchError(f"{source}: expected a mapping of hyperparameter names to lists or "
                        f"ranges, got {type(mapping).__name__}")
    choices, ranges = {}, {}
    for name, entry in mapping.items():
      if isinstance(entry, dict):
        if set(entry) != {"low", "high"}:
          raise SearchError(f"{source}: the {name} range must have exactly the keys low and "
                            f"high, got {sorted(entry)}")
        ranges[name] = (entry["low"], entry["high"])
      else:
        choices[name] = entry
    return cls(choices, ranges)

  @classmethod
  def from_file(cls, path):
    """Reads a space from a JSON file (.json) or a YAML file (any other name).

    YAML numbers in exponent form without a dot (1e-5) are read as numbers, not
    as text as YAML 1.1 would.

    Raises:
      SearchError: the file is missing or unreadable, does not parse, or
        contains an invalid space.
    """
    try:
      with open(path, encoding="utf-8") as file:
        text = file.read()
    except OSError as error:
      raise SearchError(f"--space={path!r} cannot be read: {error.strerror}") from None
    try:
      if path.endswith(".json"):
        mapping = json.loads(text)
      else:
        mapping = _load_yaml(text)
    except ValueError as error:  # json.JSONDecodeError and yaml.YAMLError below
      raise SearchError(f"--space={path!r} does not parse: {error}") from None
    return cls.from_mapping(mapping, source=f"--space={path!r}")

  @property
  def names(self):
    """Hyperparameter names, sorted."""
    return tuple(sorted(list(self._choices) + list(self._ranges)))

  @property
  def choices(self):
    """{name: list of values} of the listed hyperparameters."""
    return {name: list(values) for name, values in self._choices.items()}

  @property
  def ranges(self):
    """{name: (low, high)} of the ranged hyperparameters."""
    return dict(self._ranges)

  @property
  def is_discrete(self):
    """Whether every hyperparameter has a list of values."""
    return not self._ranges

  @property
  def size(self):
    """Number of combinations of a discrete space; None when it has a range."""
    if not self.is_discrete:
      return None
    return math.prod(len(values) for values in self._choices.values())

  def distributions(self):
    """Returns {name: Optuna distribution} in name order."""
    distributions = {}
    for name in self.names:
      if name in self._choices:
        distributions[name] = optuna.distributions.CategoricalDistribution(self._choices[name])
      else:
        low, high = self._ranges[name]
        distributions[name] = optuna.distributions.FloatDistribution(
            low, high, log=HYPERPARAMETERS[name].range_log)
    return distributions

  def to_mapping(self):
    """Returns the space in the file form, JSON-serializable."""
    mapping = {name: list(values) for name, values in self._choices.items()}
    for name, (low, high) in self._ranges.items():
      mapping[name] = {"low": low, "high": high}
    return dict(sorted(mapping.items()))

  def validate(self, base_config):
    """Checks every value and range end against TrainConfig's rules.

    Args:
      base_config: the `TrainConfig` that supplies the settings not searched.

    Raises:
      SearchError: naming the hyperparameter, the value and the allowed range.
    """
    candidates = [(name, value, "value") for name, values in self._choices.items()
                  for value in values]
    for name, (low, high) in self._ranges.items():
      candidates += [(name, low, "range low"), (name, high, "range high")]
    # A scratch output folder, so the check writes nothing into the user's folders.
    with tempfile.TemporaryDirectory(prefix="gan_lib_search_check_") as scratch:
      for name, value, context in candidates:
        candidate = dataclasses.replace(base_config, output_dir=scratch, **{name: value})
        try:
          candidate.validate()
        except config_lib.ConfigError as error:
          reason = str(error).split("is invalid: ", 1)[-1]
          raise SearchError(
              f"search space: {name} {context} {value!r} is invalid: {reason}") from None

  def describe_changes(self, stored):
    """Returns sentences on how this space differs from `stored`; empty when equal."""
    changes = []
    old, new = stored.to_mapping(), self.to_mapping()
    for name in sorted(set(old) | set(new)):
      if name not in old:
        changes.append(f"added hyperparameter {name} ({_describe_entry(new[name])})")
      elif name not in new:
        changes.append(f"removed hyperparameter {name} ({_describe_entry(old[name])})")
      elif isinstance(old[name], list) and isinstance(new[name], list):
        added = [value for value in new[name] if value not in old[name]]
        removed = [value for value in old[name] if value not in new[name]]
        if added:
          changes.append(f"added {name} values {added}")
        if removed:
          changes.append(f"removed {name} values {removed}")
        if not added and not removed and old[name] != new[name]:
          changes.append(f"reordered {name} values from {old[name]} to {new[name]}")
      elif old[name] != new[name]:
        changes.append(f"changed {name} from {_describe_entry(old[name])} to "
                       f"{_describe_entry(new[name])}")
    return changes


def _describe_entry(entry):
  if isinstance(entry, dict):
    return f"range {entry['low']!r}:{entry['high']!r}"
  return f"values {entry}"


def _load_yaml(text):
  """Parses YAML, reading 1e-5 as a float, and raises ValueError on a syntax error."""
  import yaml  # pylint: disable=g-import-not-at-top

  class Loader(yaml.SafeLoader):
    pass

  Loader.add_implicit_resolver(
      "tag:yaml.org,2002:float",
      re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
      list("-+0123456789"))
  try:
    return yaml.load(text, Loader=Loader)  # Loader is a SafeLoader subclass.
  except yaml.YAMLError as error:
    raise ValueError(_describe_yaml_error(error)) from None


def _describe_yaml_error(error):
  """Returns a YAML error on one line, with 1-based line and column numbers.

  PyYAML's own text spans several lines and quotes the document's source.
  """
  problem = getattr(error, "problem", None)
  if problem is None:
    return " ".join(str(error).split())
  text = problem + _describe_yaml_mark(getattr(error, "problem_mark", None))
  context = getattr(error, "context", None)
  if context:
    text += f" ({context}{_describe_yaml_mark(getattr(error, 'context_mark', None))})"
  return text


def _describe_yaml_mark(mark):
  if mark is None:
    return ""
  return f" at line {mark.line + 1}, column {mark.column + 1}"


def parse_values(name, text):
  """Parses a comma-separated flag value such as "64,128" into a list for `name`.

  Raises:
    SearchError: a part is not a number of the hyperparameter's type.
  """
  values = []
  for part in text.split(","):
    part = part.strip()
    try:
      values.append(int(part) if HYPERPARAMETERS[name].integer else float(part))
    except ValueError:
      kind = "a whole number" if HYPERPARAMETERS[name].integer else "a number"
      raise SearchError(
          f"search space: {name} value {part!r} is invalid: expected {kind}") from None
  return values


def parse_range(name, text):
  """Parses a flag value "low:high" such as "1e-5:1e-3" into (low, high).

  Raises:
    SearchError: the text is not two numbers separated by a colon.
  """
  parts = text.split(":")
  try:
    if len(parts) != 2:
      raise ValueError
    return float(parts[0]), float(parts[1])
  except ValueError:
    raise SearchError(f"search space: the {name} range {text!r} is invalid: expected low:high, "
                      "such as 1e-5:1e-3") from None


# ---------------------------------------------------------------------------
# Settings and the plan
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class SearchSettings:
  """Settings of a search other than its space.

  Attributes:
    output_dir: folder of the trials, the report and the default SQLite study.
    train: the `TrainConfig` of every trial before the searched hyperparameters
      are set; its output_dir is replaced by the trial's folder.
    method: "grid", "random" or "tpe".
    num_trials: trials to run for random search and TPE; must be None for grid.
    seed: seed of the random and TPE draws (the training seed is `train.seed`).
    pruner: "none", "median" (MedianPruner) or "halving"
      (SuccessiveHalvingPruner), applied to the per-epoch Frechet distance.
    pruner_startup_trials: finished trials before the median pruner prunes.
    tpe_startup_trials: trials TPE draws at random before it models the scores.
    objective: "best" scores a trial by its lowest Frechet distance over the
      evaluations, "final" by the last one.
    storage: database URL (sqlite:///PATH or postgresql://...); None for
      sqlite:///OUTPUT/study.db.
    study_name: name of the study in the storage.
    heartbeat_seconds: seconds between heartbeats of a running trial.
    grace_seconds: seconds without a heartbeat after which a running trial of
      another host counts as interrupted.
    poll_seconds: seconds between checks while other workers finish the last
      trials.
    wait_for_others: whether a worker without a trial to claim waits for the
      other workers' running trials (and reruns those that are interrupted)
      before it writes the report.
    retry_failed: whether to enqueue again the planned trials whose every
      attempt failed.
  """

  output_dir: str
  train: config_lib.TrainConfig
  method: str = "grid"
  num_trials: Optional[int] = None
  seed: int = 0
  pruner: str = "none"
  pruner_startup_trials: int = 5
  tpe_startup_trials: int = 10
  objective: str = "best"
  storage: Optional[str] = None
  study_name: str = "dcgan_sweep"
  heartbeat_seconds: float = 30.0
  grace_seconds: float = 180.0
  poll_seconds: float = 10.0
  wait_for_others: bool = True
  retry_failed: bool = False

  def validate(self, space):
    """Raises SearchError naming the first invalid setting."""
    if self.method not in METHODS:
      raise SearchError(
          f"--method={self.method!r} is invalid: expected one of {', '.join(METHODS)}")
    if self.pruner not in PRUNERS:
      raise SearchError(
          f"--pruner={self.pruner!r} is invalid: expected one of {', '.join(PRUNERS)}")
    if self.objective not in OBJECTIVES:
      raise SearchError(
          f"--objective={self.objective!r} is invalid: expected one of {', '.join(OBJECTIVES)}")
    if self.method == "grid":
      if self.num_trials is not None:
        raise SearchError(f"--num_trials={self.num_trials} is invalid with --method=grid: grid "
                          "search runs every combination once")
      if not space.is_discrete:
        ranged = ", ".join(space.ranges)
        raise SearchError(f"--method=grid needs a list of values for every hyperparameter, but "
                          f"{ranged} has a range; give values or use --method=random or tpe")
    elif self.num_trials is None:
      raise SearchError(f"--num_trials=None is invalid: --method={self.method} requires "
                        "--num_trials, a whole number >= 1")
    elif isinstance(self.num_trials, bool) or not isinstance(self.num_trials, int) or (
        self.num_trials < 1):
      raise SearchError(f"--num_trials={self.num_trials!r} is invalid: --method={self.method} "
                        "needs a whole number >= 1")
    for name in ("seed", "pruner_startup_trials", "tpe_startup_trials"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SearchError(f"--{name}={value!r} is invalid: expected a whole number >= 0")
    for name in ("heartbeat_seconds", "grace_seconds", "poll_seconds"):
      value = getattr(self, name)
      if not _is_number(value) or value <= 0:
        raise SearchError(f"--{name}={value!r} is invalid: expected a number of seconds > 0")
    if self.grace_seconds <= self.heartbeat_seconds:
      raise SearchError(f"--grace_seconds={self.grace_seconds!r} is invalid: it must exceed "
                        f"--heartbeat_seconds={self.heartbeat_seconds!r}")
    if not self.study_name:
      raise SearchError("--study_name is missing: expected a name for the study")
    with tempfile.TemporaryDirectory(prefix="gan_lib_search_check_") as scratch:
      try:
        dataclasses.replace(self.train, output_dir=scratch).validate()
      except config_lib.ConfigError as error:
        raise SearchError(str(error)) from None
    if self.train.eval_every < 1:
      raise SearchError(f"--eval_every={self.train.eval_every} is invalid: trials are scored by "
                        "the Frechet distance, so evaluation must be on (>= 1)")

  def spec(self, space):
    """Returns what a resumed study must keep unchanged, as a JSON-serializable dict."""
    training_settings = {name: getattr(self.train, name) for name in _RESULT_FIELDS
                         if name not in space.names}
    return {"method": self.method, "seed": self.seed, "objective": self.objective,
            "space": space.to_mapping(), "training": training_settings}

  def planned_trials(self, space):
    """Returns the number of planned trials.

    That is the grid size for grid search, num_trials capped at the space size
    for random search over a discrete space, and num_trials otherwise.
    """
    if self.method == "grid":
      return space.size
    if self.method == "random" and space.is_discrete:
      return min(self.num_trials, space.size)
    return self.num_trials


@contextlib.contextmanager
def _without_heartbeat_warnings():
  """Hides Optuna's warnings about heartbeats outside `Study.optimize`.

  Optuna 5.1 marks `fail_stale_trials` experimental and warns when `ask()` runs
  on a storage with heartbeats, because `optimize()` records them itself. Here
  `_Worker` records them.
  """
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    yield


@contextlib.contextmanager
def _quiet_optuna():
  """Hides Optuna's INFO lines, such as the one for each in-memory study, and restores the level."""
  level = optuna.logging.get_verbosity()
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  try:
    yield
  finally:
    optuna.logging.set_verbosity(level)


def draw_plan(space, method, num_trials, seed):
  """Returns the planned trials' parameters: a list of {name: value}, one per trial.

  The draw depends only on the arguments, so every worker and every resumed run
  gets the same plan.

  Args:
    space: a `SearchSpace`.
    method: "grid" (every combination), "random" or "tpe" (empty dicts, since
      TPE draws when a trial starts).
    num_trials: trials for random and TPE. Random search over a discrete space
      draws without replacement and caps the count at the number of
      combinations, with a logged message.
    seed: seed of the grid order and of the random draw.
  """
  if method == "tpe":
    return [{} for _ in range(num_trials)]
  if method == "grid" or space.is_discrete:
    count = space.size
    if method == "random":
      if num_trials > space.size:
        logging.info("Random search: capped --num_trials=%d at the %d combinations of the "
                     "discrete space, since draws are without replacement", num_trials, space.size)
      count = min(num_trials, space.size)
    # GridSampler gives trial number k the k-th combination of a grid shuffled by the seed.
    sampler = optuna.samplers.GridSampler(space.choices, seed=seed)
  else:
    count = num_trials
    sampler = optuna.samplers.RandomSampler(seed=seed)
  with _quiet_optuna():
    study = optuna.create_study(sampler=sampler)
    distributions = space.distributions()
    return [study.ask(fixed_distributions=distributions).params for _ in range(count)]


def _derive_seed(seed, plan_index):
  digest = hashlib.sha256(f"{seed}:{plan_index}".encode()).digest()
  return int.from_bytes(digest[:4], "little")


class PlanSeededSampler(optuna.samplers.BaseSampler):
  """Delegates to a sampler seeded from (seed, the trial's plan index).

  One seeded TPESampler per process would give two workers started with the same
  seed the same random start-up draws, so each planned trial gets a sampler of
  its own seed. The samplers read the history from the study, so nothing else
  is lost.
  """

  def __init__(self, make_sampler, seed):
    """Stores the sampler factory; samplers are built when trials start.

    Args:
      make_sampler: fn(seed) -> `optuna.samplers.BaseSampler`.
      seed: the search seed.
    """
    self._make_sampler = make_sampler
    self._seed = seed
    self._current = (None, None)  # (plan index, sampler)

  def _sampler_for(self, trial):
    plan_index = trial.user_attrs.get(PLAN_INDEX_ATTR, trial.number)
    if self._current[0] != plan_index:
      self._current = (plan_index, self._make_sampler(_derive_seed(self._seed, plan_index)))
    return self._current[1]

  def infer_relative_search_space(self, study, trial):
    return self._sampler_for(trial).infer_relative_search_space(study, trial)

  def sample_relative(self, study, trial, search_space):
    return self._sampler_for(trial).sample_relative(study, trial, search_space)

  def sample_independent(self, study, trial, param_name, param_distribution):
    return self._sampler_for(trial).sample_independent(study, trial, param_name,
                                                       param_distribution)

  def before_trial(self, study, trial):
    self._sampler_for(trial).before_trial(study, trial)

  def after_trial(self, study, trial, state, values):
    self._sampler_for(trial).after_trial(study, trial, state, values)


def make_sampler(settings, space):
  """Returns the sampler of the shared study.

  Grid and random trials are enqueued with all their parameters, so their
  sampler never draws. It is of the same kind as the one that drew the plan.
  """
  if settings.method == "tpe":
    return PlanSeededSampler(
        lambda seed: optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=settings.tpe_startup_trials, constant_liar=True),
        settings.seed)
  if settings.method == "grid" or space.is_discrete:
    return optuna.samplers.GridSampler(space.choices, seed=settings.seed)
  return optuna.samplers.RandomSampler(seed=settings.seed)


def make_pruner(settings):
  """Returns the Optuna pruner that `settings.pruner` names."""
  if settings.pruner == "median":
    return optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup_trials)
  if settings.pruner == "halving":
    return optuna.pruners.SuccessiveHalvingPruner()
  return optuna.pruners.NopPruner()


# ---------------------------------------------------------------------------
# Storage and the study lock
# ---------------------------------------------------------------------------


def storage_url(settings):
  """Returns the database URL: `settings.storage`, or sqlite:///OUTPUT/study.db."""
  if settings.storage:
    return settings.storage
  return "sqlite:///" + os.path.abspath(os.path.join(settings.output_dir, "study.db"))


def redact_url(url):
  """Returns `url` with its password replaced by ***, for messages and logs."""
  import sqlalchemy  # pylint: disable=g-import-not-at-top
  try:
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
  except sqlalchemy.exc.ArgumentError:
    return "<unparsable URL>"


def _parse_storage_url(url):
  """Returns the SQLAlchemy URL for `url`, choosing psycopg2 for a plain postgresql:// URL.

  SQLAlchemy 2.1 maps postgresql:// to psycopg 3, but the "postgres" extra of
  setup.py installs psycopg2, so a URL without a driver gets psycopg2 when it
  is installed.

  Raises:
    SearchError: the URL does not parse or names a database other than SQLite
      and PostgreSQL, or an in-memory SQLite database.
  """
  import sqlalchemy  # pylint: disable=g-import-not-at-top
  try:
    parsed = sqlalchemy.engine.make_url(url)
  except sqlalchemy.exc.ArgumentError:
    # The URL is not repeated, since it may contain a password.
    raise SearchError("--storage is invalid: the URL does not parse; expected a database URL "
                      "such as sqlite:///runs/study.db or postgresql://user:password@host/db"
                      ) from None
  backend = parsed.get_backend_name()
  if backend == "sqlite":
    if not parsed.database or parsed.database == ":memory:":
      raise SearchError(f"--storage={redact_url(url)} is invalid: an in-memory SQLite database "
                        "does not outlive the process; give a file, sqlite:///PATH")
    return parsed
  if backend == "postgresql":
    if parsed.drivername == "postgresql":
      try:
        import psycopg2  # pylint: disable=g-import-not-at-top,unused-import
        parsed = parsed.set(drivername="postgresql+psycopg2")
      except ImportError:
        pass  # SQLAlchemy's default driver, or its import error, applies.
    return parsed
  raise SearchError(f"--storage={redact_url(url)} is invalid: supported databases are SQLite "
                    f"(sqlite:///PATH) and PostgreSQL (postgresql://...), got {backend}")


class StudyLock:
  """A lock that every worker of one study takes to change the trial queue.

  SQLite: an exclusive `flock` on `<database>.lock`, since a SQLite file is
  shared by processes of one host only. PostgreSQL: a session advisory lock
  keyed by the study name, on a connection of its own. Both are released when
  the holder exits, even after SIGKILL, so no stale lock survives a crash.
  """

  def __init__(self, parsed_url, study_name):
    """Connects once to check that the storage is reachable.

    Raises:
      SearchError: the SQLite folder is missing or the server is unreachable.
    """
    self._backend = parsed_url.get_backend_name()
    self._file = None
    self._connection = None
    if self._backend == "sqlite":
      database = os.path.abspath(parsed_url.database)
      folder = os.path.dirname(database)
      if not os.path.isdir(folder):
        raise SearchError(f"--storage: the folder {folder} of the SQLite database does not "
                          "exist; create it or choose another path")
      self._path = database + ".lock"
    else:
      import sqlalchemy  # pylint: disable=g-import-not-at-top
      digest = hashlib.sha256(f"gan_lib.search:{study_name}".encode()).digest()
      self._key = int.from_bytes(digest[:8], "big", signed=True)
      try:
        self._engine = sqlalchemy.create_engine(
            parsed_url, poolclass=sqlalchemy.pool.NullPool,
            connect_args=_connect_args(parsed_url))
      except ImportError as error:
        raise SearchError(f"--storage: the database driver for {parsed_url.drivername} is not "
                          f"installed ({error}); install it with pip install -e '.[postgres]'"
                          ) from None
      try:
        with self._engine.connect():
          pass
      except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
        raise SearchError(
            f"--storage={parsed_url.render_as_string(hide_password=True)} is unreachable: "
            f"{_first_line(error.orig or error)}; check that the server runs and that the host, "
            "port, user, password and database are right") from None

  def __enter__(self):
    if self._backend == "sqlite":
      self._file = open(self._path, "a", encoding="utf-8")
      fcntl.flock(self._file, fcntl.LOCK_EX)
    else:
      import sqlalchemy  # pylint: disable=g-import-not-at-top
      self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
      self._connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"),
                               {"key": self._key})
    return self

  def __exit__(self, *exc_info):
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None
    if self._connection is not None:
      import sqlalchemy  # pylint: disable=g-import-not-at-top
      try:
        self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"),
                                 {"key": self._key})
      finally:
        # Closing the connection also releases the lock if the unlock failed.
        self._connection.close()
        self._connection = None


def _connect_args(parsed_url):
  if parsed_url.get_backend_name() == "sqlite":
    # Seconds a writer waits for another one; heartbeats and results are written
    # outside the study lock.
    return {"timeout": 60}
  return {"connect_timeout": 10}


def _first_line(error):
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def open_storage(settings):
  """Connects to the study's database, creating Optuna's tables if needed.

  Returns:
    (RDBStorage, StudyLock).

  Raises:
    SearchError: the URL is invalid or the database is unreachable.
  """
  url = storage_url(settings)
  parsed = _parse_storage_url(url)
  lock = StudyLock(parsed, settings.study_name)
  import sqlalchemy  # pylint: disable=g-import-not-at-top
  with lock, _without_heartbeat_warnings():
    try:
      storage = optuna.storages.RDBStorage(
          parsed.render_as_string(hide_password=False),
          engine_kwargs={"connect_args": _connect_args(parsed), "pool_pre_ping": True},
          heartbeat_interval=max(1, int(round(settings.heartbeat_seconds))),
          grace_period=max(2, int(round(settings.grace_seconds))),
          heartbeat_stale_trial_callback=_retry_stale_trial)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as error:
      raise SearchError(f"--storage={redact_url(url)} cannot be opened: "
                        f"{_first_line(getattr(error, 'orig', None) or error)}") from None
  return storage, lock


# ---------------------------------------------------------------------------
# The study: creation, the stored spec, the queue and recovery
# ---------------------------------------------------------------------------


def _compare_specs(stored, current):
  """Returns sentences on how `current` differs from the `stored` spec."""
  changes = []
  for key in ("method", "seed", "objective"):
    if stored.get(key) != current[key]:
      changes.append(f"--{key} changed from {stored.get(key)!r} to {current[key]!r}")
  changes += SearchSpace.from_mapping(current["space"]).describe_changes(
      SearchSpace.from_mapping(stored["space"]))
  old_training, new_training = stored.get("training", {}), current["training"]
  for name in sorted(set(old_training) | set(new_training)):
    if name in old_training and name in new_training and old_training[name] != new_training[name]:
      changes.append(f"training setting --{name} changed from {old_training[name]!r} to "
                     f"{new_training[name]!r}")
  return changes


def open_study(settings, space, storage, lock):
  """Creates or loads the study, checks its stored spec and enqueues missing planned trials.

  Returns:
    The `optuna.Study`.

  Raises:
    StudyMismatchError: the study was created with another search space, method,
      seed, objective or training setting, or for more trials.
  """
  spec = settings.spec(space)
  planned = settings.planned_trials(space)
  with lock, _quiet_optuna():
    study = optuna.create_study(
        storage=storage, study_name=settings.study_name, sampler=make_sampler(settings, space),
        pruner=make_pruner(settings), direction="minimize", load_if_exists=True)
    stored = study.user_attrs.get(_SPEC_ATTR)
    if stored is None:
      study.set_user_attr(_SPEC_ATTR, spec)
      logging.info("Created study %s in %s: %s search, %d planned trials", settings.study_name,
                   redact_url(storage_url(settings)), settings.method, planned)
    else:
      changes = _compare_specs(stored, spec)
      if changes:
        raise StudyMismatchError(
            f"study {settings.study_name!r} in {redact_url(storage_url(settings))} was created "
            f"for another search: {'; '.join(changes)}. Rerun with the original settings to "
            "resume it, or give a new --study_name (or --output_dir) for this search")
    stored_count = study.user_attrs.get(_NUM_TRIALS_ATTR)
    if stored_count is not None and planned < stored_count:
      raise StudyMismatchError(
          f"study {settings.study_name!r} already plans {stored_count} trials; "
          f"--num_trials={settings.num_trials} would drop some. Give --num_trials >= "
          f"{stored_count}")
    if stored_count is not None and planned > stored_count:
      logging.info("Extending study %s from %d to %d planned trials", settings.study_name,
                   stored_count, planned)
    study.set_user_attr(_NUM_TRIALS_ATTR, planned)
    _enqueue_missing(study, draw_plan(space, settings.method, settings.num_trials, settings.seed),
                     settings.retry_failed)
  return study


def _enqueue_missing(study, plan, retry_failed):
  """Enqueues each planned trial that has no trial yet.

  It also enqueues again a planned trial whose attempts all failed, the last
  one by an interruption: a worker killed after marking an interrupted trial
  FAIL and before enqueueing its rerun leaves that state. With `retry_failed`,
  it enqueues again every planned trial whose every attempt failed.
  """
  by_index = {}
  for trial in study.get_trials(deepcopy=False):
    index = trial.user_attrs.get(PLAN_INDEX_ATTR)
    if index is not None:
      by_index.setdefault(index, []).append(trial)
  added = 0
  for index, params in enumerate(plan):
    attempts = by_index.get(index, [])
    if not attempts:
      study.enqueue_trial(params, user_attrs={PLAN_INDEX_ATTR: index})
      added += 1
    elif all(trial.state == TrialState.FAIL for trial in attempts):
      last = max(attempts, key=lambda trial: trial.number)
      # Optuna's stale-heartbeat check marks a trial FAIL without a fail_reason.
      reason = last.user_attrs.get(
          FAIL_REASON_ATTR, f"{_INTERRUPTED}: no heartbeat within the grace period")
      if retry_failed:
        _enqueue_retry(study, last, "--retry_failed")
      elif reason.startswith(_INTERRUPTED):
        _enqueue_retry(study, last, reason)
  if added:
    logging.info("Enqueued %d planned trials", added)


def _full_params(trial):
  """Returns the trial's parameters, including enqueued ones it had not suggested yet."""
  return dict(trial.system_attrs.get("fixed_params", {}), **trial.params)


def _enqueue_retry(study, trial, reason):
  study.enqueue_trial(_full_params(trial), user_attrs={
      PLAN_INDEX_ATTR: trial.user_attrs.get(PLAN_INDEX_ATTR),
      RETRY_OF_ATTR: trial.number,
      RETRY_REASON_ATTR: reason})
  logging.warning("Enqueued trial %d again (%s)", trial.number, reason)


def _retry_stale_trial(study, trial):
  """Heartbeat-stale callback of the storage: enqueues the failed trial again."""
  _enqueue_retry(study, trial, f"{_INTERRUPTED}: no heartbeat within the grace period")


def _host_key():
  """Returns an id of this host and PID namespace, under which process ids are comparable."""
  parts = [socket.gethostname()]
  try:
    with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as file:
      parts.append(file.read().strip())
    parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
  except OSError:
    pass  # Not Linux: the host name alone.
  return "/".join(parts)


def _process_start(pid):
  """Returns the start time of process `pid` in clock ticks after boot, or None if unknown."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as file:
      fields = file.read().rsplit(")", 1)[1].split()
  except (OSError, IndexError):
    return None
  # Fields after the command name start at field 3 (state); starttime is field 22.
  return None if fields[0] in ("Z", "X") else fields[19]  # Z: zombie, X: dead


def _process_alive(pid, start):
  """Returns whether process `pid` runs and, if `start` is known, started at `start`."""
  if os.path.isdir("/proc/self"):
    current_start = _process_start(pid)
    return current_start is not None and (start is None or current_start == start)
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class _Worker:
  """Claims, runs and records trials of one study until none is left."""

  def __init__(self, settings, space, storage, lock, study, runner):
    self.settings = settings
    self.space = space
    self.storage = storage
    self.lock = lock
    self.study = study
    self.runner = runner
    self.study_id = storage.get_study_id_from_name(settings.study_name)
    self.host_key = _host_key()
    self.token = uuid.uuid4().hex
    self.completed = 0

  def run(self):
    _ACTIVE_WORKER_TOKENS.add(self.token)
    waiting_for = None
    try:
      while True:
        trial = self._claim()
        if trial is not None:
          self._run(trial)
          continue
        running = [trial.number for trial in
                   self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if not running or not self.settings.wait_for_others:
          break
        if running != waiting_for:  # Logged once per set of running trials.
          logging.info("No trial to claim; waiting for the running trial(s) %s of other workers",
                       ", ".join(map(str, running)))
          waiting_for = running
        time.sleep(self.settings.poll_seconds)
    finally:
      _ACTIVE_WORKER_TOKENS.discard(self.token)

  def _claim(self):
    """Recovers interrupted trials and claims the oldest WAITING trial, under the study lock."""
    with self.lock:
      self._recover_interrupted()
      if not self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return None
      with _quiet_optuna(), _without_heartbeat_warnings():
        # The lock makes this ask() pop a WAITING trial; it never creates one.
        trial = self.study.ask(fixed_distributions=self.space.distributions())
      for name, value in (("worker_host", self.host_key), ("worker_pid", os.getpid()),
                          ("worker_start", _process_start(os.getpid())),
                          ("worker_token", self.token),
                          ("worker", f"{socket.gethostname()}:{os.getpid()}")):
        trial.set_user_attr(name, value)
      self.storage.record_heartbeat(self._trial_id(trial.number))
    return trial

  def _trial_id(self, number):
    return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

  def _recover_interrupted(self):
    """Marks FAIL and enqueues again the RUNNING trials whose worker is gone.

    Called under the study lock, so a RUNNING trial without worker attributes is
    one whose worker died while claiming it.
    """
    for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
      attrs = trial.user_attrs
      if "worker_host" not in attrs:
        reason = f"{_INTERRUPTED}: its worker stopped while claiming it"
      elif attrs["worker_host"] != self.host_key:
        continue  # Another host: the heartbeat check below decides.
      elif attrs["worker_pid"] == os.getpid():
        if attrs.get("worker_token") in _ACTIVE_WORKER_TOKENS:
          continue
        reason = f"{_INTERRUPTED}: an earlier search in this process stopped during it"
      elif _process_alive(attrs["worker_pid"], attrs.get("worker_start")):
        continue
      else:
        worker = attrs.get("worker", attrs["worker_pid"])
        reason = f"{_INTERRUPTED}: worker process {worker} is gone"
      trial_id = self._trial_id(trial.number)
      try:
        self.storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
        with _quiet_optuna():
          self.study.tell(trial.number, state=TrialState.FAIL)
      except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
        if not self.storage.get_trial(trial_id).state.is_finished():
          raise
        continue  # Its worker finished it after all.
      _enqueue_retry(self.study, trial, reason)
    with _without_heartbeat_warnings():
      optuna.storages.fail_stale_trials(self.study)

  def _run(self, trial):
    """Runs one claimed trial and records its outcome; re-raises only interruptions."""
    stop_heartbeat = threading.Event()
    heartbeat = threading.Thread(target=self._beat, args=(trial.number, stop_heartbeat),
                                 name=f"heartbeat-trial-{trial.number}", daemon=True)
    heartbeat.start()
    logging.info("Trial %d (plan index %s) starts: %s", trial.number,
                 trial.user_attrs.get(PLAN_INDEX_ATTR), _format_params(trial.params))
    try:
      outcome = self.runner.run(trial)
    except optuna.TrialPruned as pruned:
      logging.info("Trial %d pruned: %s", trial.number, pruned)
      self._finish(trial, TrialState.PRUNED)
    except BaseException as error:  # pylint: disable=broad-except
      if _is_interruption(error):
        reason = f"{_INTERRUPTED}: {type(error).__name__}: {_first_line(error)}"
        with self.lock:
          if self._finish(trial, TrialState.FAIL, user_attrs={FAIL_REASON_ATTR: reason}):
            _enqueue_retry(self.study, trial, reason)
        raise
      reason = f"{type(error).__name__}: {_first_line(error)}"
      logging.error("Trial %d failed: %s", trial.number, reason)
      self._finish(trial, TrialState.FAIL, user_attrs={FAIL_REASON_ATTR: reason})
    else:
      if self._finish(trial, TrialState.COMPLETE, outcome.score, outcome.user_attrs):
        self.completed += 1
        logging.info("Trial %d scored %.4f", trial.number, outcome.score)
    finally:
      stop_heartbeat.set()
      heartbeat.join()
      gc.collect()

  def _finish(self, trial, state, value=None, user_attrs=None):
    """Stores the trial's attributes and final state.

    Returns:
      False if another worker had already marked the trial finished, else True.
    """
    try:
      for name, attr in (user_attrs or {}).items():
        trial.set_user_attr(name, attr)
      with _quiet_optuna():
        self.study.tell(trial, value, state=state)
      return True
    # tell() raises ValueError for a trial it reads as finished, and the storage
    # raises UpdateFinishedTrialError for one finished while it writes.
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
      if not self.storage.get_trial(self._trial_id(trial.number)).state.is_finished():
        raise
      logging.warning("Trial %d was marked finished by another worker, which found its heartbeat "
                      "stale; this worker's result is discarded", trial.number)
      return False

  def _beat(self, number, stop):
    trial_id = self._trial_id(number)
    failures = 0
    while not stop.wait(self.settings.heartbeat_seconds):
      try:
        self.storage.record_heartbeat(trial_id)
      except Exception as error:  # pylint: disable=broad-except
        failures += 1
        logging.warning("Heartbeat of trial %d failed (%d in a row), will retry: %s", number,
                        failures, _first_line(error))
        continue
      if failures:
        logging.info("Heartbeat of trial %d recovered after %d failures", number, failures)
        failures = 0


def _is_interruption(error):
  """Returns whether `error` stops the worker (SIGINT, SIGTERM) rather than failing the trial."""
  from gan_lib import training  # pylint: disable=g-import-not-at-top
  return isinstance(error, (KeyboardInterrupt, SystemExit, training.TrainingInterrupted))


def _format_params(params):
  return ", ".join(f"{name}={value!r}" for name, value in sorted(params.items()))


# ---------------------------------------------------------------------------
# Running one trial
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class TrialOutcome:
  """The score of a finished trial and the user attributes to store with it."""

  score: float
  user_attrs: dict


class _RecordingEvaluator:
  """An evaluator wrapper that keeps each generator's latest results for the epoch callback."""

  def __init__(self, evaluator):
    self._evaluator = evaluator
    self._latest = {}

  def evaluate_generator(self, generator, num_samples, noise_dim=None, seed=0):
    results = self._evaluator.evaluate_generator(generator, num_samples, noise_dim, seed=seed)
    self._latest[id(generator)] = results
    return results

  def take(self, generator):
    """Returns the results for `generator` since the last call, or None, and clears them."""
    results = self._latest.pop(id(generator), None)
    self._latest.clear()
    return results


class TrialRunner:
  """Trains and scores one trial; shared by the trials of a process."""

  def __init__(self, settings, pipeline_factory=None, evaluator=None, train_function=None):
    """Stores the trial inputs; the data set and the evaluator are built on first use.

    Args:
      settings: the `SearchSettings`.
      pipeline_factory: fn(batch_size, seed) -> `data.EpochPipeline`; None for
        the TFDS MNIST train split, prepared once.
      evaluator: an object with `Evaluator.evaluate_generator`'s signature; None
        builds one `metrics.evaluator.Evaluator` on first use and keeps it.
      train_function: replaces `training.train`, with its signature.
    """
    self.settings = settings
    self._pipeline_factory = pipeline_factory
    self._pipelines = {}
    self._evaluator = evaluator
    self._train_function = train_function

  def prepare(self):
    """Prepares the default data set now, so a missing MNIST fails before any trial."""
    if self._pipeline_factory is None:
      from gan_lib import mnist_prep  # pylint: disable=g-import-not-at-top
      source = mnist_prep.ensure_mnist(self.settings.train.data_dir,
                                       local_source=self.settings.train.mnist_source)
      logging.info("MNIST source: %s", source)

  def _pipeline(self, batch_size, seed):
    # An EpochPipeline's order depends only on (seed, epoch), so trials can share one.
    key = (batch_size, seed)
    if key not in self._pipelines:
      if self._pipeline_factory is not None:
        self._pipelines[key] = self._pipeline_factory(batch_size, seed)
      else:
        from gan_lib import data  # pylint: disable=g-import-not-at-top
        self._pipelines[key] = data.EpochPipeline.from_tfds(
            batch_size, seed, data_dir=self.settings.train.data_dir)
    return self._pipelines[key]

  def evaluator(self):
    if self._evaluator is None:
      from metrics import evaluator as evaluator_lib  # pylint: disable=g-import-not-at-top
      self._evaluator = evaluator_lib.Evaluator(data_dir=self.settings.train.data_dir)
    return self._evaluator

  def run(self, trial):
    """Trains the trial's configuration and returns its `TrialOutcome`.

    Raises:
      optuna.TrialPruned: the pruner stopped the trial after an epoch.
      Exception: whatever training raises.
    """
    from gan_lib import evaluation  # pylint: disable=g-import-not-at-top
    from gan_lib import training  # pylint: disable=g-import-not-at-top

    folder = trial_folder(self.settings.output_dir, trial.number)
    _move_aside_stale(folder)
    config = dataclasses.replace(self.settings.train, output_dir=folder, **trial.params)
    pipeline = self._pipeline(config.batch_size, config.seed)
    recorder = _RecordingEvaluator(self.evaluator())
    prefix = "ema_" if config.ema_decay > 0 else ""
    curve = []

    def report_epoch(model, epoch):
      results = recorder.take(model.ema_generator or model.generator)
      if results is None:
        return {}
      distance = float(results["frechet_distance"])
      curve.append([float(epoch), int(model.step.numpy()), distance])
      trial.set_user_attr(CURVE_ATTR, curve)
      trial.report(distance, step=epoch)
      if trial.should_prune():
        raise optuna.TrialPruned(f"Frechet distance {distance:.4f} after epoch {epoch}")
      return {}

    train_function = self._train_function or training.train
    start = time.perf_counter()
    result = train_function(config, pipeline=pipeline, epoch_callback=report_epoch,
                            evaluator=recorder)
    rows = [dict(row) for row in result.epoch_rows if prefix + "frechet_distance" in row]
    if not rows or rows[-1]["step"] < result.step:
      # Training stopped (max_steps) after the last evaluated epoch: score the final weights.
      row = dict(epoch=result.step / pipeline.steps_for(config.examples_per_epoch),
                 step=result.step)
      row.update(evaluation.evaluate_model(recorder, result.model, config.eval_samples,
                                           seed=config.seed))
      rows.append(row)
      curve.append([row["epoch"], int(result.step), float(row[prefix + "frechet_distance"])])
    seconds = time.perf_counter() - start

    key = prefix + "frechet_distance"
    if self.settings.objective == "best":
      scored = min(rows, key=lambda row: row[key])
    else:
      scored = rows[-1]
    score = float(scored[key])
    if not math.isfinite(score):
      raise FloatingPointError(f"the Frechet distance is {score}")
    user_attrs = {name: float(value) for name, value in scored.items()
                  if name not in ("epoch", "step", "time", "seconds") and _is_number(value)}
    user_attrs.update({
        "score_epoch": float(scored["epoch"]),
        "score_generator": "averaged generator" if prefix else "generator",
        "steps": int(result.step),
        "train_seconds": round(seconds, 3),
        "output_dir": os.path.relpath(folder, self.settings.output_dir),
        CURVE_ATTR: curve,
    })
    return TrialOutcome(score=score, user_attrs=user_attrs)


def trial_folder(output_dir, number):
  """Returns OUTPUT/trials/trial_NNNN, the training folder of trial `number`."""
  return os.path.join(output_dir, "trials", f"trial_{number:04d}")


def _move_aside_stale(folder):
  """Renames a leftover folder of the same trial number, so the trial starts from fresh state.

  Trial numbers are unique in a study, so such a folder belongs to a deleted
  study or to another study that used the same output folder.
  """
  if os.path.isdir(folder) and os.listdir(folder):
    aside = f"{folder}.stale-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    os.rename(folder, aside)
    logging.warning("Moved the leftover folder %s to %s so the trial starts from scratch",
                    folder, aside)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class SearchReport:
  """Summary of a search and the report files written for it.

  Attributes:
    rows: one dict per trial, best first (see `trial_rows`).
    table: the rows as a text table.
    best_command: the command line that trains the best configuration, or None
      when no trial completed.
    best_trial: number of the best trial, or None.
    counts: {state name: number of trials}.
    files: paths of the files written.
  """

  rows: list
  table: str
  best_command: Optional[str]
  best_trial: Optional[int]
  counts: dict
  files: list


def _check_output_owner(settings):
  """Rejects an output folder that contains another study's trials."""
  path = os.path.join(settings.output_dir, "study.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as file:
      owner = json.load(file).get("study_name")
    if owner != settings.study_name:
      raise SearchError(
          f"--output_dir={settings.output_dir!r} contains the trials of study {owner!r}; give "
          f"--study_name={owner} to resume it, or choose another --output_dir")
  else:
    io_utils.atomic_write_text(path, json.dumps({"study_name": settings.study_name}) + "\n")


def prepare_search(settings, space):
  """Validates everything and opens the study, before any trial runs.

  Returns:
    (study, storage, lock).

  Raises:
    SearchError: on an invalid setting, space or storage, or a study created
      for another search.
  """
  settings.validate(space)
  space.validate(settings.train)
  try:
    config_lib.check_writable_directory("output_dir", settings.output_dir)
  except config_lib.ConfigError as error:
    raise SearchError(str(error)) from None
  storage, lock = open_storage(settings)
  _check_output_owner(settings)
  study = open_study(settings, space, storage, lock)
  return study, storage, lock


def run_search(settings, space, pipeline_factory=None, evaluator=None, train_function=None):
  """Runs the search's remaining trials in this process, then writes the report.

  Several processes may run it with the same settings at once; they share the
  trials. A rerun after a crash reruns the interrupted trials and the rest.

  Args:
    settings: a `SearchSettings`.
    space: a `SearchSpace`.
    pipeline_factory: fn(batch_size, seed) -> `data.EpochPipeline`; None for
      the MNIST train split.
    evaluator: an object with `metrics.evaluator.Evaluator.evaluate_generator`;
      None builds one Evaluator, reused by every trial of this process.
    train_function: replaces `training.train` (tests inject failures with it).

  Returns:
    The `SearchReport`.

  Raises:
    SearchError: before any trial, on an invalid setting, space or storage.
    training.TrainingInterrupted, KeyboardInterrupt: SIGINT or SIGTERM stopped a
      trial; it is marked FAIL and enqueued again for the next run.
  """
  study, storage, lock = prepare_search(settings, space)
  runner = TrialRunner(settings, pipeline_factory, evaluator, train_function)
  runner.prepare()
  worker = _Worker(settings, space, storage, lock, study, runner)
  worker.run()
  logging.info("This worker completed %d trial(s)", worker.completed)
  with lock:
    return write_report(study, settings, space)


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def trial_rows(study, space):
  """Returns one dict per trial, best first: COMPLETE by score, then PRUNED, then the rest.

  Each row has rank (COMPLETE trials only), trial, state, score, plan_index,
  retry_of, the hyperparameters, the metrics stored with the trial, and
  fail_reason.
  """
  trials = study.get_trials(deepcopy=False)
  retry_reasons = {trial.user_attrs[RETRY_OF_ATTR]: trial.user_attrs.get(RETRY_REASON_ATTR)
                   for trial in trials if trial.user_attrs.get(RETRY_OF_ATTR) is not None}

  def sort_key(trial):
    order = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}.get(trial.state, 2)
    value = trial.value if trial.value is not None else math.inf
    return (order, value if order < 2 else 0, trial.number)

  rows = []
  rank = 0
  for trial in sorted(trials, key=sort_key):
    params = _full_params(trial)
    row = {"rank": "", "trial": trial.number, "state": trial.state.name,
           "score": trial.value if trial.value is not None else "",
           "plan_index": trial.user_attrs.get(PLAN_INDEX_ATTR, ""),
           "retry_of": trial.user_attrs.get(RETRY_OF_ATTR, "")}
    if trial.state == TrialState.COMPLETE:
      rank += 1
      row["rank"] = rank
    for name in space.names:
      row[name] = params.get(name, "")
    for name, value in sorted(trial.user_attrs.items()):
      if _is_number(value) and name not in (PLAN_INDEX_ATTR, RETRY_OF_ATTR, "worker_pid"):
        row[name] = value
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    if reason is None and trial.state == TrialState.FAIL:
      reason = retry_reasons.get(trial.number, "")
    row["fail_reason"] = reason or ""
    row["output_dir"] = trial.user_attrs.get("output_dir", "")
    rows.append(row)
  return rows


def format_table(rows, space):
  """Returns the rows as a fixed-width text table of the main columns."""
  columns = ["rank", "trial", "state", "score", *space.names, "inception_score",
             "ema_inception_score", "score_epoch", "steps", "fail_reason"]
  columns = [column for column in columns
             if column in ("rank", "trial", "state", "score", "fail_reason")
             or column in space.names or any(row.get(column, "") != "" for row in rows)]

  def cell(value):
    if isinstance(value, float):
      return f"{value:.4g}"
    text = str(value)
    # Failure reasons can be long; trials.csv keeps them whole.
    return text if len(text) <= 60 else text[:57] + "..."

  cells = [[cell(row.get(column, "")) for column in columns] for row in rows]
  widths = [max([len(column)] + [len(line[i]) for line in cells])
            for i, column in enumerate(columns)]
  lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip()]
  for line in cells:
    lines.append("  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip())
  return "\n".join(lines)


def best_command(settings, params):
  """Returns the examples/train_gan.py command that trains `params` with the search's settings."""
  config = dataclasses.replace(settings.train, **params)
  arguments = ["python", "examples/train_gan.py",
               f"--output_dir={os.path.join(settings.output_dir, 'best_run')}"]
  for name in _TRAIN_GAN_FLAGS:
    value = getattr(config, name)
    if value is None:
      continue
    arguments.append(f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}")
  return shlex.join(arguments)


def write_report(study, settings, space):
  """Writes trials.csv, best_command.txt, the plots and the HParams summaries.

  Returns:
    The `SearchReport`.
  """
  output_dir = settings.output_dir
  rows = trial_rows(study, space)
  counts = {}
  for row in rows:
    counts[row["state"]] = counts.get(row["state"], 0) + 1
  files = []

  columns = []
  for row in rows:
    columns += [name for name in row if name not in columns]
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
  writer.writeheader()
  writer.writerows(rows)
  csv_path = os.path.join(output_dir, "trials.csv")
  io_utils.atomic_write_text(csv_path, buffer.getvalue())
  files.append(csv_path)

  complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
  command = best = None
  if complete:
    best_trial = min(complete, key=lambda trial: (trial.value, trial.number))
    best = best_trial.number
    command = best_command(settings, best_trial.params)
    command_path = os.path.join(output_dir, "best_command.txt")
    io_utils.atomic_write_text(
        command_path,
        f"# Best of {len(complete)} completed trial(s): trial {best}, Frechet distance "
        f"{best_trial.value:.4f}\n{command}\n")
    files.append(command_path)

  files += _write_plots(study, space, output_dir)
  files.append(_write_hparams(study, space, output_dir))
  unfinished = counts.get("RUNNING", 0) + counts.get("WAITING", 0)
  if unfinished:
    logging.warning("The report covers a study with %d unfinished trial(s); rerun the search "
                    "to finish them", unfinished)
  logging.info("Wrote the search report: %s", ", ".join(files))
  return SearchReport(rows=rows, table=format_table(rows, space), best_command=command,
                      best_trial=best, counts=counts, files=files)


def _save_figure(figure, path):
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  figure.tight_layout()
  figure.savefig(buffer, format="png", dpi=100)
  pyplot.close(figure)
  io_utils.atomic_write_bytes(path, buffer.getvalue())
  return path


def _set_value_scale(axis, values):
  """Uses a log scale for Frechet distances that span more than a factor of 10."""
  if values and min(values) > 0 and max(values) / min(values) > 10:
    axis.set_yscale("log")


def _write_plots(study, space, output_dir):
  """Writes score_vs_<name>.png per hyperparameter and score_over_epochs.png.

  Returns:
    The paths written.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top

  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  scored = [trial for trial in study.get_trials(deepcopy=False)
            if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and trial.value is not None]
  paths = []
  for name in space.names:
    figure, axis = pyplot.subplots(figsize=(5, 4))
    for state, marker, label in ((TrialState.COMPLETE, "o", "complete"),
                                 (TrialState.PRUNED, "x", "pruned (last value)")):
      points = [(trial.params[name], trial.value) for trial in scored
                if trial.state == state and name in trial.params]
      if points:
        axis.scatter([x for x, _ in points], [y for _, y in points], marker=marker, label=label)
    if name == "learning_rate":
      axis.set_xscale("log")
      axis.xaxis.set_minor_formatter(ticker.NullFormatter())
    _set_value_scale(axis, [trial.value for trial in scored])
    axis.set(xlabel=name, ylabel="Frechet distance (lower is better)",
             title=f"Score against {name}")
    if scored:
      axis.legend()
    paths.append(_save_figure(figure, os.path.join(output_dir, f"score_vs_{name}.png")))

  figure, axis = pyplot.subplots(figsize=(7, 4.5))
  curves = [(trial.number, trial.user_attrs.get(CURVE_ATTR))
            for trial in study.get_trials(deepcopy=False) if trial.user_attrs.get(CURVE_ATTR)]
  for number, curve in curves:
    axis.plot([point[0] for point in curve], [point[-1] for point in curve], marker="o",
              markersize=3, label=f"trial {number}")
  _set_value_scale(axis, [point[-1] for _, curve in curves for point in curve])
  axis.set(xlabel="epoch", ylabel="Frechet distance (lower is better)",
           title="Frechet distance over epochs, one line per trial")
  if 0 < len(curves) <= 20:
    axis.legend(fontsize="small", ncol=2)
  paths.append(_save_figure(figure, os.path.join(output_dir, "score_over_epochs.png")))
  return paths


def _write_hparams(study, space, output_dir):
  """Writes the TensorBoard HParams summaries of all trials to OUTPUT/tensorboard; returns it.

  The folder is written anew each time and swapped in whole, so event files of
  an earlier report do not repeat the trials.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top

  target = os.path.join(output_dir, "tensorboard")
  scratch = tempfile.mkdtemp(prefix="tensorboard.tmp-", dir=output_dir)
  hparams = {}
  for name in space.names:
    if name in space.choices:
      hparams[name] = hp.HParam(name, hp.Discrete(space.choices[name]))
    else:
      hparams[name] = hp.HParam(name, hp.RealInterval(*space.ranges[name]))
  metrics = [hp.Metric("score", display_name="Frechet distance (lower is better)"),
             hp.Metric("inception_score", display_name="Inception Score"),
             hp.Metric("ema_inception_score", display_name="Inception Score (averaged)")]
  writer = tf.summary.create_file_writer(scratch)
  with writer.as_default():
    hp.hparams_config(hparams=list(hparams.values()), metrics=metrics)
  writer.close()

  for trial in study.get_trials(deepcopy=False):
    params = _full_params(trial)
    if set(params) != set(hparams):
      continue  # A TPE slot that never started has no parameters yet.
    run_name = f"trial_{trial.number:04d}"
    writer = tf.summary.create_file_writer(os.path.join(scratch, run_name))
    with writer.as_default():
      hp.hparams({hparams[name]: value for name, value in params.items()}, trial_id=run_name)
      step = int(trial.user_attrs.get("steps", 0))
      if trial.value is not None:
        tf.summary.scalar("score", trial.value, step=step)
      for name in ("inception_score", "ema_inception_score"):
        if _is_number(trial.user_attrs.get(name)):
          tf.summary.scalar(name, trial.user_attrs[name], step=step)
      for _, train_step, distance in trial.user_attrs.get(CURVE_ATTR) or []:
        tf.summary.scalar("frechet_distance", distance, step=train_step)
    writer.close()
  io_utils.replace_directory(scratch, target)
  return target
