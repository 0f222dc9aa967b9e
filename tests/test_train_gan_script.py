"""Tests of examples/train_gan.py's flag checks, run as a user runs the script."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "train_gan.py")


def _run(tmp_path, *flags):
  environment = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True,
                        cwd=tmp_path, env=environment, timeout=120, check=False)


@pytest.mark.parametrize("flag,expected", [
    ("--batch_size=0", "--batch_size=0 is invalid: expected a whole number >= 1"),
    ("--batch_size=-8", "--batch_size=-8 is invalid: expected a whole number >= 1"),
    ("--epochs=0", "--epochs=0 is invalid: expected a whole number >= 1"),
    ("--noise_dim=0", "--noise_dim=0 is invalid: expected a whole number >= 1"),
    ("--learning_rate=0", "--learning_rate=0.0 is invalid: expected a number in (0, 1)"),
    ("--learning_rate=1.5", "--learning_rate=1.5 is invalid: expected a number in (0, 1)"),
    ("--beta1=1", "--beta1=1.0 is invalid: expected a number in [0, 1)"),
    ("--max_steps=0", "--max_steps=0 is invalid: expected a whole number >= 1"),
    ("--checkpoint_every=-5", "--checkpoint_every=-5 is invalid: expected a whole number >= 0"),
    ("--eval_samples=3", "--eval_samples=3 is invalid: expected a whole number >= 10"),
    ("--ema_decay=1", "--ema_decay=1.0 is invalid: expected a number in [0, 1)"),
])
def test_bad_flag_stops_with_one_line(tmp_path, flag, expected):
  result = _run(tmp_path, flag, f"--output_dir={tmp_path / 'run'}")
  assert result.returncode == 2
  assert result.stderr.strip() == f"error: {expected}"
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_output_dir_that_is_a_file_stops_with_one_line(tmp_path):
  file_path = tmp_path / "taken"
  file_path.write_text("")
  result = _run(tmp_path, f"--output_dir={file_path}")
  assert result.returncode == 2
  assert result.stderr.strip() == (
      f"error: --output_dir='{file_path}' is invalid: it is a file, expected a folder")


def test_unwritable_output_dir_stops_with_one_line(tmp_path):
  result = _run(tmp_path, "--output_dir=/proc/gan_lib_run")
  assert result.returncode == 2
  assert result.stderr.strip().startswith(
      "error: --output_dir='/proc/gan_lib_run' is invalid: the folder is not writable")
  assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_enum_value_is_rejected_by_flag_parser(tmp_path):
  result = _run(tmp_path, "--precision=float64", f"--output_dir={tmp_path / 'run'}")
  assert result.returncode != 0
  assert "precision" in result.stderr
  assert "float64" in result.stderr
