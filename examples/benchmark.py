"""Measures the train step's speed against a Keras baseline and the machine's peak.

Prints Markdown tables and writes the full results as JSON.

  python examples/benchmark.py --batch_sizes=256 --output_json=benchmark.json

Run it on an otherwise idle machine: other processes on the same cores lower
every number it reports.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # Hide TensorFlow's C++ info lines.

from absl import app
from absl import flags
from absl import logging

# The names of gan_lib.benchmark.MODES and BASELINE_MODES. They are repeated
# here because gan_lib.benchmark imports TensorFlow, which takes seconds, and the
# flags are checked before that. tests/test_bad_inputs.py checks that they match.
_MODES = ("graph", "xla", "bf16", "xla_bf16", "auto")
_BASELINE_MODES = ("keras_float32", "keras_mixed_bfloat16")

flags.DEFINE_list("batch_sizes", ["256"], "Images per train step, comma-separated. Every "
                  "mode is timed at each.")
flags.DEFINE_list("modes", list(_MODES), "Train step modes, comma-separated: graph "
                  "(tf.function, float32), xla (XLA, float32), bf16 (mixed_bfloat16), "
                  "xla_bf16 (XLA and mixed_bfloat16), auto (the library's default for this "
                  "device).")
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps before the timed runs, at least 1; they include "
                     "tracing and XLA compilation.")
flags.DEFINE_integer("timed_steps", 10, "Train steps per timed run.")
flags.DEFINE_integer("repeats", 3, "Timed runs per mode and batch size. The table shows their "
                     "median, min and max.")
flags.DEFINE_string("output_json", "benchmark.json", "File to write the full results to, as "
                    "JSON.")
flags.DEFINE_bool("skip_baseline", False, "Skip the Keras baseline.")
flags.DEFINE_list("baseline_modes", list(_BASELINE_MODES), "Keras baseline modes to "
                  "time, comma-separated; keras_mixed_bfloat16 takes minutes on CPUs without "
                  "native bfloat16.")
flags.DEFINE_bool("skip_peak", False, "Skip the matmul and convolution peak measurements.")
flags.DEFINE_bool("skip_pipeline", False, "Skip the input pipeline measurement, which needs "
                  "the prepared TFDS mnist data set.")
flags.DEFINE_integer("peak_matmul_size", 2048, "N of the N x N float32 and bfloat16 matrix "
                     "products of the peak measurement.")
flags.DEFINE_integer("peak_conv_batch_size", 256, "Batch size of the peak measurement's "
                     "transposed convolution, the train step's heaviest one.")
flags.DEFINE_float("peak_seconds", 2.0, "Minimum timed seconds per peak kernel and dtype.")
flags.DEFINE_integer("pipeline_batches", 100, "Batches to time in the input pipeline "
                     "measurement, capped at one epoch's batches.")
flags.DEFINE_integer("pipeline_warmup_batches", 3, "Untimed pipeline batches first. The first "
                     "one waits for the shuffle buffer to fill.")
flags.DEFINE_integer("noise_dim", 100, "Size of the generator's noise vector.")
flags.DEFINE_integer("width", 64, "Channel width of both networks.")
flags.DEFINE_integer("seed", 0, "Seed of the weights, the noise and the synthetic batches.")
flags.DEFINE_string("data_dir", None, "TFDS data dir of the prepared mnist data set "
                    "(default: TFDS's own).")


def _check_flags():
  """Returns a one-line error for the first invalid flag, or None, without importing TensorFlow.

  The messages are those of `benchmark.BenchmarkSettings.validate`,
  `benchmark.parse_batch_sizes` and `benchmark.check_output_path`, which check
  the same values again after the import.
  """
  values = flags.FLAGS
  batch_sizes_text = ",".join(values.batch_sizes)
  if not values.batch_sizes:
    return "--batch_sizes is missing: expected whole numbers >= 1"
  for text in values.batch_sizes:
    try:
      batch_size = int(text)
    except ValueError:
      return (f"--batch_sizes={batch_sizes_text!r} is invalid: expected whole numbers >= 1, "
              f"got {text!r}")
    if batch_size < 1:
      return (f"--batch_sizes={batch_sizes_text!r} is invalid: expected whole numbers >= 1, "
              f"got {batch_size}")

  expected_modes = f"expected a comma-separated list of {', '.join(_MODES)}"
  if not values.modes:
    return f"--modes is missing: {expected_modes}"
  for mode in values.modes:
    if mode not in _MODES:
      return f"--modes={','.join(values.modes)!r} is invalid: unknown mode {mode!r}, {expected_modes}"
  if len(set(values.modes)) != len(values.modes):
    return f"--modes={','.join(values.modes)!r} is invalid: a mode is listed more than once"
  if not values.baseline_modes or any(mode not in _BASELINE_MODES
                                      for mode in values.baseline_modes):
    return (f"--baseline_modes={','.join(values.baseline_modes)!r} is invalid: expected a "
            f"comma-separated list of {', '.join(_BASELINE_MODES)}")

  for name in ("warmup_steps", "timed_steps", "repeats", "peak_matmul_size",
               "peak_conv_batch_size", "pipeline_batches", "pipeline_warmup_batches",
               "noise_dim", "width"):
    if values[name].value < 1:
      return f"--{name}={values[name].value!r} is invalid: expected a whole number >= 1"
  if values.seed < 0:
    return f"--seed={values.seed!r} is invalid: expected a whole number >= 0"
  if not values.peak_seconds > 0:
    return f"--peak_seconds={values.peak_seconds!r} is invalid: expected a number of seconds > 0"

  output_json = values.output_json
  if not output_json:
    return "--output_json is missing: expected a file path"
  if os.path.isdir(output_json):
    return f"--output_json={output_json!r} is invalid: it is a folder, expected a file path"
  folder = os.path.dirname(os.path.abspath(output_json))
  if not os.path.isdir(folder):
    return f"--output_json={output_json!r} is invalid: the folder {folder!r} does not exist"
  return None


def _settings_from_flags(benchmark):
  """Builds the BenchmarkSettings from the flags. `benchmark` is the gan_lib.benchmark module."""
  values = flags.FLAGS
  return benchmark.BenchmarkSettings(
      batch_sizes=benchmark.parse_batch_sizes(values.batch_sizes),
      modes=tuple(values.modes),
      warmup_steps=values.warmup_steps,
      timed_steps=values.timed_steps,
      repeats=values.repeats,
      skip_baseline=values.skip_baseline,
      baseline_modes=tuple(values.baseline_modes),
      skip_peak=values.skip_peak,
      skip_pipeline=values.skip_pipeline,
      peak_matmul_size=values.peak_matmul_size,
      peak_conv_batch_size=values.peak_conv_batch_size,
      peak_seconds=values.peak_seconds,
      pipeline_batches=values.pipeline_batches,
      pipeline_warmup_batches=values.pipeline_warmup_batches,
      noise_dim=values.noise_dim,
      width=values.width,
      seed=values.seed,
      data_dir=values.data_dir,
  )


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}, every setting is a --flag")
  error = _check_flags()
  if error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  # Imported after the checks above, so a bad flag gets its one-line error
  # before TensorFlow's start-up.
  from gan_lib import benchmark  # pylint: disable=g-import-not-at-top

  try:
    settings = _settings_from_flags(benchmark)
    settings.validate()
    benchmark.check_output_path(flags.FLAGS.output_json)
  except benchmark.BenchmarkSettingsError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

  results = benchmark.run_benchmark(settings)
  benchmark.write_results_json(results, flags.FLAGS.output_json)
  print(benchmark.format_markdown(results), end="")
  logging.info("Wrote the full results to %s", flags.FLAGS.output_json)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
