"""Tests of examples/evaluate.py, run as a user runs the script."""

import json
import os
import subprocess
import sys

import pytest

from gan_lib import training
from tiny_generator import TinyGenerator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "evaluate.py")


def _run(tmp_path, *flags):
  # XDG_CACHE_HOME keeps the reference statistics cache inside tmp_path.
  environment = dict(os.environ, PYTHONPATH=REPO, XDG_CACHE_HOME=str(tmp_path / "cache"))
  return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True,
                        cwd=tmp_path, env=environment, timeout=300, check=False)


def test_missing_generator_path_stops_with_one_line(tmp_path):
  missing = tmp_path / "absent"
  result = _run(tmp_path, f"--generator={missing}", f"--output_json={tmp_path / 'out.json'}")
  assert result.returncode == 2
  assert result.stderr.strip() == (
      f"error: --generator='{missing}' is invalid: the path does not exist")


@pytest.mark.parametrize("flags,expected", [
    ((), "error: --generator is required: pass a SavedModel folder or a training output folder"),
    (("--generator=.",), "error: --output_json is required: pass the path of the JSON file to write"),
])
def test_missing_flag_stops_with_one_line(tmp_path, flags, expected):
  result = _run(tmp_path, *flags)
  assert result.returncode == 2
  assert result.stderr.strip() == expected


def test_output_json_that_is_a_folder_stops_with_one_line(tmp_path):
  folder = tmp_path / "run"
  folder.mkdir()
  result = _run(tmp_path, f"--generator={folder}", f"--output_json={tmp_path}")
  assert result.returncode == 2
  assert result.stderr.strip() == (
      f"error: --output_json='{tmp_path}' is invalid: it is a folder, expected a file path")


def test_folder_without_saved_model_stops_with_one_line(tmp_path):
  folder = tmp_path / "run"
  folder.mkdir()
  result = _run(tmp_path, f"--generator={folder}", f"--output_json={tmp_path / 'out.json'}")
  assert result.returncode == 2
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith(f"error: --generator='{folder}' is invalid: {folder} is neither")
  assert not (tmp_path / "out.json").exists()


def test_writes_every_metric_for_output_folder(tmp_path):
  output_dir = tmp_path / "run"
  output_dir.mkdir()
  training.export_generator(TinyGenerator(), str(output_dir / "saved_model"))
  (output_dir / "config.json").write_text(json.dumps({"noise_dim": 4}))
  output_json = tmp_path / "metrics.json"

  result = _run(tmp_path, f"--generator={output_dir}", "--num_samples=30", "--batch_size=16",
                "--reference_split=test[:300]", f"--output_json={output_json}")
  assert result.returncode == 0, result.stderr[-2000:]
  written = json.loads(output_json.read_text())
  for key in ("inception_score", "inception_score_std", "frechet_distance", "kernel_distance",
              "kernel_distance_std", "precision", "recall", "seconds"):
    assert isinstance(written[key], float), key
  assert written["num_samples"] == 30
  assert written["class_coverage"]["num_samples"] == 30
  assert len(written["class_coverage"]["counts"]) == 10
  assert written["reference_split"] == "test[:300]"
  assert written["generator"] == str(output_dir)
  assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
