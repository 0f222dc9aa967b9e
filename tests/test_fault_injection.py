"""Kills examples/train_gan.py at random moments and checks that nothing is lost.

The script trains on a tiny TFDS `mnist` data set that the test prepares, so a
run takes seconds. Each kill is a SIGKILL at a random moment or right after a
log line that starts a write (checkpoint, epoch row and sample PNG, SavedModel).
The same command is then restarted until it finishes. The interrupted run must end
with the weights of an uninterrupted one and leave only whole files.

GAN_LIB_FAULT_KILLS sets how many kills the random test makes (default 3, to
keep CI short; BUILD_NOTES.md records a run with 10).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "train_gan.py")
TRAIN_FLAGS = ["--epochs=3", "--batch_size=16", "--width=4", "--noise_dim=8", "--seed=5",
               "--eval_every=0", "--checkpoint_every=2", "--precision=float32",
               "--jit_compile=false"]
KILL_COUNT = int(os.environ.get("GAN_LIB_FAULT_KILLS", "3"))


def _command(output_dir, data_dir):
  return [sys.executable, SCRIPT, f"--output_dir={output_dir}", f"--data_dir={data_dir}",
          *TRAIN_FLAGS]


def _environment():
  return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def _run_to_end(output_dir, data_dir):
  result = subprocess.run(_command(output_dir, data_dir), env=_environment(),
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _start(output_dir, data_dir):
  return subprocess.Popen(_command(output_dir, data_dir), env=_environment(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_after_line(process, pattern, timeout=240):
  """SIGKILLs `process` as soon as a stderr line contains `pattern`; returns False if it exited first."""
  deadline = time.monotonic() + timeout
  for line in process.stderr:
    if pattern in line:
      process.kill()
      process.wait()
      return True
    if time.monotonic() > deadline:
      break
  process.wait()
  return False


def _kill_after_delay(process, seconds):
  """SIGKILLs `process` after `seconds`; returns False if it had already exited."""
  try:
    process.wait(timeout=seconds)
    return False
  except subprocess.TimeoutExpired:
    process.kill()
    process.wait()
    return True


def _checkpoint_weights(output_dir):
  """Returns the latest checkpoint's path and its values, except how often it was saved."""
  path = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  names = [name for name in reader.get_variable_to_shape_map()
           if name.endswith(".ATTRIBUTES/VARIABLE_VALUE")
           and not name.startswith(("save_counter", "epoch_sums"))]
  return path, {name: reader.get_tensor(name) for name in names}


def _assert_outputs_whole(output_dir, epochs):
  rows = [json.loads(line) for line in open(os.path.join(output_dir, "metrics.jsonl"))]
  assert [row["epoch"] for row in rows] == list(range(1, epochs + 1))
  for epoch in range(1, epochs + 1):
    with Image.open(os.path.join(output_dir, "samples", f"epoch_{epoch:04d}.png")) as png:
      png.load()
  with Image.open(os.path.join(output_dir, "samples", "progress.gif")) as gif:
    assert gif.n_frames == epochs
  loaded = tf.saved_model.load(os.path.join(output_dir, "saved_model"))
  images = loaded.signatures["serving_default"](noise=tf.zeros([2, 8]))["images"]
  assert images.shape == (2, 28, 28, 1)
  leftovers = []
  for folder, subfolders, files in os.walk(output_dir):
    for name in subfolders + files:
      if name.endswith((".tmp", ".old")):
        leftovers.append(os.path.join(folder, name))
  assert leftovers == []


def _assert_same_weights(reference_dir, resumed_dir):
  reference_path, reference = _checkpoint_weights(reference_dir)
  resumed_path, resumed = _checkpoint_weights(resumed_dir)
  assert os.path.basename(reference_path) == os.path.basename(resumed_path)
  assert reference.keys() == resumed.keys()
  for name, value in reference.items():
    np.testing.assert_array_equal(value, resumed[name], err_msg=name)


@pytest.fixture(scope="module")
def reference_run(tiny_data_dir, tmp_path_factory):
  output_dir = str(tmp_path_factory.mktemp("reference"))
  _run_to_end(output_dir, tiny_data_dir)
  return output_dir


def test_kills_after_each_kind_of_write(tiny_data_dir, reference_run, tmp_path):
  output_dir = str(tmp_path / "run")
  for pattern in ("Saved checkpoint", "Epoch 1/3", "Epoch 3/3", "Exported the generator"):
    assert _kill_after_line(_start(output_dir, tiny_data_dir), pattern), pattern
  _run_to_end(output_dir, tiny_data_dir)
  _assert_outputs_whole(output_dir, epochs=3)
  _assert_same_weights(reference_run, output_dir)


def test_kills_at_random_moments(tiny_data_dir, reference_run, tmp_path):
  output_dir = str(tmp_path / "run")
  rng = random.Random(1234)
  kills = 0
  attempts = 0
  while kills < KILL_COUNT and attempts < 4 * KILL_COUNT:
    attempts += 1
    if _kill_after_delay(_start(output_dir, tiny_data_dir), rng.uniform(2.0, 12.0)):
      kills += 1
  _run_to_end(output_dir, tiny_data_dir)
  _assert_outputs_whole(output_dir, epochs=3)
  _assert_same_weights(reference_run, output_dir)


def test_sigterm_saves_and_next_start_resumes(tiny_data_dir, reference_run, tmp_path):
  output_dir = str(tmp_path / "run")
  process = _start(output_dir, tiny_data_dir)
  for line in process.stderr:
    if "Saved checkpoint" in line:
      process.send_signal(signal.SIGTERM)
      break
  remaining = process.stderr.read()
  assert process.wait(timeout=120) == 128 + signal.SIGTERM
  assert "stopped by signal 15" in remaining
  _run_to_end(output_dir, tiny_data_dir)
  _assert_same_weights(reference_run, output_dir)
