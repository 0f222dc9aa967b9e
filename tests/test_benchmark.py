"""Tests of the benchmark library and script, with tiny models and step counts.

No speed is asserted: the numbers depend on the machine and its load.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_lib import benchmark
from gan_lib import data
from gan_lib import devices
from gan_lib import keras_baseline
from gan_lib import train_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "examples", "benchmark.py")
BATCH = 8
# XLA modes are left out of the full run because compiling the step took 24 to 31
# seconds per XLA mode on a busy 2-core CPU. `resolve_mode` is tested for every mode.
RUN_MODES = ("graph", "bf16", "auto")


def _tiny_settings(**overrides):
  settings = dict(batch_sizes=(BATCH,), modes=RUN_MODES, warmup_steps=1, timed_steps=2,
                  repeats=2, peak_matmul_size=64, peak_conv_batch_size=4, peak_seconds=0.05,
                  pipeline_batches=2, pipeline_warmup_batches=1, noise_dim=8, width=4)
  settings.update(overrides)
  return benchmark.BenchmarkSettings(**settings)


@pytest.fixture(scope="module")
def tiny_results():
  """The results of one full tiny benchmark run, shared by the tests that read them."""
  images = np.random.default_rng(0).integers(0, 256, size=(64, 28, 28, 1), dtype=np.uint8)

  def pipeline_factory(batch_size):
    return data.EpochPipeline.from_array(images, batch_size, seed=0)

  return benchmark.run_benchmark(_tiny_settings(), pipeline_factory=pipeline_factory)


def _assert_positive_spread(spread, label):
  for key in ("median", "min", "max"):
    assert spread[key] > 0, f"{label} {key}"
  assert spread["min"] <= spread["median"] <= spread["max"], label


def test_results_have_every_requested_mode(tiny_results):
  entries = [entry for entry in tiny_results["train_steps"]
             if entry["implementation"] == "gan_lib"]
  assert [entry["mode"] for entry in entries] == list(RUN_MODES)
  for entry in entries:
    assert entry["batch_size"] == BATCH
    _assert_positive_spread(entry["steps_per_second"], entry["mode"])
    _assert_positive_spread(entry["images_per_second"], entry["mode"])
    assert entry["gflops_per_second"] > 0, entry["mode"]
    assert entry["fraction_of_conv_peak"] > 0, entry["mode"]
    assert entry["fraction_of_matmul_peak"] > 0, entry["mode"]
    assert entry["ratio_to_keras_float32"] > 0, entry["mode"]
    assert np.isfinite(entry["discriminator_loss"]), entry["mode"]


def test_results_modes_have_expected_settings(tiny_results):
  settings = {entry["mode"]: (entry["precision"], entry["jit_compile"])
              for entry in tiny_results["train_steps"]}
  assert settings["graph"] == ("float32", False)
  assert settings["bf16"] == ("mixed_bfloat16", False)
  assert settings["auto"] == (devices.resolve_precision("auto"),
                              devices.resolve_jit_compile("auto"))


def test_results_include_both_keras_baselines(tiny_results):
  baselines = {entry["mode"]: entry for entry in tiny_results["train_steps"]
               if entry["implementation"] == "keras_baseline"}
  assert set(baselines) == {"keras_float32", "keras_mixed_bfloat16"}
  for mode, entry in baselines.items():
    _assert_positive_spread(entry["images_per_second"], mode)
  assert baselines["keras_float32"]["ratio_to_keras_float32"] == pytest.approx(1.0)


def test_results_flops_match_traced_graphs(tiny_results):
  flops = tiny_results["flops"]
  expected = benchmark.train_step_flops(BATCH, noise_dim=8, width=4)
  assert flops["per_step"] == {str(BATCH): expected}
  assert flops["graph_count_per_step"]["gan_lib"] == {str(BATCH): expected}
  assert flops["graph_count_per_step"]["keras_baseline"] == {str(BATCH): expected}


def test_results_peaks_are_positive(tiny_results):
  peaks = tiny_results["peak"]
  assert set(peaks) == {"matmul_float32", "conv_float32", "matmul_bfloat16", "conv_bfloat16"}
  for name, peak in peaks.items():
    assert peak["gflops_per_second"] > 0, name
    assert peak["gflops_per_second"] >= peak["gflops_per_second_median"], name
  assert peaks["matmul_float32"]["flops_per_call"] == 2 * 64**3
  assert peaks["conv_float32"]["flops_per_call"] == 2 * 4 * 49 * 25 * 16 * 8


def test_results_pipeline_is_compared_with_step(tiny_results):
  [pipeline] = tiny_results["pipeline"]
  assert pipeline["batch_size"] == BATCH
  assert pipeline["images_per_second"] > 0
  assert pipeline["timed_batches"] == 2
  assert pipeline["best_mode"] in RUN_MODES
  assert pipeline["ratio_to_best_mode"] > 0
  assert pipeline["meets_target_ratio"] == (
      pipeline["ratio_to_best_mode"] >= benchmark.PIPELINE_TARGET_RATIO)


def test_results_describe_machine(tiny_results):
  machine = tiny_results["machine"]
  assert machine["tensorflow_version"] == tf.__version__
  assert machine["logical_cores"] >= 1
  assert isinstance(machine["cpu_flags"]["avx512_bf16"], bool)
  assert isinstance(machine["cpu_flags"]["amx_bf16"], bool)
  assert machine["gpus"] == [gpu.name for gpu in tf.config.list_physical_devices("GPU")]


def test_results_json_written_atomically(tiny_results, tmp_path):
  path = tmp_path / "benchmark.json"
  path.write_text("old")
  benchmark.write_results_json(tiny_results, str(path))
  assert json.loads(path.read_text()) == json.loads(json.dumps(tiny_results))
  assert os.listdir(tmp_path) == ["benchmark.json"]


def test_markdown_has_row_per_measurement(tiny_results):
  text = benchmark.format_markdown(tiny_results)
  rows = [line for line in text.splitlines() if line.startswith(f"| {BATCH} |")]
  # One row per train step entry, plus the input pipeline's row.
  assert len(rows) == len(tiny_results["train_steps"]) + 1
  for mode in RUN_MODES + ("keras_float32", "keras_mixed_bfloat16"):
    assert f"| {mode} |" in text
  assert "### Peak yardsticks" in text
  assert "matches the traced graph" in text


def test_flops_match_hand_computation():
  # noise_dim=2, width=1. Forward MACs per image:
  #   project 2*49*4 = 392, upsample1 49*25*4*2 = 9800, upsample2 49*25*2*1 = 2450,
  #   to_image 196*25*1*1 = 4900, conv1 196*25*1*1 = 4900, conv2 49*25*1*2 = 2450,
  #   logit 49*2 = 98.
  # Step MACs per image: 2*392 + 3*(9800 + 2450 + 4900) + 5*4900 + 7*(2450 + 98) = 94570.
  assert benchmark.train_step_macs_per_image(noise_dim=2, width=1) == 94570
  assert benchmark.train_step_flops(3, noise_dim=2, width=1) == 2 * 3 * 94570


def test_flops_match_traced_step_graph():
  model = train_step.GanModel(noise_dim=2, width=1)
  step = train_step.make_train_step(model, 3)
  concrete = step.get_concrete_function(tf.TensorSpec([3, 28, 28, 1], tf.float32))
  assert benchmark.count_graph_flops(concrete) == 2 * 3 * 94570


def test_graph_count_skips_unused_ops():
  @tf.function
  def product(a, b):
    tf.matmul(b, a, transpose_a=True, transpose_b=True)  # Unused, so the runtime prunes it.
    return tf.matmul(a, b)

  concrete = product.get_concrete_function(
      tf.TensorSpec([3, 4], tf.float32), tf.TensorSpec([4, 5], tf.float32))
  assert benchmark.count_graph_flops(concrete) == 2 * 3 * 4 * 5


@pytest.mark.parametrize("precision", keras_baseline.BASELINE_PRECISIONS)
def test_keras_baseline_step_changes_weights(precision):
  baseline = keras_baseline.KerasBaselineGan(noise_dim=8, width=4, precision=precision)
  assert keras.mixed_precision.global_policy().name == "float32"
  variables = baseline.generator.trainable_variables + baseline.discriminator.trainable_variables
  before = [variable.numpy() for variable in variables]
  step = baseline.make_train_step(BATCH)
  metrics = step(benchmark.make_synthetic_batches(BATCH, count=1)[0])
  assert np.isfinite(float(metrics["discriminator_loss"]))
  assert np.isfinite(float(metrics["generator_loss"]))
  for old_value, variable in zip(before, variables):
    assert not np.array_equal(old_value, variable.numpy()), variable.path


def test_keras_baseline_rejects_unknown_precision():
  with pytest.raises(ValueError, match="precision must be one of"):
    keras_baseline.KerasBaselineGan(precision="mixed_float16")


def test_resolve_mode_for_every_mode():
  assert benchmark.resolve_mode("graph") == ("float32", False)
  assert benchmark.resolve_mode("xla") == ("float32", True)
  assert benchmark.resolve_mode("bf16") == ("mixed_bfloat16", False)
  assert benchmark.resolve_mode("xla_bf16") == ("mixed_bfloat16", True)
  assert benchmark.resolve_mode("auto") == (devices.resolve_precision("auto"),
                                            devices.resolve_jit_compile("auto"))
  with pytest.raises(ValueError, match="mode must be one of"):
    benchmark.resolve_mode("fast")


@pytest.mark.parametrize("overrides,expected", [
    (dict(batch_sizes=(0,)), "--batch_sizes='0' is invalid: expected whole numbers >= 1, got 0"),
    (dict(batch_sizes=(256, -8)),
     "--batch_sizes='256,-8' is invalid: expected whole numbers >= 1, got -8"),
    (dict(batch_sizes=()), "--batch_sizes is missing: expected whole numbers >= 1"),
    (dict(modes=("graph", "fast")),
     "--modes='graph,fast' is invalid: unknown mode 'fast', expected a comma-separated list "
     "of graph, xla, bf16, xla_bf16, auto"),
    (dict(modes=()),
     "--modes is missing: expected a comma-separated list of graph, xla, bf16, xla_bf16, auto"),
    (dict(modes=("graph", "graph")),
     "--modes='graph,graph' is invalid: a mode is listed more than once"),
    (dict(warmup_steps=0), "--warmup_steps=0 is invalid: expected a whole number >= 1"),
    (dict(timed_steps=0), "--timed_steps=0 is invalid: expected a whole number >= 1"),
    (dict(repeats=0), "--repeats=0 is invalid: expected a whole number >= 1"),
    (dict(peak_matmul_size=0), "--peak_matmul_size=0 is invalid: expected a whole number >= 1"),
    (dict(pipeline_batches=0), "--pipeline_batches=0 is invalid: expected a whole number >= 1"),
    (dict(seed=-1), "--seed=-1 is invalid: expected a whole number >= 0"),
    (dict(peak_seconds=0.0), "--peak_seconds=0.0 is invalid: expected a number of seconds > 0"),
])
def test_invalid_settings_are_rejected(overrides, expected):
  with pytest.raises(benchmark.BenchmarkSettingsError) as error:
    _tiny_settings(**overrides).validate()
  assert str(error.value) == expected


def test_run_benchmark_validates_settings_first():
  with pytest.raises(benchmark.BenchmarkSettingsError, match="--repeats=0 is invalid"):
    benchmark.run_benchmark(_tiny_settings(repeats=0))


def test_batch_sizes_that_are_not_numbers_are_rejected():
  assert benchmark.parse_batch_sizes(["256", "64"]) == (256, 64)
  with pytest.raises(benchmark.BenchmarkSettingsError) as error:
    benchmark.parse_batch_sizes(["256", "big"])
  assert str(error.value) == (
      "--batch_sizes='256,big' is invalid: expected whole numbers >= 1, got 'big'")


def test_output_path_in_missing_folder_is_rejected(tmp_path):
  benchmark.check_output_path(str(tmp_path / "benchmark.json"))
  missing = tmp_path / "missing" / "benchmark.json"
  with pytest.raises(benchmark.BenchmarkSettingsError, match="does not exist"):
    benchmark.check_output_path(str(missing))
  with pytest.raises(benchmark.BenchmarkSettingsError, match="it is a folder"):
    benchmark.check_output_path(str(tmp_path))


def test_pipeline_rejects_warmup_longer_than_epoch(tiny_images):
  pipeline = data.EpochPipeline.from_array(tiny_images, 8, seed=0)
  with pytest.raises(ValueError, match=r"warmup_batches must be in \[1, 8\)"):
    benchmark.measure_pipeline(pipeline, warmup_batches=8, timed_batches=1)


def test_pipeline_timed_batches_capped_at_epoch(tiny_images):
  pipeline = data.EpochPipeline.from_array(tiny_images, 8, seed=0)
  result = benchmark.measure_pipeline(pipeline, warmup_batches=2, timed_batches=100)
  assert result["timed_batches"] == 6
  assert result["images_per_second"] > 0


def test_script_rejects_zero_batch_size(tmp_path):
  # One run as a user runs the script. The other messages are tested on
  # `BenchmarkSettings`, because each run spends seconds importing TensorFlow.
  environment = dict(os.environ, PYTHONPATH=REPO)
  result = subprocess.run(
      [sys.executable, SCRIPT, "--batch_sizes=256,0", "--modes=graph,xla",
       f"--output_json={tmp_path / 'benchmark.json'}"],
      capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120, check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      "error: --batch_sizes='256,0' is invalid: expected whole numbers >= 1, got 0")
  assert not (tmp_path / "benchmark.json").exists()
