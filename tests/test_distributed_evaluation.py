"""Tests of evaluation split over two logical CPUs and over two local workers.

The strategy runs happen in fresh processes of tests/distribute_worker.py,
because TensorFlow fixes its devices and collective settings at the first op.
Each process evaluates the same generators with and without the strategy, and
the tests compare the results. The workers listen on 127.0.0.1 only, on ports
picked free by the test.
"""

import json
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from distribute_worker import EVALUATION_CASES
from distribute_worker import EVALUATION_SCALARS
from gan_lib import evaluation
from gan_lib import mnist_prep
from metrics import evaluator as evaluator_lib
from test_distribute import WORKER_SCRIPT
from test_distribute import _environment
from test_distribute import _free_ports
from test_distribute import _read_tail

# For all three processes together: a hung collective fails the test instead of
# blocking it.
TIMEOUT_SECONDS = 300


def _load(path):
  with np.load(path) as loaded:
    return {name: loaded[name] for name in loaded.files}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Runs the mirrored process and the two workers at the same time and waits for all."""
  mnist_prep.ensure_mnist(None)
  root = tmp_path_factory.mktemp("distributed_evaluation")
  cache_dir = root / "reference_stats"
  result_paths = {name: root / f"{name}.npz" for name in ("mirrored", "worker0", "worker1")}
  commands = {"mirrored": (["evaluate_mirrored", str(result_paths["mirrored"]), str(cache_dir)],
                           _environment())}
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  for index in range(2):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    commands[f"worker{index}"] = (
        ["evaluate_multi_worker", str(result_paths[f"worker{index}"]), str(cache_dir)],
        _environment(TF_CONFIG=tf_config))

  processes = {}
  try:
    for name, (arguments, environment) in commands.items():
      with open(root / f"{name}.log", "w", encoding="utf-8") as log:
        processes[name] = subprocess.Popen(
            [sys.executable, WORKER_SCRIPT, *arguments], stdout=subprocess.DEVNULL, stderr=log,
            env=environment)
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
  return {name: _load(path) for name, path in result_paths.items()}


def _assert_same_evaluation(results, split_prefix, single_prefix):
  # Each image is generated and classified as on one device and the statistics
  # are summed in the same order, so the scores are equal to the bit.
  for key in EVALUATION_SCALARS:
    assert results[f"{split_prefix}/{key}"] == results[f"{single_prefix}/{key}"], key
  np.testing.assert_array_equal(results[f"{split_prefix}/class_counts"],
                                results[f"{single_prefix}/class_counts"])


def _model_rows(results, prefix):
  return {name[len(prefix) + 1:]: float(value) for name, value in results.items()
          if name.startswith(prefix + "/")}


def test_replica_block_size_rounds_up_to_classifier_batches():
  assert evaluator_lib.CLASSIFIER_BATCH_SIZE == 250
  assert evaluator_lib.replica_block_size(500) == 500
  assert evaluator_lib.replica_block_size(250) == 250
  assert evaluator_lib.replica_block_size(100) == 250
  assert evaluator_lib.replica_block_size(251) == 500
  assert evaluator_lib.replica_block_size(1) == 250


def test_replicas_take_blocks_in_turn():
  steps = list(evaluator_lib.replica_row_blocks(1130, 250, 2))
  assert steps == [
      [(0, 250), (250, 250)],
      [(500, 250), (750, 250)],
      [(1000, 130), (1250, 0)],
  ]


def test_replica_blocks_cover_every_row_once():
  for num_samples, num_replicas in ((1130, 2), (40, 2), (2000, 4), (999, 3)):
    rows = [row for step in evaluator_lib.replica_row_blocks(num_samples, 500, num_replicas)
            for first_row, count in step for row in range(first_row, first_row + count)]
    assert rows == list(range(num_samples)), (num_samples, num_replicas)


def test_mirrored_evaluation_uses_two_replicas(runs):
  assert int(runs["mirrored"]["num_replicas"]) == 2


@pytest.mark.parametrize("batch_size,num_samples", EVALUATION_CASES)
def test_mirrored_evaluation_equals_one_device(runs, batch_size, num_samples):
  case = f"{batch_size}_{num_samples}"
  results = runs["mirrored"]
  assert int(results[f"split/{case}/num_samples"]) == num_samples
  _assert_same_evaluation(results, f"split/{case}", f"single/{case}")


def test_mirrored_evaluate_model_equals_one_device(runs):
  results = runs["mirrored"]
  split_row = _model_rows(results, "model_split")
  single_row = _model_rows(results, "model_single")
  # The raw and the averaged generator, each with every scalar metric.
  assert "frechet_distance" in split_row
  assert "ema_frechet_distance" in split_row
  assert split_row == single_row


def test_mirrored_invalid_images_raise(runs):
  assert "range [-1, 1]" in str(runs["mirrored"]["invalid_error"])


def test_two_workers_have_one_replica_each(runs):
  assert runs["worker0"]["replica_ids"].tolist() == [0]
  assert runs["worker1"]["replica_ids"].tolist() == [1]
  assert bool(runs["worker0"]["chief"])
  assert not bool(runs["worker1"]["chief"])


@pytest.mark.parametrize("worker", ["worker0", "worker1"])
def test_two_workers_equal_one_device(runs, worker):
  results = runs[worker]
  assert int(results["split/num_samples"]) == EVALUATION_CASES[0][1]
  _assert_same_evaluation(results, "split", "single")


def test_two_workers_get_same_scores(runs):
  chief, other = runs["worker0"], runs["worker1"]
  for key in EVALUATION_SCALARS:
    assert chief[f"split/{key}"] == other[f"split/{key}"], key


def test_invalid_images_on_one_worker_raise_on_both(runs):
  # Worker 1 generated the invalid images, and worker 0 learns of them from the gather.
  assert "range [-1, 1]" in str(runs["worker1"]["invalid_error"])
  assert str(runs["worker0"]["invalid_error"]) == (
      "the generator returned invalid images on replicas [1] of another worker, whose log has "
      "the error")


class EvaluatorWithoutStrategy:
  """An evaluator double whose evaluate_generator takes no strategy, like gan_lib.search's wrapper."""

  def __init__(self):
    self.calls = []

  def evaluate_generator(self, generator, num_samples, noise_dim=None, seed=0):
    self.calls.append((generator, num_samples, noise_dim, seed))
    return dict(inception_score=2.0, inception_score_std=0.1, frechet_distance=3.0,
                kernel_distance=0.5, kernel_distance_std=0.05, precision=0.4, recall=0.6,
                class_coverage=dict(num_classes_present=9, kl_from_uniform=0.2))


def test_evaluate_model_omits_one_replica_strategy():
  evaluator = EvaluatorWithoutStrategy()
  model = types.SimpleNamespace(generator="raw", ema_generator="averaged", noise_dim=3)
  row = evaluation.evaluate_model(evaluator, model, 20, seed=1, strategy=tf.distribute.get_strategy())
  assert evaluator.calls == [("raw", 20, 3, 1), ("averaged", 20, 3, 1)]
  assert row["frechet_distance"] == 3.0
  assert row["ema_classes_present"] == 9.0
