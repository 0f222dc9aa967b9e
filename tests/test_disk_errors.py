"""Tests of failed writes: a file size limit, a full disk and a read-only folder.

A failed write must stop training with an error that names the file, its path,
the operating system's reason and what to do. It must leave the files written
before it as they were, above all the last checkpoint, and leave no temporary
file behind.

The file size limit (RLIMIT_FSIZE) is set in subprocesses with SIGXFSZ
ignored, so a write past the limit fails with EFBIG instead of killing the
process. This module is also the script those subprocesses run. The full disk
is a small tmpfs and the read-only folder a read-only bind mount. Both need
mount privileges, so those tests are skipped where mounting is not allowed.
"""

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from gan_lib import config as config_lib
from gan_lib import data
from gan_lib import io_utils
from gan_lib import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "train_gan.py")
BATCH = 16
# Flags shared by every run here; the tiny data set gives 6 steps per epoch.
SETTINGS = dict(batch_size=BATCH, width=4, noise_dim=8, seed=5, eval_every=0,
                checkpoint_every=0, precision="float32", jit_compile="false")
# Sizes measured for these settings: a checkpoint's data file is about 194 KB,
# a sample PNG about 24 KB, a JSON Lines row about 250 bytes. Each limit falls
# between the file that must fail and every file written before it.
CHECKPOINT_LIMIT = 100_000
PNG_LIMIT = 12_000
LOG_LIMIT = 100_000
LOG_PADDING = 150_000  # bytes added to an old row so that the log outgrows LOG_LIMIT


def _train(output_dir, data_dir, **overrides):
  config = config_lib.TrainConfig(output_dir=str(output_dir), data_dir=data_dir,
                                  **dict(SETTINGS, **overrides))
  pipeline = data.EpochPipeline.from_tfds(BATCH, SETTINGS["seed"], data_dir=data_dir)
  return training.train(config, pipeline=pipeline)


def _ignore_sigxfsz_and_limit(limit_bytes):
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))


def _environment():
  return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def _listing(folder):
  """Returns {relative path: bytes} of every file under `folder`."""
  files = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as file:
        files[os.path.relpath(path, folder)] = file.read()
  return files


def _leftovers(folder):
  """Returns the temporary files and folders of interrupted writes under `folder`."""
  found = []
  for root, folders, names in os.walk(folder):
    for name in folders + names:
      if name.endswith(("_temp", ".old")) or ".tmp" in name:
        found.append(os.path.relpath(os.path.join(root, name), folder))
  return found


def _weights(result):
  return [variable.numpy() for variable in result.model.variables]


@pytest.fixture(scope="module")
def good_run(tiny_data_dir, tmp_path_factory):
  """A finished one-epoch run that each test copies; returns (folder, weights)."""
  folder = tmp_path_factory.mktemp("good") / "run"
  result = _train(folder, tiny_data_dir, epochs=1)
  assert result.step == 6
  return folder, _weights(result)


# The script the limited subprocess runs: it trains copies of the good run for
# a second epoch, each case under its own file size limit.


def _run_limited_cases(good_folder, data_dir, root, results_path):
  """Writes {case: {"error", "errno", "description", "path"}} to `results_path`."""
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  results = {}
  for case, limit in (("png", PNG_LIMIT), ("log", LOG_LIMIT)):
    output_dir = os.path.join(root, case)
    shutil.copytree(good_folder, output_dir)
    if case == "log":
      _pad_first_row(os.path.join(output_dir, "metrics.jsonl"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
      _train(output_dir, data_dir, epochs=2)
      results[case] = {"error": None}
    except io_utils.OutputWriteError as error:
      results[case] = {"error": str(error), "errno": error.errno,
                       "description": error.description, "path": error.filename}
    finally:
      resource.setrlimit(resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
  with open(results_path, "w", encoding="utf-8") as file:
    json.dump(results, file)


def _pad_first_row(path):
  with open(path, encoding="utf-8") as file:
    rows = [json.loads(line) for line in file]
  rows[0]["padding"] = "x" * LOG_PADDING
  with open(path, "w", encoding="utf-8") as file:
    file.write("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def limited_cases(good_run, tiny_data_dir, tmp_path_factory):
  """Runs the sample PNG and JSON Lines log cases in one subprocess; returns (root, results)."""
  root = tmp_path_factory.mktemp("limited")
  results_path = root / "results.json"
  command = [sys.executable, __file__, str(good_run[0]), tiny_data_dir, str(root),
             str(results_path)]
  completed = subprocess.run(command, env=_environment(), capture_output=True, text=True,
                             timeout=600, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  return root, json.loads(results_path.read_text())


def test_script_checkpoint_failure_exits(good_run, tiny_data_dir, tmp_path):
  output_dir = tmp_path / "run"
  shutil.copytree(good_run[0], output_dir)
  checkpoints_before = _listing(output_dir / "checkpoints")

  flags = [f"--{name}={value}" for name, value in SETTINGS.items()]
  command = [sys.executable, SCRIPT, f"--output_dir={output_dir}",
             f"--data_dir={tiny_data_dir}", "--epochs=2", *flags]
  completed = subprocess.run(command, env=_environment(), capture_output=True, text=True,
                             timeout=300, check=False,
                             preexec_fn=lambda: _ignore_sigxfsz_and_limit(CHECKPOINT_LIMIT))

  assert completed.returncode == os.EX_IOERR, completed.stderr[-3000:]
  checkpoint = output_dir / "checkpoints" / "ckpt-12"
  last_checkpoint = output_dir / "checkpoints" / "ckpt-6"
  assert (f"cannot write the checkpoint {checkpoint}: File too large (EFBIG); raise the file "
          "size limit (ulimit -f)") in completed.stderr
  assert (f"The last checkpoint {last_checkpoint} is intact; run the same command again to "
          "resume from it") in completed.stderr
  assert _listing(output_dir / "checkpoints") == checkpoints_before
  assert _leftovers(output_dir) == []
  # The epoch's sample was written before the checkpoint failed.
  assert (output_dir / "samples" / "epoch_0002.png").exists()

  resumed = _train(output_dir, tiny_data_dir, epochs=1)
  assert resumed.step == 6
  for before, after in zip(good_run[1], _weights(resumed)):
    np.testing.assert_array_equal(before, after)


def test_sample_png_failure_named(limited_cases, good_run):
  root, results = limited_cases
  result = results["png"]
  png = root / "png" / "samples" / "epoch_0002.png"
  assert result["description"] == "the sample PNG"
  assert result["path"] == str(png)
  assert result["errno"] == errno.EFBIG
  assert result["error"].startswith(f"cannot write the sample PNG {png}: File too large (EFBIG)")
  assert "The last checkpoint" in result["error"]
  assert not png.exists()
  assert _listing(root / "png" / "checkpoints") == _listing(good_run[0] / "checkpoints")
  assert _leftovers(root / "png") == []


def test_log_failure_keeps_old_log(limited_cases, good_run):
  root, results = limited_cases
  result = results["log"]
  log = root / "log" / "metrics.jsonl"
  assert result["description"] == "the JSON Lines log"
  assert result["errno"] == errno.EFBIG
  assert result["error"].startswith(f"cannot write the JSON Lines log {log}: File too large")
  rows = [json.loads(line) for line in log.read_text().splitlines()]
  assert [row["epoch"] for row in rows] == [1]
  assert len(rows[0]["padding"]) == LOG_PADDING
  assert _listing(root / "log" / "checkpoints") == _listing(good_run[0] / "checkpoints")
  assert _leftovers(root / "log") == []


def _mount(*arguments):
  """Runs mount with `arguments`; skips the test when this process may not mount."""
  completed = subprocess.run(["mount", *arguments], capture_output=True, text=True, check=False)
  if completed.returncode != 0:
    pytest.skip(f"cannot mount here: {completed.stderr.strip()}")


def _unmount(folder):
  subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def test_full_disk_keeps_checkpoint(good_run, tiny_data_dir, tmp_path):
  disk = tmp_path / "disk"
  disk.mkdir()
  _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk))
  try:
    output_dir = disk / "run"
    shutil.copytree(good_run[0], output_dir)
    checkpoints_before = _listing(output_dir / "checkpoints")
    # Leave about 100 KB: room for the epoch's PNG and log row, not for a checkpoint.
    status = os.statvfs(disk)
    with open(disk / "filler", "wb") as filler:
      filler.write(b"\0" * (status.f_bavail * status.f_frsize - 100_000))

    with pytest.raises(io_utils.OutputWriteError) as raised:
      _train(output_dir, tiny_data_dir, epochs=2)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.description == "the checkpoint"
    assert str(raised.value).startswith(
        f"cannot write the checkpoint {output_dir / 'checkpoints' / 'ckpt-12'}: "
        "No space left on device (ENOSPC); free space on that disk")
    assert _listing(output_dir / "checkpoints") == checkpoints_before
    assert _leftovers(output_dir) == []
  finally:
    _unmount(disk)


def test_read_only_samples_folder(good_run, tiny_data_dir, tmp_path):
  output_dir = tmp_path / "run"
  shutil.copytree(good_run[0], output_dir)
  samples = output_dir / "samples"
  samples_before = _listing(samples)
  _mount("--bind", str(samples), str(samples))
  try:
    _mount("-o", "remount,bind,ro", str(samples))
    with pytest.raises(io_utils.OutputWriteError) as raised:
      _train(output_dir, tiny_data_dir, epochs=2)
  finally:
    _unmount(samples)
  assert raised.value.errno == errno.EROFS
  assert str(raised.value).startswith(
      f"cannot write the sample PNG {samples / 'epoch_0002.png'}: Read-only file system "
      "(EROFS); remount the file system read-write or choose another output folder")
  assert _listing(samples) == samples_before
  assert _leftovers(output_dir) == []


if __name__ == "__main__":
  _run_limited_cases(*sys.argv[1:5])
