"""Tests of the compute accounting that compares sweeps."""

import json
import os
import subprocess
import sys

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
import pytest

from gan_lib import search
from gan_lib import sweep_cost

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "compare_sweeps.py")
_BATCH = {"batch_size": CategoricalDistribution([32, 64])}


def _run_script(*arguments):
  return subprocess.run([sys.executable, SCRIPT, *arguments], capture_output=True, text=True,
                        check=False, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                        timeout=120)


def _add(study, state, batch_size, value=None, steps=None, curve=None):
  user_attrs = {}
  if steps is not None:
    user_attrs["steps"] = steps
  if curve is not None:
    user_attrs[search.CURVE_ATTR] = curve
  study.add_trial(optuna.trial.create_trial(
      state=state, value=value, params={"batch_size": batch_size}, distributions=_BATCH,
      user_attrs=user_attrs))


def _write_sweep(folder, trials):
  """Writes a sweep folder with a SQLite study holding `trials` (see `_add`)."""
  os.makedirs(folder)
  with open(os.path.join(folder, "study.json"), "w", encoding="utf-8") as file:
    json.dump({"study_name": "dcgan_sweep"}, file)
  study = optuna.create_study(
      study_name="dcgan_sweep", storage="sqlite:///" + os.path.join(folder, "study.db"))
  for trial in trials:
    _add(study, *trial)
  return study


def test_costs_count_images_of_every_finished_trial(tmp_path):
  study = _write_sweep(str(tmp_path / "sweep"), [
      (TrialState.COMPLETE, 64, 50.0, 100, [[1, 50, 60.0], [2, 100, 50.0]]),
      (TrialState.PRUNED, 32, None, None, [[1, 200, 90.0]]),
      (TrialState.FAIL, 32, None, None, None),
      (TrialState.COMPLETE, 32, 40.0, 300, None),
  ])
  costs = sweep_cost.trial_costs(study, str(tmp_path / "sweep"))
  assert [cost.state for cost in costs] == ["COMPLETE", "PRUNED", "FAIL", "COMPLETE"]
  assert [cost.images for cost in costs] == [6400, 6400, 0, 9600]
  assert sweep_cost.best_score(costs) == 40.0
  reached = sweep_cost.cost_to_reach(costs, 45.0)
  assert reached.trials == 4
  assert reached.images == 6400 + 6400 + 9600
  assert reached.score == 40.0
  assert sweep_cost.cost_to_reach(costs, 50.0).images == 6400
  assert sweep_cost.cost_to_reach(costs, 39.0) is None


def test_batch_size_from_trial_config(tmp_path):
  folder = tmp_path / "sweep"
  folder.mkdir()
  (folder / "study.json").write_text(json.dumps({"study_name": "fixed"}))
  study = optuna.create_study(study_name="fixed",
                              storage="sqlite:///" + str(folder / "study.db"))
  trial_dir = folder / "trials" / "trial_0000"
  trial_dir.mkdir(parents=True)
  (trial_dir / "config.json").write_text(json.dumps({"batch_size": 128}))
  study.add_trial(optuna.trial.create_trial(
      state=TrialState.COMPLETE, value=10.0,
      user_attrs={"steps": 5, "output_dir": "trials/trial_0000"}))
  loaded = sweep_cost.load_sweep(str(folder))
  assert [cost.images for cost in sweep_cost.trial_costs(loaded, str(folder))] == [640]


def test_load_sweep_rejects_folder_without_study(tmp_path):
  with pytest.raises(FileNotFoundError, match="is not a sweep folder"):
    sweep_cost.load_sweep(str(tmp_path))


def test_script_prints_cost_to_common_target(tmp_path):
  _write_sweep(str(tmp_path / "slow"), [
      (TrialState.COMPLETE, 64, 80.0, 100),
      (TrialState.COMPLETE, 64, 60.0, 100),
  ])
  _write_sweep(str(tmp_path / "fast"), [
      (TrialState.PRUNED, 32, None, None, [[1, 10, 99.0]]),
      (TrialState.COMPLETE, 32, 55.0, 100),
  ])
  output = tmp_path / "comparison.json"
  completed = _run_script(f"--sweeps={tmp_path / 'slow'},{tmp_path / 'fast'}",
                          f"--output_json={output}")
  assert completed.returncode == 0, completed.stderr
  assert "Target Frechet distance: 60.0000" in completed.stdout
  rows = json.loads(output.read_text())
  assert [row["images_to_target"] for row in rows] == [12800, 3520]
  assert [row["trials_to_target"] for row in rows] == [2, 2]
  assert rows[1]["pruned"] == 1


def test_script_rejects_folder_that_is_not_a_sweep(tmp_path):
  completed = _run_script(f"--sweeps={tmp_path}")
  assert completed.returncode == 2
  assert "has no study.json" in completed.stderr


def test_script_rejects_missing_folder(tmp_path):
  completed = _run_script(f"--sweeps={tmp_path / 'missing'}")
  assert completed.returncode == 2
  assert "is invalid: no such folder" in completed.stderr
