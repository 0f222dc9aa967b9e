"""Tests of training under tf.distribute strategies, on two logical CPUs and two local workers.

Each strategy run happens in fresh processes of tests/distribute_worker.py,
because TensorFlow fixes its devices and collective settings at the first op.
The workers listen on 127.0.0.1 only, on ports picked free by the test.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from gan_lib import config as config_lib
from gan_lib import distribute

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER_SCRIPT = os.path.join(REPO, "tests", "distribute_worker.py")
# For all three processes together: a hung collective fails the test instead of
# blocking it.
TIMEOUT_SECONDS = 300


def _environment(**extra):
  environment = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  environment.pop("TF_CONFIG", None)
  environment.update(extra)
  return environment


def _free_ports(count):
  sockets = []
  try:
    for _ in range(count):
      listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      listener.bind(("127.0.0.1", 0))
      sockets.append(listener)
    return [listener.getsockname()[1] for listener in sockets]
  finally:
    for listener in sockets:
      listener.close()


def _weights(results, prefix):
  """Returns {variable name: value} of the arrays saved under `prefix/` in a result file."""
  return {name[len(prefix) + 1:]: results[name] for name in results
          if name.startswith(prefix + "/")}


def _read_tail(path, characters=3000):
  with open(path, encoding="utf-8", errors="replace") as log:
    return log.read()[-characters:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Runs the mirrored process and the two workers at the same time and waits for all.

  The workers spend much of their time waiting on each other, so running the
  mirrored process beside them shortens the test.
  """
  root = tmp_path_factory.mktemp("strategies")
  mirrored_dir = root / "mirrored"
  worker_output_dir = root / "workers"
  scratch_dirs = [root / "scratch0", root / "scratch1"]
  for folder in (mirrored_dir, *scratch_dirs):
    folder.mkdir()
  worker_results = [root / f"worker{index}.npz" for index in range(2)]

  commands = {"mirrored": ([WORKER_SCRIPT, "mirrored", str(mirrored_dir)], _environment())}
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  for index in range(2):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    commands[f"worker{index}"] = (
        [WORKER_SCRIPT, "multi_worker", str(worker_output_dir), str(worker_results[index])],
        _environment(TF_CONFIG=tf_config, TMPDIR=str(scratch_dirs[index])))

  processes = {}
  try:
    for name, (arguments, environment) in commands.items():
      with open(root / f"{name}.log", "w", encoding="utf-8") as log:
        processes[name] = subprocess.Popen(
            [sys.executable, *arguments], stdout=subprocess.DEVNULL, stderr=log, env=environment)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    for process in processes.values():
      process.wait(timeout=max(1.0, deadline - time.monotonic()))
  finally:
    for process in processes.values():
      if process.poll() is None:
        process.kill()
        process.wait()
  for name, process in processes.items():
    assert process.returncode == 0, f"{name} failed:\n{_read_tail(root / f'{name}.log')}"

  with np.load(mirrored_dir / "mirrored_results.npz") as loaded:
    mirrored = {name: loaded[name] for name in loaded.files}
  workers = []
  for path in worker_results:
    with np.load(path) as loaded:
      workers.append({name: loaded[name] for name in loaded.files})
  return dict(mirrored_dir=mirrored_dir, mirrored=mirrored, worker_output_dir=worker_output_dir,
              scratch_dirs=scratch_dirs, workers=workers)


def test_mirrored_strategy_uses_two_replicas(runs):
  assert int(runs["mirrored"]["num_replicas"]) == 2


def test_mirrored_replicas_get_contiguous_rows(runs):
  rows = runs["mirrored"]["replica_rows"]
  assert rows.shape == (3, 2, 8)
  for batch in range(3):
    for replica in range(2):
      start = batch * 16 + replica * 8
      np.testing.assert_array_equal(rows[batch, replica], np.arange(start, start + 8))


def test_two_replicas_match_one_device(runs):
  results = runs["mirrored"]
  single = _weights(results, "single")
  mirrored = _weights(results, "mirrored")
  assert single.keys() == mirrored.keys()
  # Weights, Adam moments, batch-norm moving statistics, the averaged generator,
  # the step and the random generator's state.
  assert len(single) > 50
  for name, value in single.items():
    np.testing.assert_allclose(mirrored[name], value, rtol=0, atol=1e-5, err_msg=name)
  assert int(results["mirrored_step"]) == 5
  np.testing.assert_allclose(results["mirrored_losses"], results["single_losses"], atol=1e-5)


def test_mirrored_run_rejects_settings_replicas_cannot_use(runs):
  batch_error, jit_error = runs["mirrored"]["config_errors"]
  assert batch_error == ("--batch_size=15 is invalid: expected a multiple of the 2 replicas of "
                         "--strategy=mirrored")
  assert jit_error == "--jit_compile=true is invalid with 2 replicas: expected false or auto"


def test_mirrored_resume_matches_straight_run(runs):
  results = runs["mirrored"]
  assert int(results["resumed_step"]) == 6
  straight = _weights(results, "straight")
  resumed = _weights(results, "resumed")
  assert straight.keys() == resumed.keys()
  for name, value in straight.items():
    np.testing.assert_array_equal(resumed[name], value, err_msg=name)
  assert os.path.isdir(runs["mirrored_dir"] / "straight" / "saved_model")
  assert (runs["mirrored_dir"] / "straight" / "samples" / "epoch_0001.png").exists()


def test_multi_worker_replicas_get_contiguous_rows(runs):
  for index, results in enumerate(runs["workers"]):
    rows = results["replica_rows"]
    assert rows.shape == (3, 1, 8)
    for batch in range(3):
      start = batch * 16 + index * 8
      np.testing.assert_array_equal(rows[batch, 0], np.arange(start, start + 8))


def test_two_workers_train_resume_and_agree(runs):
  chief, other = runs["workers"]
  assert bool(chief["chief"])
  assert not bool(other["chief"])
  # One epoch of 4 steps, then a second call resumes for epoch 2.
  assert int(chief["step_1"]) == int(other["step_1"]) == 4
  assert int(chief["step_2"]) == int(other["step_2"]) == 8
  for prefix in ("epochs1", "epochs2"):
    chief_weights = _weights(chief, prefix)
    other_weights = _weights(other, prefix)
    assert chief_weights.keys() == other_weights.keys()
    for name, value in chief_weights.items():
      np.testing.assert_array_equal(other_weights[name], value, err_msg=f"{prefix}: {name}")
  generator_weight = next(name for name in _weights(chief, "epochs2") if "project/w" in name)
  assert not np.array_equal(chief["epochs2/" + generator_weight],
                            chief["epochs1/" + generator_weight])


def test_multi_worker_only_chief_writes_outputs(runs):
  output_dir = runs["worker_output_dir"]
  assert sorted(os.listdir(output_dir)) == [
      ".lock", "best.json", "best_checkpoint", "checkpoints", "config.json", "metrics.jsonl",
      "metrics.png", "samples", "saved_model", "tensorboard"]
  assert sorted(os.listdir(output_dir / "checkpoints")) == [
      "checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index",
      "ckpt-8.data-00000-of-00001", "ckpt-8.index"]
  assert sorted(os.listdir(output_dir / "samples")) == [
      "epoch_0001.png", "epoch_0002.png", "progress.gif"]
  # One event file per call of train on the chief.
  assert len(os.listdir(output_dir / "tensorboard")) == 2
  best = json.loads((output_dir / "best.json").read_text())
  assert best["epoch"] == 2
  assert best["checkpoint"].endswith("ckpt-8")
  rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
  assert [row["epoch"] for row in rows] == [1, 2]
  assert [row["ema_frechet_distance"] for row in rows] == [3.0, 2.0]
  # The non-chief's scratch copies are gone, and the chief never made any.
  for folder in runs["scratch_dirs"]:
    assert os.listdir(folder) == []


def test_config_rejects_unknown_strategy(tmp_path):
  config = config_lib.TrainConfig(output_dir=str(tmp_path), strategy="parameter_server")
  with pytest.raises(config_lib.ConfigError, match="--strategy='parameter_server' is invalid"):
    config.validate()


def test_default_strategy_is_single_process_chief():
  strategy = distribute.make_strategy("default")
  assert strategy.num_replicas_in_sync == 1
  assert distribute.is_chief(strategy)
  assert not distribute.is_multi_worker(strategy)
  with distribute.worker_scratch_dir(strategy) as scratch_dir:
    assert scratch_dir is None
  assert distribute.broadcast_from_chief(strategy, 2.5) == 2.5


def test_unknown_strategy_name_is_rejected():
  with pytest.raises(ValueError, match="strategy must be one of"):
    distribute.make_strategy("tpu")
