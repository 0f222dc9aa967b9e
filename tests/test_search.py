"""Tests of the hyperparameter search: plans, rejected settings, failures, resume and workers.

Trials train width-4 networks on 16 synthetic images, and a fake evaluator
scores them from their generated images, so each trial takes a few seconds.
The worker tests run this file as a script (`--worker`) in subprocesses.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest

from gan_lib import config as config_lib
from gan_lib import data
from gan_lib import search

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "sweep.py")
IMAGES = np.random.default_rng(0).integers(0, 256, size=(16, 28, 28, 1), dtype=np.uint8)
WORKER_TIMEOUT = 300  # seconds; a worker runs a few tiny trials on a shared 2-core machine


class FakeEvaluator:
  """Scores a generator by the mean absolute pixel of its images: deterministic and cheap.

  Optionally, at its first call it creates a file in `barrier_dir` and waits
  until `barrier_count` files exist there, so that many workers each hold a
  trial at once. Or it blocks at call `block_at_call` after creating
  `block_file`, so a test can kill the worker mid-trial.
  """

  def __init__(self, barrier_dir=None, barrier_count=0, block_at_call=None, block_file=None,
               distance_by_noise_dim=False):
    self.barrier_dir = barrier_dir
    self.barrier_count = barrier_count
    self.block_at_call = block_at_call
    self.block_file = block_file
    self.distance_by_noise_dim = distance_by_noise_dim
    self.calls = 0

  def evaluate_generator(self, generator, num_samples, noise_dim=None, seed=0):
    self.calls += 1
    if self.calls == 1 and self.barrier_count:
      open(os.path.join(self.barrier_dir, str(os.getpid())), "w", encoding="utf-8").close()
      deadline = time.time() + WORKER_TIMEOUT
      while len(os.listdir(self.barrier_dir)) < self.barrier_count and time.time() < deadline:
        time.sleep(0.1)
    if self.calls == self.block_at_call:
      with open(self.block_file, "w", encoding="utf-8") as file:
        file.write(str(os.getpid()))
      time.sleep(WORKER_TIMEOUT)
    noise = np.random.default_rng(seed).standard_normal((num_samples, noise_dim))
    images = generator(noise.astype(np.float32), training=False).numpy()
    distance = float(noise_dim) if self.distance_by_noise_dim else float(
        np.mean(np.abs(images)) * 100.0)
    return dict(inception_score=1.0 + 1.0 / distance, inception_score_std=0.1,
                frechet_distance=distance, kernel_distance=distance / 100.0,
                kernel_distance_std=0.0, precision=0.5, recall=0.5,
                class_coverage=dict(num_classes_present=10, kl_from_uniform=0.01),
                num_samples=num_samples, seconds=0.0)


def make_pipeline(batch_size, seed):
  return data.EpochPipeline.from_array(IMAGES, batch_size, seed)


def make_settings(output_dir, **overrides):
  """SearchSettings of tiny trials: 16 images, batch 8, width 4, one epoch."""
  train = config_lib.TrainConfig(
      output_dir=str(output_dir), epochs=1, batch_size=8, noise_dim=4, width=4, seed=3,
      checkpoint_every=0, precision="float32", jit_compile="false", eval_every=1,
      eval_samples=10, ema_decay=0.5)
  train_overrides = overrides.pop("train", {})
  settings = dict(output_dir=str(output_dir), train=dataclasses.replace(
      train, **train_overrides), heartbeat_seconds=1.0, grace_seconds=60.0, poll_seconds=0.2)
  settings.update(overrides)
  return search.SearchSettings(**settings)


def load_study(settings):
  url = search.storage_url(settings)
  if url.startswith("postgresql://"):
    url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
  return optuna.load_study(study_name=settings.study_name,
                           storage=optuna.storages.RDBStorage(url))


def trials_by_state(study, state):
  return [trial for trial in study.get_trials() if trial.state == state]


def run(settings, space, **kwargs):
  kwargs.setdefault("pipeline_factory", make_pipeline)
  kwargs.setdefault("evaluator", FakeEvaluator())
  return search.run_search(settings, space, **kwargs)


# ---------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------


def test_grid_plan_has_every_combination_once():
  space = search.SearchSpace({"batch_size": [4, 8, 16], "noise_dim": [4, 6],
                              "learning_rate": [1e-4, 2e-4]})
  plan = search.draw_plan(space, "grid", None, seed=0)
  combos = {(p["batch_size"], p["noise_dim"], p["learning_rate"]) for p in plan}
  assert len(plan) == 12
  assert len(combos) == 12


def test_random_plan_same_seed_same_draws():
  space = search.SearchSpace({"batch_size": [4, 8]}, {"learning_rate": (1e-5, 1e-3)})
  first = search.draw_plan(space, "random", 5, seed=7)
  second = search.draw_plan(space, "random", 5, seed=7)
  other = search.draw_plan(space, "random", 5, seed=8)
  assert first == second
  assert first != other
  rates = [params["learning_rate"] for params in first]
  assert all(1e-5 <= rate <= 1e-3 for rate in rates)
  assert len(set(rates)) == 5


def test_random_discrete_plan_draws_without_replacement():
  space = search.SearchSpace({"batch_size": [4, 8, 16], "noise_dim": [4, 6]})
  plan = search.draw_plan(space, "random", 4, seed=1)
  keys = [(params["batch_size"], params["noise_dim"]) for params in plan]
  assert len(keys) == 4
  assert len(set(keys)) == 4
  assert plan == search.draw_plan(space, "random", 4, seed=1)


def test_random_discrete_plan_caps_at_space_size(caplog):
  space = search.SearchSpace({"batch_size": [4, 8], "noise_dim": [4, 6]})
  with caplog.at_level("INFO", logger="absl"):
    plan = search.draw_plan(space, "random", 10, seed=1)
  assert len({(params["batch_size"], params["noise_dim"]) for params in plan}) == 4
  assert len(plan) == 4
  assert "capped --num_trials=10 at the 4 combinations" in caplog.text


def test_space_file_yaml_and_json_agree(tmp_path):
  yaml_path = tmp_path / "space.yaml"
  yaml_path.write_text("batch_size: [64, 128]\nlearning_rate: {low: 1e-5, high: 1e-3}\n")
  json_path = tmp_path / "space.json"
  json_path.write_text(json.dumps({"batch_size": [64, 128],
                                   "learning_rate": {"low": 1e-5, "high": 1e-3}}))
  from_yaml = search.SearchSpace.from_file(str(yaml_path))
  from_json = search.SearchSpace.from_file(str(json_path))
  assert from_yaml.to_mapping() == from_json.to_mapping()
  assert from_yaml.ranges == {"learning_rate": (1e-5, 1e-3)}


# ---------------------------------------------------------------------------
# Rejected settings, each before any trial
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("choices,ranges,overrides,expected", [
    ({}, {}, {}, "search space is empty"),
    ({}, {"learning_rate": (1e-3, 1e-5)}, {"method": "random", "num_trials": 2},
     "the learning_rate range 0.001:1e-05 is invalid: low must be below high"),
    ({}, {"learning_rate": (1e-3, 1e-3)}, {"method": "random", "num_trials": 2},
     "low must be below high"),
    ({"batch_size": [0, 8]}, {}, {}, "batch_size value 0 is invalid: expected a whole number >= 1"),
    ({"noise_dim": [-4]}, {}, {}, "noise_dim value -4 is invalid: expected a whole number >= 1"),
    ({"learning_rate": [-1e-4]}, {}, {},
     "learning_rate value -0.0001 is invalid: expected a number > 0"),
    ({}, {"learning_rate": (0.0, 1e-3)}, {"method": "random", "num_trials": 2},
     "learning_rate range low 0.0 is invalid: expected a number > 0"),
    ({"dropout": [0.1]}, {}, {}, "unknown hyperparameter 'dropout'"),
    ({"learning_rate": [1.5]}, {}, {},
     "learning_rate value 1.5 is invalid: expected a number in (0, 1)"),
    ({"beta1": [0.5, 1.0]}, {}, {}, "beta1 value 1.0 is invalid: expected a number in [0, 1)"),
    ({}, {"learning_rate": (1e-4, 1.0)}, {"method": "random", "num_trials": 2},
     "learning_rate range high 1.0 is invalid: expected a number in (0, 1)"),
    ({"batch_size": [8.5]}, {}, {}, "batch_size value 8.5 is invalid: expected a whole number"),
    ({"batch_size": [8, 8]}, {}, {}, "batch_size repeats a value in [8, 8]"),
    ({"batch_size": []}, {}, {}, "batch_size has an empty list of values"),
    ({}, {"batch_size": (4, 8)}, {}, "batch_size takes a list of values"),
    ({}, {"learning_rate": (1e-5, 1e-3)}, {},
     "--method=grid needs a list of values for every hyperparameter"),
    ({"batch_size": [8]}, {}, {"method": "random"}, "--num_trials=None is invalid"),
    ({"batch_size": [8]}, {}, {"method": "grid", "num_trials": 3},
     "--num_trials=3 is invalid with --method=grid"),
    ({"batch_size": [8]}, {}, {"method": "annealing"}, "--method='annealing' is invalid"),
    ({"batch_size": [8]}, {}, {"train": {"eval_every": 0}}, "--eval_every=0 is invalid"),
    ({"batch_size": [8]}, {}, {"storage": "mysql://user@127.0.0.1/db"},
     "supported databases are SQLite (sqlite:///PATH) and PostgreSQL"),
    ({"batch_size": [8]}, {}, {"storage": "sqlite://"}, "in-memory SQLite database"),
])
def test_bad_setting_rejected_before_trials(tmp_path, choices, ranges, overrides, expected):
  settings = make_settings(tmp_path / "sweep", **overrides)
  with pytest.raises(search.SearchError) as raised:
    run(settings, search.SearchSpace(choices, ranges))
  assert expected in str(raised.value)
  assert not (tmp_path / "sweep" / "trials").exists()


def test_unreachable_storage_rejected(tmp_path):
  settings = make_settings(tmp_path / "sweep",
                           storage="postgresql://gan:secret@127.0.0.1:1/nothing")
  started = time.time()
  with pytest.raises(search.SearchError) as raised:
    run(settings, search.SearchSpace({"batch_size": [8]}))
  message = str(raised.value)
  assert "is unreachable" in message
  assert "127.0.0.1:1" in message
  assert "secret" not in message
  assert time.time() - started < 30
  assert not (tmp_path / "sweep" / "trials").exists()


def test_changed_space_resume_rejected(tmp_path):
  settings = make_settings(tmp_path / "sweep")
  search.prepare_search(settings, search.SearchSpace({"learning_rate": [1e-4, 2e-4]}))
  with pytest.raises(search.StudyMismatchError) as raised:
    search.prepare_search(settings, search.SearchSpace({"learning_rate": [1e-4, 2e-4, 3e-4]}))
  assert "added learning_rate values [0.0003]" in str(raised.value)

  with pytest.raises(search.StudyMismatchError) as raised:
    search.prepare_search(settings, search.SearchSpace({"learning_rate": [1e-4, 2e-4],
                                                        "noise_dim": [4, 8]}))
  assert "added hyperparameter noise_dim (values [4, 8])" in str(raised.value)

  changed_training = make_settings(tmp_path / "sweep", train={"epochs": 3})
  with pytest.raises(search.StudyMismatchError) as raised:
    search.prepare_search(changed_training, search.SearchSpace({"learning_rate": [1e-4, 2e-4]}))
  assert "training setting --epochs changed from 1 to 3" in str(raised.value)


def test_num_trials_may_grow_not_shrink(tmp_path):
  space = search.SearchSpace({}, {"learning_rate": (1e-5, 1e-3)})
  search.prepare_search(make_settings(tmp_path / "sweep", method="random", num_trials=2), space)
  study, _, _ = search.prepare_search(
      make_settings(tmp_path / "sweep", method="random", num_trials=3), space)
  assert len(study.get_trials()) == 3
  with pytest.raises(search.StudyMismatchError) as raised:
    search.prepare_search(make_settings(tmp_path / "sweep", method="random", num_trials=1), space)
  assert "already plans 3 trials" in str(raised.value)


def test_output_folder_of_other_study_rejected(tmp_path):
  space = search.SearchSpace({"batch_size": [8]})
  search.prepare_search(make_settings(tmp_path / "sweep"), space)
  with pytest.raises(search.SearchError) as raised:
    search.prepare_search(make_settings(tmp_path / "sweep", study_name="other"), space)
  assert "contains the trials of study 'dcgan_sweep'" in str(raised.value)


@pytest.mark.parametrize("flags,expected", [
    (["--batch_sizes=8,x"], "batch_size value 'x' is invalid: expected a whole number"),
    (["--learning_rate_range=1e-3"], "the learning_rate range '1e-3' is invalid"),
    (["--method=random", "--num_trials=2", "--learning_rate_range=1e-3:1e-5"],
     "low must be below high"),
    (["--batch_sizes=8", "--batch_size=16"], "--batch_size sets a hyperparameter that the "
     "search space varies"),
    ([], "search space is empty"),
])
def test_script_rejects_bad_flags_in_one_line(tmp_path, flags, expected):
  environment = dict(os.environ, PYTHONPATH=REPO)
  result = subprocess.run(
      [sys.executable, SCRIPT, f"--output_dir={tmp_path / 'sweep'}", *flags],
      capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().startswith("error: ")
  assert expected in result.stderr
  assert not (tmp_path / "sweep" / "trials").exists()


def test_script_rejects_space_file_and_flags_together(tmp_path):
  space_file = tmp_path / "space.json"
  space_file.write_text('{"batch_size": [8]}')
  environment = dict(os.environ, PYTHONPATH=REPO)
  result = subprocess.run(
      [sys.executable, SCRIPT, f"--output_dir={tmp_path / 'sweep'}", f"--space={space_file}",
       "--noise_dims=4"],
      capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120, check=False)
  assert result.returncode == 2
  assert "--space and --noise_dims both set the search space" in result.stderr


# ---------------------------------------------------------------------------
# Runs in this process
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
  """A 2 x 2 grid search of one-epoch trials, run once for several tests."""
  output_dir = tmp_path_factory.mktemp("grid") / "sweep"
  settings = make_settings(output_dir)
  space = search.SearchSpace({"batch_size": [4, 8], "noise_dim": [4, 6]})
  report = run(settings, space)
  return settings, space, report


def test_grid_search_runs_every_combination_once(grid_run):
  settings, _, report = grid_run
  study = load_study(settings)
  complete = trials_by_state(study, optuna.trial.TrialState.COMPLETE)
  combos = sorted((trial.params["batch_size"], trial.params["noise_dim"]) for trial in complete)
  assert combos == [(4, 4), (4, 6), (8, 4), (8, 6)]
  assert len(study.get_trials()) == 4
  assert report.counts == {"COMPLETE": 4}
  for trial in complete:
    assert os.path.isdir(search.trial_folder(settings.output_dir, trial.number))
    assert trial.user_attrs["inception_score"] > 0
    assert trial.user_attrs["ema_frechet_distance"] == trial.value


def test_grid_report_files_exist(grid_run):
  settings, space, report = grid_run
  output_dir = settings.output_dir
  with open(os.path.join(output_dir, "trials.csv"), encoding="utf-8") as file:
    lines = file.read().splitlines()
  assert lines[0].startswith("rank,trial,state,score,plan_index,retry_of,batch_size,noise_dim")
  assert len(lines) == 5
  scores = [float(line.split(",")[3]) for line in lines[1:]]
  assert scores == sorted(scores)
  with open(os.path.join(output_dir, "best_command.txt"), encoding="utf-8") as file:
    command = file.read().splitlines()[-1]
  assert command == report.best_command
  best = report.rows[0]
  assert command.startswith("python examples/train_gan.py --output_dir=")
  assert f"--batch_size={best['batch_size']}" in command
  assert f"--noise_dim={best['noise_dim']}" in command
  assert "--width=4" in command
  for name in space.names:
    assert os.path.getsize(os.path.join(output_dir, f"score_vs_{name}.png")) > 1000
  assert os.path.getsize(os.path.join(output_dir, "score_over_epochs.png")) > 1000
  assert "COMPLETE" in report.table


def test_grid_report_has_hparams_summaries(grid_run):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  settings, _, _ = grid_run
  folder = os.path.join(settings.output_dir, "tensorboard")
  plugin_names = set()
  runs = set()
  for root, _, files in os.walk(folder):
    for name in files:
      if not name.startswith("events.out.tfevents"):
        continue
      runs.add(os.path.relpath(root, folder))
      for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
        for value in event.summary.value:
          plugin_names.add(value.metadata.plugin_data.plugin_name)
  assert "hparams" in plugin_names
  assert {"trial_0000", "trial_0001", "trial_0002", "trial_0003"} <= runs


def test_trial_alone_matches_trial_after_others(grid_run, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  settings, _, _ = grid_run
  study = load_study(settings)
  last = max(study.get_trials(), key=lambda trial: trial.number)
  alone_settings = make_settings(tmp_path / "alone")
  space = search.SearchSpace({name: [value] for name, value in last.params.items()})
  alone_report = run(alone_settings, space)
  alone = load_study(alone_settings).get_trials()[0]
  assert alone_report.counts == {"COMPLETE": 1}
  assert alone.value == last.value

  after_others = tf.train.load_checkpoint(
      os.path.join(search.trial_folder(settings.output_dir, last.number), "checkpoints"))
  by_itself = tf.train.load_checkpoint(
      os.path.join(search.trial_folder(alone_settings.output_dir, alone.number), "checkpoints"))
  names = sorted(after_others.get_variable_to_shape_map())
  assert names == sorted(by_itself.get_variable_to_shape_map())
  for name in names:
    np.testing.assert_array_equal(after_others.get_tensor(name), by_itself.get_tensor(name),
                                  err_msg=name)


def test_failed_trial_recorded_and_study_continues(tmp_path):
  from gan_lib import training  # pylint: disable=g-import-not-at-top

  def train_with_nan(config, **kwargs):
    if config.noise_dim == 6:
      raise training.NonFiniteLossError("non-finite value at step 1: {'generator_loss': nan}")
    return training.train(config, **kwargs)

  space = search.SearchSpace({"noise_dim": [4, 6]})
  # A grid order whose first trial fails, so the other one runs after the failure.
  seed = next(seed for seed in range(100)
              if search.draw_plan(space, "grid", None, seed)[0]["noise_dim"] == 6)
  settings = make_settings(tmp_path / "sweep", seed=seed)
  report = run(settings, space, train_function=train_with_nan)
  trials = load_study(settings).get_trials()
  assert [trial.state.name for trial in trials] == ["FAIL", "COMPLETE"]
  assert trials[0].params["noise_dim"] == 6
  assert trials[0].user_attrs["fail_reason"].startswith("NonFiniteLossError: non-finite value")
  assert trials[1].params["noise_dim"] == 4
  assert report.counts == {"COMPLETE": 1, "FAIL": 1}
  assert report.rows[-1]["fail_reason"].startswith("NonFiniteLossError")


def test_median_pruner_stops_worse_trials(tmp_path):
  space = search.SearchSpace({"noise_dim": [4, 8]})
  # A grid order that starts with noise_dim 4, the better of the fake distances.
  seed = next(seed for seed in range(100)
              if search.draw_plan(space, "grid", None, seed)[0]["noise_dim"] == 4)
  settings = make_settings(tmp_path / "sweep", seed=seed, pruner="median",
                           pruner_startup_trials=1, train={"epochs": 2})
  report = run(settings, space, evaluator=FakeEvaluator(distance_by_noise_dim=True))
  study = load_study(settings)
  # The fake distance equals the noise size at every epoch, so once the trial with
  # 4 completes, the one with 8 is worse than the median at epoch 1.
  states = {trial.params["noise_dim"]: trial.state.name for trial in study.get_trials()}
  assert states == {4: "COMPLETE", 8: "PRUNED"}
  for trial in trials_by_state(study, optuna.trial.TrialState.PRUNED):
    assert list(trial.intermediate_values) == [1]
    assert trial.value == trial.params["noise_dim"]
  assert report.counts == {"COMPLETE": 1, "PRUNED": 1}


def test_tpe_with_halving_runs_planned_trials(tmp_path):
  settings = make_settings(tmp_path / "sweep", method="tpe", num_trials=2, pruner="halving")
  space = search.SearchSpace({"batch_size": [4, 8]}, {"learning_rate": (1e-4, 1e-2)})
  report = run(settings, space)
  study = load_study(settings)
  assert len(study.get_trials()) == 2
  assert sorted(trial.user_attrs["plan_index"] for trial in study.get_trials()) == [0, 1]
  assert all(trial.state.is_finished() for trial in study.get_trials())
  assert sum(report.counts.values()) == 2


def test_stale_heartbeat_of_other_host_reruns_trial(tmp_path):
  settings = make_settings(tmp_path / "sweep", heartbeat_seconds=1.0, grace_seconds=2.0)
  space = search.SearchSpace({"noise_dim": [4]})
  study, storage, _ = search.prepare_search(settings, space)
  # A worker on another machine claims the only trial, beats once, and dies.
  trial = study.ask(fixed_distributions=space.distributions())
  trial.set_user_attr("worker_host", "another-machine")
  trial.set_user_attr("worker_pid", 1)
  study_id = storage.get_study_id_from_name(settings.study_name)
  storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
  time.sleep(3.5)

  report = run(settings, space)
  trials = load_study(settings).get_trials()
  assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
  assert trials[1].user_attrs["retry_of"] == 0
  assert trials[1].user_attrs["plan_index"] == 0
  assert report.rows[-1]["fail_reason"].startswith("interrupted: no heartbeat")


# ---------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------


def start_worker(options, log_path):
  """Starts this file as a search worker with `options` (see `worker_main`)."""
  environment = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  log = open(log_path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
  return subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(options)],
      stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=REPO)


def wait_for_file(path, process, timeout=WORKER_TIMEOUT):
  deadline = time.time() + timeout
  while not os.path.exists(path):
    assert process.poll() is None, f"worker exited with {process.returncode} before {path}"
    assert time.time() < deadline, f"timed out waiting for {path}"
    time.sleep(0.1)


def worker_main(options):
  """Runs a search in this process; the options come from the test that started it."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  settings = make_settings(options["output_dir"], storage=options.get("storage"),
                           study_name=options.get("study_name", "dcgan_sweep"))
  space = search.SearchSpace(options["space"])
  evaluator = FakeEvaluator(barrier_dir=options.get("barrier_dir"),
                            barrier_count=options.get("barrier_count", 0),
                            block_at_call=options.get("block_at_call"),
                            block_file=options.get("block_file"))
  report = search.run_search(settings, space, pipeline_factory=make_pipeline,
                             evaluator=evaluator)
  print(json.dumps(report.counts))


def test_resume_after_sigkill_reruns_interrupted_trial(tmp_path):
  output_dir = str(tmp_path / "sweep")
  space = {"noise_dim": [4, 6, 8]}
  block_file = str(tmp_path / "blocked")
  # With an averaged generator each epoch evaluates twice, so call 3 is in trial 1.
  worker = start_worker(dict(output_dir=output_dir, space=space, block_at_call=3,
                             block_file=block_file), tmp_path / "killed.log")
  try:
    wait_for_file(block_file, worker)
  finally:
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)

  settings = make_settings(output_dir)
  study = load_study(settings)
  states = {trial.number: trial.state.name for trial in study.get_trials()}
  assert states == {0: "COMPLETE", 1: "RUNNING", 2: "WAITING"}

  # A long grace period: only the dead process id can reveal the interrupted trial.
  rerun_settings = make_settings(output_dir, grace_seconds=3600.0)
  report = run(rerun_settings, search.SearchSpace(space))
  trials = load_study(settings).get_trials()
  complete = [trial for trial in trials if trial.state == optuna.trial.TrialState.COMPLETE]
  assert sorted(trial.params["noise_dim"] for trial in complete) == [4, 6, 8]
  assert sorted(trial.user_attrs["plan_index"] for trial in complete) == [0, 1, 2]
  assert [trial.state.name for trial in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
  interrupted = trials[1]
  assert interrupted.user_attrs["fail_reason"].startswith("interrupted: worker process")
  assert trials[3].user_attrs["retry_of"] == 1
  assert trials[3].params == interrupted.params
  assert report.counts == {"COMPLETE": 3, "FAIL": 1}


def test_two_workers_share_sqlite_study(tmp_path):
  check_two_workers(tmp_path, storage=None)


def check_two_workers(tmp_path, storage, study_name="dcgan_sweep"):
  """Runs two worker processes on one study; checks each planned trial ran exactly once."""
  output_dir = str(tmp_path / "sweep")
  barrier_dir = tmp_path / "started"
  barrier_dir.mkdir()
  space = {"batch_size": [4, 8], "noise_dim": [4, 6]}
  options = dict(output_dir=output_dir, space=space, storage=storage, study_name=study_name,
                 barrier_dir=str(barrier_dir), barrier_count=2)
  workers = [start_worker(options, tmp_path / f"worker{i}.log") for i in range(2)]
  for i, worker in enumerate(workers):
    try:
      worker.wait(timeout=WORKER_TIMEOUT)
    finally:
      if worker.poll() is None:
        worker.kill()
        worker.wait()
    assert worker.returncode == 0, (tmp_path / f"worker{i}.log").read_text()[-3000:]

  settings = make_settings(output_dir, storage=storage, study_name=study_name)
  trials = load_study(settings).get_trials()
  assert len(trials) == 4
  assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
  assert sorted(trial.user_attrs["plan_index"] for trial in trials) == [0, 1, 2, 3]
  combos = sorted((trial.params["batch_size"], trial.params["noise_dim"]) for trial in trials)
  assert combos == [(4, 4), (4, 6), (8, 4), (8, 6)]
  worker_pids = {trial.user_attrs["worker_pid"] for trial in trials}
  assert worker_pids == {worker.pid for worker in workers}


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--worker":
    worker_main(json.loads(sys.argv[2]))
  else:
    sys.exit("usage: test_search.py --worker JSON_OPTIONS (run the tests with pytest)")
