"""Kills MNIST preparation and a hyperparameter search at random moments, then checks the result.

Both run as subprocesses of helper scripts that print a line before each write:
tests/fault_prep_worker.py prepares TFDS mnist from a small IDX source, and
tests/fault_sweep_worker.py runs a tiny grid search in a SQLite study. Each kill
is a SIGKILL a random delay after the N-th occurrence of such a line, or at a
random time. The same command is then restarted until it finishes, and the
result must equal that of an uninterrupted run.

GAN_LIB_FAULT_KILLS sets how many kills each random test makes (default 3, to
keep CI short; the full count is 10). The kill moments come from a fixed seed,
but where a kill lands also depends on the machine's speed.
"""

import collections
import csv
import dataclasses
import gzip
import os
import random
import signal
import subprocess
import sys
import threading
from typing import Optional

import numpy as np
import optuna
import pytest
import tensorflow_datasets as tfds

import fault_sweep_worker
from gan_lib import mnist_prep
from gan_lib import search

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREP_SCRIPT = os.path.join(REPO, "tests", "fault_prep_worker.py")
SWEEP_SCRIPT = os.path.join(REPO, "tests", "fault_sweep_worker.py")
KILL_COUNT = int(os.environ.get("GAN_LIB_FAULT_KILLS", "3"))
RUN_TIMEOUT_SECONDS = 600  # one run of a helper on a shared 2-core machine
NUM_TRAIN = 80
NUM_TEST = 20


@dataclasses.dataclass(frozen=True)
class Kill:
  """When to SIGKILL one run.

  Attributes:
    pattern: text of a stderr line, or None to count `delay` from the start.
    occurrence: which line containing `pattern` starts the delay, from 1.
    delay: seconds between that line (or the start) and the kill.
  """

  pattern: Optional[str]
  occurrence: int
  delay: float


def run_until_killed(command, kill, log_path):
  """Runs `command` and SIGKILLs it at the moment that `kill` describes.

  A `kill` of None runs the command to the end.

  Returns:
    True if the kill ended the process, False if the process exited with
    status 0 first.
  """
  environment = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=environment, cwd=REPO)
  timers = []
  timed_out = threading.Event()

  def kill_after(seconds, on_kill=None):
    def fire():
      if on_kill is not None:
        on_kill()
      process.kill()
    timer = threading.Timer(seconds, fire)
    timer.start()
    timers.append(timer)

  kill_after(RUN_TIMEOUT_SECONDS, timed_out.set)
  if kill is not None and kill.pattern is None:
    kill_after(kill.delay)
  seen = 0
  try:
    with open(log_path, "w", encoding="utf-8") as log:
      for line in process.stderr:
        log.write(line)
        if kill is None or kill.pattern is None or kill.pattern not in line:
          continue
        seen += 1
        if seen == kill.occurrence:
          kill_after(kill.delay)
    returncode = process.wait()
  finally:
    for timer in timers:
      timer.cancel()
    if process.poll() is None:
      process.kill()
      process.wait()
  with open(log_path, encoding="utf-8") as log:
    tail = log.read()[-3000:]
  assert not timed_out.is_set(), f"{command} timed out after {RUN_TIMEOUT_SECONDS} s:\n{tail}"
  if returncode == -signal.SIGKILL:
    return True
  assert returncode == 0, f"{command} exited with status {returncode}:\n{tail}"
  return False


# ---------------------------------------------------------------------------
# MNIST preparation
# ---------------------------------------------------------------------------


def write_idx_source(folder):
  """Writes a small MNIST source of four gzipped IDX files and returns its arrays."""
  rng = np.random.default_rng(7)
  arrays = mnist_prep.MnistArrays(
      train_images=rng.integers(0, 256, (NUM_TRAIN, 28, 28), dtype=np.uint8),
      train_labels=rng.integers(0, 10, NUM_TRAIN).astype(np.int64),
      test_images=rng.integers(0, 256, (NUM_TEST, 28, 28), dtype=np.uint8),
      test_labels=np.arange(NUM_TEST, dtype=np.int64) % 10)
  folder.mkdir(parents=True)
  files = {"train-images-idx3-ubyte.gz": (arrays.train_images, 2051),
           "train-labels-idx1-ubyte.gz": (arrays.train_labels, 2049),
           "t10k-images-idx3-ubyte.gz": (arrays.test_images, 2051),
           "t10k-labels-idx1-ubyte.gz": (arrays.test_labels, 2049)}
  for name, (array, magic) in files.items():
    header = magic.to_bytes(4, "big") + b"".join(
        dim.to_bytes(4, "big") for dim in array.shape)
    (folder / name).write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
  return arrays


def read_prepared(data_dir):
  """Returns {split: (images, labels)} of the mnist data set in `data_dir`, in file order."""
  builder = tfds.builder("mnist", data_dir=str(data_dir))
  splits = {}
  for split in ("train", "test"):
    data = tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False, batch_size=-1))
    splits[split] = (data["image"], data["label"])
  return splits


def split_sizes(data_dir):
  builder = tfds.builder("mnist", data_dir=str(data_dir))
  return {name: split.num_examples for name, split in builder.info.splits.items()}


def assert_same_data_set(data_dir, reference_dir):
  """Checks split sizes, file names and the decoded examples in order."""
  assert split_sizes(data_dir) == split_sizes(reference_dir)
  version = os.path.join(data_dir, "mnist", "3.0.1")
  reference_version = os.path.join(reference_dir, "mnist", "3.0.1")
  assert sorted(os.listdir(version)) == sorted(os.listdir(reference_version))
  actual = read_prepared(data_dir)
  expected = read_prepared(reference_dir)
  for split, (images, labels) in expected.items():
    np.testing.assert_array_equal(actual[split][1], labels, err_msg=f"{split} labels")
    np.testing.assert_array_equal(actual[split][0], images, err_msg=f"{split} images")


def prep_kill_plans(rng, data_dir):
  """Yields kills that cycle through the steps of a preparation, with random offsets."""
  version_dir = os.path.join(data_dir, "mnist", "3.0.1")
  makers = [
      # During the TFRecord writes of either split.
      lambda: Kill("Writing record", rng.randint(1, NUM_TRAIN + NUM_TEST), rng.uniform(0, 0.01)),
      # Just before or just after the rename into DATA_DIR/mnist/3.0.1.
      lambda: Kill(f" to {version_dir}", rng.randint(1, 2), rng.uniform(0, 0.06)),
      # Anywhere after the source has been read: TFDS start-up, writes, renames.
      lambda: Kill("Read MNIST from", 1, rng.uniform(0, 6.0)),
      # While an existing version is moved aside to be replaced.
      lambda: Kill(f"Renaming {version_dir} to", 1, rng.uniform(0, 0.1)),
      # While the staging folder is removed after the rename.
      lambda: Kill("Removing", 1, rng.uniform(0, 0.06)),
      # Anywhere, imports included.
      lambda: Kill(None, 0, rng.uniform(0.5, 12.0)),
  ]
  index = 0
  while True:
    yield makers[index % len(makers)]()
    index += 1


def assert_nothing_mistaken(data_dir, reference_dir):
  """Checks that only a finished data set counts as prepared, and that no other folder is in its place."""
  entries = os.listdir(data_dir) if os.path.isdir(data_dir) else []
  unexpected = [name for name in entries if name not in ("mnist", ".mnist-prep.lock")
                and not name.startswith(".mnist-prep-")]
  assert unexpected == []
  dataset_dir = os.path.join(data_dir, "mnist")
  if os.path.isdir(dataset_dir):
    assert set(os.listdir(dataset_dir)) <= {"3.0.1"}
  if mnist_prep.is_mnist_prepared(data_dir):
    assert_same_data_set(data_dir, reference_dir)


def test_prep_killed_at_random_moments(tmp_path):
  source = tmp_path / "idx"
  arrays = write_idx_source(source)
  reference_dir = tmp_path / "reference"
  mnist_prep.prepare_mnist(source, reference_dir, expected=None)
  expected = read_prepared(reference_dir)
  assert len(expected["train"][1]) == NUM_TRAIN
  assert sorted(expected["test"][1].tolist()) == sorted(arrays.test_labels.tolist())

  data_dir = tmp_path / "data"
  command = [sys.executable, PREP_SCRIPT, str(source), str(data_dir)]
  plans = prep_kill_plans(random.Random(2024), str(data_dir))
  landed = []
  attempts = 0
  while len(landed) < KILL_COUNT and attempts < 4 * KILL_COUNT:
    kill = next(plans)
    if run_until_killed(command, kill, tmp_path / f"run{attempts}.log"):
      landed.append(kill)
    attempts += 1
    assert_nothing_mistaken(str(data_dir), reference_dir)
  assert len(landed) == KILL_COUNT, f"only {len(landed)} kills landed: {landed}"

  assert not run_until_killed(command, None, tmp_path / "final.log")
  assert os.listdir(data_dir) == ["mnist"]
  assert os.listdir(data_dir / "mnist") == ["3.0.1"]
  assert_same_data_set(data_dir, reference_dir)


# ---------------------------------------------------------------------------
# Hyperparameter search
# ---------------------------------------------------------------------------


# Enough planned trials that the search is unfinished after every kill. Each kill
# below lets a run finish at most one trial, and the one after an evaluation
# (every fourth kill from the second on) none, so KILL_COUNT trials (at least 3)
# leave at least one for the final run.
SWEEP_NOISE_DIMS = list(range(4, 4 + max(3, KILL_COUNT)))


def sweep_kill_plans(rng):
  """Yields kills that cycle through storage writes, evaluations, trials and start-up."""
  makers = [
      # Right after a line printed before an INSERT, UPDATE, DELETE or COMMIT.
      lambda: Kill(fault_sweep_worker.STORAGE_WRITE_PREFIX, rng.randint(1, 80),
                   rng.choice([0.0, rng.uniform(0, 0.05)])),
      # While the score of an evaluation is stored.
      lambda: Kill("Evaluated a generator", rng.randint(1, 2), rng.uniform(0, 0.3)),
      # Anywhere in the first trial of the run.
      lambda: Kill(") starts:", 1, rng.uniform(0, 4.0)),
      # Anywhere, imports and start-up included.
      lambda: Kill(None, 0, rng.uniform(1.0, 8.0)),
  ]
  index = 0
  while True:
    yield makers[index % len(makers)]()
    index += 1


def load_trials(output_dir):
  storage = f"sqlite:///{os.path.join(output_dir, 'study.db')}"
  return optuna.load_study(study_name="dcgan_sweep", storage=storage).get_trials()


def complete_results(trials):
  """Returns {plan index: (params, score)} of the COMPLETE trials, failing on a duplicate."""
  results = {}
  for trial in trials:
    if trial.state != optuna.trial.TrialState.COMPLETE:
      continue
    index = trial.user_attrs[search.PLAN_INDEX_ATTR]
    assert index not in results, f"plan index {index} completed twice"
    results[index] = (trial.params, trial.value)
  return results


def assert_interrupted_trials_rerun(trials):
  """Checks that every FAIL trial records an interruption and has a rerun of its plan index."""
  reruns = {trial.user_attrs[search.RETRY_OF_ATTR]: trial for trial in trials
            if trial.user_attrs.get(search.RETRY_OF_ATTR) is not None}
  for trial in trials:
    if trial.state != optuna.trial.TrialState.FAIL:
      continue
    assert trial.number in reruns, f"interrupted trial {trial.number} was not rerun"
    rerun = reruns[trial.number]
    reason = trial.user_attrs.get(search.FAIL_REASON_ATTR) or rerun.user_attrs.get(
        search.RETRY_REASON_ATTR, "")
    assert reason.startswith("interrupted"), f"trial {trial.number}: {reason!r}"
    assert rerun.user_attrs[search.PLAN_INDEX_ATTR] == trial.user_attrs[search.PLAN_INDEX_ATTR]


@pytest.fixture(scope="module")
def reference_sweep(tmp_path_factory):
  """The {plan index: (params, score)} of an uninterrupted search, run in this process."""
  output_dir = tmp_path_factory.mktemp("reference") / "sweep"
  report = fault_sweep_worker.run(output_dir, SWEEP_NOISE_DIMS)
  assert report.counts == {"COMPLETE": len(SWEEP_NOISE_DIMS)}
  return complete_results(load_trials(output_dir))


def test_sweep_killed_at_random_moments(tmp_path, reference_sweep):
  output_dir = tmp_path / "sweep"
  command = [sys.executable, SWEEP_SCRIPT, str(output_dir),
             ",".join(str(value) for value in SWEEP_NOISE_DIMS)]
  plans = sweep_kill_plans(random.Random(99))
  for number in range(KILL_COUNT):
    kill = next(plans)
    assert run_until_killed(command, kill, tmp_path / f"run{number}.log"), (
        f"the search finished before kill {number + 1} of {KILL_COUNT} ({kill}); plan more "
        "trials")

  assert not run_until_killed(command, None, tmp_path / "final.log")
  trials = load_trials(output_dir)
  states = collections.Counter(trial.state.name for trial in trials)
  assert set(states) <= {"COMPLETE", "FAIL"}, states
  assert complete_results(trials) == reference_sweep
  assert_interrupted_trials_rerun(trials)
  with open(output_dir / "trials.csv", encoding="utf-8") as file:
    rows = list(csv.DictReader(file))
  assert sorted(int(row["trial"]) for row in rows) == [trial.number for trial in trials]


class SimulatedKill(BaseException):
  """Stops a search in this process at a chosen point, as a SIGKILL there would."""


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_sweep_killed_between_fail_and_rerun(tmp_path, monkeypatch, reference_sweep):
  output_dir = tmp_path / "sweep"
  settings = fault_sweep_worker.make_settings(output_dir)
  noise_dims = SWEEP_NOISE_DIMS[:1]
  space = fault_sweep_worker.make_space(noise_dims)
  study, _, _ = search.prepare_search(settings, space)
  # A trial that a search of this process claimed and then stopped running,
  # as if a SIGKILL had ended it.
  claimed = study.ask(fixed_distributions=space.distributions())
  for name, value in (("worker_host", search._host_key()), ("worker_pid", os.getpid()),
                      ("worker_token", "stopped search")):
    claimed.set_user_attr(name, value)

  def kill_before_enqueue(*args, **kwargs):
    del args, kwargs
    raise SimulatedKill()

  # The next search marks the trial FAIL and stops before it enqueues the rerun.
  with monkeypatch.context() as patch:
    patch.setattr(search, "_enqueue_retry", kill_before_enqueue)
    with pytest.raises(SimulatedKill):
      fault_sweep_worker.run(output_dir, noise_dims)
  trials = load_trials(output_dir)
  assert [trial.state.name for trial in trials] == ["FAIL"]
  assert trials[0].user_attrs[search.FAIL_REASON_ATTR].startswith("interrupted")

  report = fault_sweep_worker.run(output_dir, noise_dims)
  trials = load_trials(output_dir)
  expected = [result for result in reference_sweep.values()
              if result[0] == {"noise_dim": noise_dims[0]}]
  assert list(complete_results(trials).values()) == expected
  assert_interrupted_trials_rerun(trials)
  assert report.counts == {"COMPLETE": 1, "FAIL": 1}
