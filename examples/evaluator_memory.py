"""Measures the evaluator's peak resident memory at several sample counts.

Each count runs in a fresh Python process, which scores that many images from a
randomly initialised `gan_lib.networks.Generator` and reports its peak resident
set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`). A fresh process per count
keeps one measurement's peak out of the next one.

  nice -n 15 python examples/evaluator_memory.py --num_samples=10000,100000

Peak memory does not depend on CPU contention, so the figures hold on a busy
machine; only the times grow.
"""

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # Hide TensorFlow's C++ info lines.

from absl import app
from absl import flags
from absl import logging

flags.DEFINE_list("num_samples", ["10000", "100000"], "Sample counts to measure, "
                  "comma-separated, each at least 10. Each runs in its own process.")
flags.DEFINE_integer("batch_size", 500, "The evaluator's batch_size: images generated per "
                     "step.")
flags.DEFINE_integer("noise_dim", 100, "Size of the generator's noise vector.")
flags.DEFINE_integer("width", 64, "Channel width of the generator (64 is gan_lib's default); "
                     "a small width makes a quick run.")
flags.DEFINE_integer("warmup_samples", 1000, "Images scored before the measured evaluation, "
                     "at least 10, so that tracing and TensorFlow's caches count in the "
                     "set-up figure.")
flags.DEFINE_string("reference_split", "test", "TFDS split of mnist to compare against.")
flags.DEFINE_string("data_dir", None, "TFDS data dir of the prepared mnist data set "
                    "(default: TFDS's own).")
flags.DEFINE_integer("seed", 0, "Seed of the generator's weights and of the noise.")
flags.DEFINE_string("output_json", None, "Optional file to write the measurements to, as "
                    "JSON.")
flags.DEFINE_bool("single_run", False, "Measure the one count in --num_samples in this "
                  "process and print the result as one JSON line. The measuring run starts "
                  "one such process per count.")

_MIN_SAMPLES = 10  # metrics.evaluator.MIN_SAMPLES, repeated to check flags before importing TensorFlow.
_FORWARDED_FLAGS = ("batch_size", "noise_dim", "width", "warmup_samples", "reference_split",
                    "data_dir", "seed")


def _peak_rss_mib():
  """Returns this process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _parse_counts(values):
  """Returns the sample counts as ints, or raises ValueError naming the invalid one."""
  counts = []
  for value in values:
    try:
      count = int(value)
    except ValueError:
      raise ValueError(f"--num_samples is invalid: {value!r} is not a whole number") from None
    if count < _MIN_SAMPLES:
      raise ValueError(f"--num_samples is invalid: {count} is below the minimum of {_MIN_SAMPLES}")
    counts.append(count)
  return counts


def _check_flags():
  """Returns a one-line error for the first invalid flag, or None."""
  values = flags.FLAGS
  try:
    counts = _parse_counts(values.num_samples)
  except ValueError as error:
    return str(error)
  if not counts:
    return "--num_samples is empty: pass one or more counts such as 10000,100000"
  if values.single_run and len(counts) != 1:
    return f"--num_samples={','.join(values.num_samples)} is invalid with --single_run: expected one count"
  for name in ("batch_size", "noise_dim", "width"):
    if getattr(values, name) < 1:
      return f"--{name}={getattr(values, name)} is invalid: expected a whole number >= 1"
  if values.warmup_samples < _MIN_SAMPLES:
    return f"--warmup_samples={values.warmup_samples} is invalid: expected at least {_MIN_SAMPLES}"
  if values.output_json and os.path.isdir(values.output_json):
    return f"--output_json={values.output_json!r} is invalid: it is a folder, expected a file path"
  return None


def measure_one(num_samples):
  """Scores `num_samples` generated images in this process and returns the measurement as a dict."""
  start = time.time()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from gan_lib import networks  # pylint: disable=g-import-not-at-top
  from metrics import evaluator as evaluator_lib  # pylint: disable=g-import-not-at-top

  values = flags.FLAGS
  generator = networks.Generator(noise_dim=values.noise_dim, width=values.width,
                                 rng=tf.random.Generator.from_seed(values.seed))
  evaluator = evaluator_lib.Evaluator(reference_split=values.reference_split,
                                      data_dir=values.data_dir, batch_size=values.batch_size)
  evaluator.real_reference_statistics()
  # A different noise seed, so the warm-up draws other images than the measured run.
  evaluator.evaluate_generator(generator, values.warmup_samples, seed=values.seed + 1)
  setup_peak = _peak_rss_mib()
  results = evaluator.evaluate_generator(generator, num_samples, seed=values.seed)
  return dict(
      num_samples=num_samples,
      peak_rss_mib=_peak_rss_mib(),
      setup_peak_rss_mib=setup_peak,
      evaluation_seconds=results["seconds"],
      total_seconds=time.time() - start,
      frechet_distance=results["frechet_distance"],
      inception_score=results["inception_score"],
  )


def _run_in_subprocess(num_samples):
  """Runs `measure_one(num_samples)` in a fresh Python process and returns its dict."""
  values = flags.FLAGS
  command = [sys.executable, os.path.abspath(__file__), f"--num_samples={num_samples}",
             "--single_run"]
  for name in _FORWARDED_FLAGS:
    value = getattr(values, name)
    if value is not None:
      command.append(f"--{name}={value}")
  logging.info("Measuring %d samples: %s", num_samples, " ".join(command))
  completed = subprocess.run(command, stdout=subprocess.PIPE, check=False)
  if completed.returncode != 0:
    raise RuntimeError(f"the measurement of {num_samples} samples failed with exit status "
                       f"{completed.returncode}; its log is above")
  # The result is the last line, because TensorFlow may print other lines to stdout first.
  return json.loads(completed.stdout.decode("utf-8").strip().splitlines()[-1])


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}; every setting is a --flag")
  error = _check_flags()
  if error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  values = flags.FLAGS
  counts = _parse_counts(values.num_samples)
  if values.single_run:
    print(json.dumps(measure_one(counts[0])), flush=True)
    return

  measurements = [_run_in_subprocess(count) for count in counts]
  print("| images | peak RSS (MiB) | peak after set-up and warm-up (MiB) | evaluation (s) |")
  print("|---|---|---|---|")
  for measurement in measurements:
    print(f"| {measurement['num_samples']} | {measurement['peak_rss_mib']:.1f} | "
          f"{measurement['setup_peak_rss_mib']:.1f} | {measurement['evaluation_seconds']:.1f} |")
  first, last = measurements[0], measurements[-1]
  ratio = last["peak_rss_mib"] / first["peak_rss_mib"]
  print(f"Peak RSS at {last['num_samples']} images is {ratio:.3f}x the peak at "
        f"{first['num_samples']} images.")
  if values.output_json:
    settings = {name: getattr(values, name) for name in _FORWARDED_FLAGS}
    with open(values.output_json, "w", encoding="utf-8") as output:
      json.dump(dict(settings=settings, measurements=measurements, peak_ratio=ratio), output,
                indent=2, sort_keys=True)
      output.write("\n")


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
