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

from gan_lib import benchmark

flags.DEFINE_list("batch_sizes", ["256"], "Images per train step, comma-separated. Every "
                  "mode is timed at each.")
flags.DEFINE_list("modes", list(benchmark.MODES), "Train step modes, comma-separated: graph "
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
flags.DEFINE_list("baseline_modes", list(benchmark.BASELINE_MODES), "Keras baseline modes to "
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


def _settings_from_flags():
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
  try:
    settings = _settings_from_flags()
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
