"""Per-epoch evaluation of the generators during training, and its plot."""

import io

from absl import logging
import numpy as np

from gan_lib import io_utils

# Scalar results of `metrics.evaluator.Evaluator` copied into each epoch's row.
_SCALAR_KEYS = ("inception_score", "inception_score_std", "frechet_distance",
                "kernel_distance", "kernel_distance_std", "precision", "recall")


def flatten_results(results, prefix=""):
  """Returns the scalar metrics of an evaluator result as a flat dict of floats.

  Args:
    results: the dict returned by `Evaluator.evaluate_generator`.
    prefix: prepended to every key, e.g. "ema_" for the averaged generator.

  Returns:
    {prefix + name: float} for the scores, plus `classes_present` and
    `class_kl_from_uniform` from the class-coverage report.
  """
  row = {prefix + key: float(results[key]) for key in _SCALAR_KEYS}
  coverage = results["class_coverage"]
  row[prefix + "classes_present"] = float(coverage["num_classes_present"])
  row[prefix + "class_kl_from_uniform"] = float(coverage["kl_from_uniform"])
  return row


def evaluate_model(evaluator, model, num_samples, seed, strategy=None):
  """Scores the raw generator and, if the model keeps one, the averaged generator.

  Args:
    evaluator: a `metrics.evaluator.Evaluator`.
    model: a `gan_lib.train_step.GanModel`.
    num_samples: generated images per generator.
    seed: noise seed; the same noise is used for both generators.
    strategy: the `tf.distribute.Strategy` the model was built under, or None.
      With several replicas, each replica generates and classifies its share of
      the images (see `Evaluator.evaluate_generator`), and in a multi-worker run
      every worker must call this. With one replica, or None, the evaluator is
      called without a strategy argument, so evaluators that lack the argument
      still work there.

  Returns:
    A flat dict of floats: the raw generator's metrics (see `flatten_results`),
    and the averaged generator's with the prefix "ema_".
  """
  options = {}
  if strategy is not None and strategy.num_replicas_in_sync > 1:
    options["strategy"] = strategy
  row = flatten_results(evaluator.evaluate_generator(
      model.generator, num_samples, model.noise_dim, seed=seed, **options))
  if model.ema_generator is not None:
    row.update(flatten_results(
        evaluator.evaluate_generator(model.ema_generator, num_samples, model.noise_dim,
                                     seed=seed, **options),
        prefix="ema_"))
  return row


def write_metrics_plot(rows, path):
  """Plots Frechet distance and Inception Score over epochs as a PNG, atomically.

  Args:
    rows: the per-epoch JSON Lines rows; rows without metrics are skipped.
    path: output PNG path.

  Returns:
    True if a plot was written, False if no row had metrics.
  """
  evaluated = [row for row in rows if "frechet_distance" in row]
  if not evaluated:
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top

  epochs = np.array([row["epoch"] for row in evaluated])
  figure, (fd_axis, is_axis) = pyplot.subplots(1, 2, figsize=(10, 4))
  for prefix, label in (("", "generator"), ("ema_", "averaged generator")):
    if prefix + "frechet_distance" not in evaluated[-1]:
      continue
    fd_axis.plot(epochs, [row.get(prefix + "frechet_distance", np.nan) for row in evaluated],
                 marker="o", label=label)
    is_axis.plot(epochs, [row.get(prefix + "inception_score", np.nan) for row in evaluated],
                 marker="o", label=label)
  fd_axis.set(xlabel="epoch", ylabel="Frechet distance (lower is better)", yscale="log")
  is_axis.set(xlabel="epoch", ylabel="Inception Score (max 10)")
  fd_axis.legend()
  is_axis.legend()
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=100)
  pyplot.close(figure)
  io_utils.atomic_write_bytes(path, buffer.getvalue())
  logging.info("Wrote the metrics plot %s", path)
  return True
