"""Scores a trained generator against real MNIST and writes every metric to a JSON file.

--generator is a SavedModel folder or a training output folder (which contains
saved_model/ and config.json), as written by examples/train_gan.py.

  python examples/evaluate.py --generator=runs/dcgan --num_samples=10000 \
      --output_json=runs/dcgan/evaluation.json
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # Hide TensorFlow's C++ info lines.

from absl import app
from absl import flags
from absl import logging
import numpy as np

from gan_lib import config
from metrics import validation

flags.DEFINE_string("generator", None, "SavedModel folder or training output folder of the "
                    "generator to evaluate.")
flags.DEFINE_integer("num_samples", 10_000, "Number of images to generate and score, at least 10.")
flags.DEFINE_string("output_json", None, "Path of the JSON file to write the metrics to; required.")
flags.DEFINE_string("data_dir", None, "TFDS data dir holding (or to receive) the prepared mnist "
                    "data set; default: TFDS's own.")
flags.DEFINE_integer("batch_size", 500, "Images generated per step; it changes memory use, not "
                     "the results.")
flags.DEFINE_string("reference_split", "test", "TFDS split of mnist to compare against: train, "
                    "test or all, optionally sliced or joined, such as test[:1000] or "
                    "train[:50%]+test.")
flags.DEFINE_integer("seed", 0, "Seed of the generator noise, a whole number >= 0.")


def _to_json_value(value):
  """Converts numpy arrays and scalars inside `value` to JSON types."""
  if isinstance(value, dict):
    return {key: _to_json_value(item) for key, item in value.items()}
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  return value


def _check_generator_layout(path):
  """Returns a one-line error unless the existing `path` is a SavedModel or training output folder.

  It checks only the layout. `evaluator.load_generator_from_path` loads the
  model and reports anything else that is wrong.
  """
  if not os.path.isdir(path):
    return (f"--generator={path!r} is invalid: it is a file, expected a SavedModel folder or a "
            "training output folder")
  if not (os.path.isfile(os.path.join(path, "saved_model.pb"))
          or os.path.isfile(os.path.join(path, "saved_model", "saved_model.pb"))):
    # The words of evaluator.InvalidGeneratorError, which reports this case only
    # after TensorFlow is imported.
    return (f"--generator={path!r} is invalid: {path} is neither a SavedModel (no "
            "saved_model.pb) nor a training output folder (no saved_model/saved_model.pb)")
  return None


def _check_flags():
  """Returns a one-line error for the first invalid flag that needs no TensorFlow, or None."""
  values = flags.FLAGS
  if not values.generator:
    return "--generator is required: pass a SavedModel folder or a training output folder"
  if not os.path.exists(values.generator):
    return f"--generator={values.generator!r} is invalid: the path does not exist"
  if not values.output_json:
    return "--output_json is required: pass the path of the JSON file to write"
  if os.path.isdir(values.output_json):
    return f"--output_json={values.output_json!r} is invalid: it is a folder, expected a file path"
  output_folder = os.path.dirname(os.path.abspath(values.output_json))
  if not os.path.isdir(output_folder):
    return f"--output_json={values.output_json!r} is invalid: folder {output_folder} does not exist"
  layout_error = _check_generator_layout(values.generator)
  if layout_error:
    return layout_error
  if values.num_samples < config.MIN_EVAL_SAMPLES:
    return (f"--num_samples={values.num_samples} is invalid: expected a whole number >= "
            f"{config.MIN_EVAL_SAMPLES}")
  if values.batch_size < 1:
    return f"--batch_size={values.batch_size} is invalid: expected a whole number >= 1"
  if values.seed < 0:
    return f"--seed={values.seed} is invalid: expected a whole number >= 0"
  if values.data_dir is not None and os.path.exists(values.data_dir) and not os.path.isdir(
      values.data_dir):
    return f"--data_dir={values.data_dir!r} is invalid: it is a file, expected a folder"
  try:
    validation.check_mnist_split(values.reference_split, name="--reference_split")
  except ValueError as error:
    return str(error)
  return None


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}; every setting is a --flag")
  error = _check_flags()
  if error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  values = flags.FLAGS
  # Imported after the checks above, so those errors come before TensorFlow's
  # start-up messages.
  from gan_lib import io_utils  # pylint: disable=g-import-not-at-top
  from metrics import evaluator  # pylint: disable=g-import-not-at-top

  try:
    generator, noise_dim = evaluator.load_generator_from_path(values.generator)
  except evaluator.InvalidGeneratorError as invalid:
    print(f"error: --generator={values.generator!r} is invalid: {invalid}", file=sys.stderr)
    sys.exit(2)

  metric_evaluator = evaluator.Evaluator(
      reference_split=values.reference_split, data_dir=values.data_dir,
      batch_size=values.batch_size)
  results = metric_evaluator.evaluate_generator(
      generator, values.num_samples, noise_dim=noise_dim, seed=values.seed)
  results = _to_json_value(results)
  results["generator"] = os.path.abspath(values.generator)
  results["reference_split"] = values.reference_split
  results["seed"] = values.seed
  io_utils.atomic_write_text(values.output_json, json.dumps(results, indent=2, sort_keys=True) + "\n")
  logging.info("Wrote %s", values.output_json)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
