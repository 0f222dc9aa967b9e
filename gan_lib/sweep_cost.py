"""Compute spent by the trials of a study, and the compute it needed to reach a score.

Search methods are compared by what they cost to find a good configuration, not
by their best score alone: a pruned search may reach the same score after fewer
trained images. The cost of a trial is the number of images it trained on
(train steps times batch size) and its wall-clock time, evaluations included.
"""

import dataclasses
import json
import math
import os
from typing import Optional

import optuna
from optuna.trial import TrialState

from gan_lib import search


@dataclasses.dataclass
class TrialCost:
  """One finished trial: its state, score and cost."""

  number: int
  state: str
  score: Optional[float]
  batch_size: int
  steps: int
  seconds: float

  @property
  def images(self):
    return self.steps * self.batch_size


@dataclasses.dataclass
class CostToReach:
  """The compute a study had spent when its best score first reached a target."""

  trials: int
  images: int
  seconds: float
  score: float


def _batch_size(trial, sweep_dir):
  if "batch_size" in trial.params:
    return int(trial.params["batch_size"])
  # A batch size that is not searched is in the trial's saved configuration.
  folder = trial.user_attrs.get("output_dir")
  if folder is None:
    raise ValueError(f"trial {trial.number} has no output folder to read its batch size from")
  path = os.path.join(sweep_dir, folder, "config.json")
  with open(path, encoding="utf-8") as file:
    return int(json.load(file)["batch_size"])


def _steps(trial):
  if "steps" in trial.user_attrs:
    return int(trial.user_attrs["steps"])
  # A pruned or failed trial stored its curve up to the last evaluation it reached.
  curve = trial.user_attrs.get(search.CURVE_ATTR) or []
  return int(curve[-1][1]) if curve else 0


def trial_costs(study, sweep_dir):
  """Returns a `TrialCost` per finished trial of `study`, in trial-number order.

  Args:
    study: an `optuna.Study` written by `gan_lib.search`.
    sweep_dir: the sweep's output folder, which contains the trials' folders.
  """
  costs = []
  for trial in sorted(study.get_trials(deepcopy=False), key=lambda trial: trial.number):
    if not trial.state.is_finished() or trial.datetime_start is None:
      continue
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    score = trial.value if trial.state == TrialState.COMPLETE else None
    costs.append(TrialCost(number=trial.number, state=trial.state.name, score=score,
                           batch_size=_batch_size(trial, sweep_dir), steps=_steps(trial),
                           seconds=seconds))
  return costs


def best_score(costs):
  """Returns the lowest score of the completed trials, or inf if none completed."""
  return min((cost.score for cost in costs if cost.score is not None), default=math.inf)


def cost_to_reach(costs, target):
  """Returns the `CostToReach` of the first trial scoring <= `target`, or None if none did.

  Trials count in number order, which is the order a single worker ran them.
  """
  images = 0
  seconds = 0.0
  for index, cost in enumerate(costs):
    images += cost.images
    seconds += cost.seconds
    if cost.score is not None and cost.score <= target:
      return CostToReach(trials=index + 1, images=images, seconds=seconds, score=cost.score)
  return None


def load_sweep(sweep_dir, storage=None):
  """Loads the study of a sweep folder, from its SQLite file unless `storage` is given.

  Raises:
    FileNotFoundError: the folder has no study.json naming its study.
  """
  path = os.path.join(sweep_dir, "study.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{sweep_dir!r} is not a sweep folder: {path} is missing")
  with open(path, encoding="utf-8") as file:
    study_name = json.load(file)["study_name"]
  url = storage or "sqlite:///" + os.path.abspath(os.path.join(sweep_dir, "study.db"))
  return optuna.load_study(study_name=study_name, storage=url)
