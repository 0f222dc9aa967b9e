"""A tiny hyperparameter search that test_fault_injection_prep_sweep.py kills and restarts.

  python tests/fault_sweep_worker.py OUTPUT_DIR NOISE_DIMS

The search is a grid over the comma-separated noise sizes NOISE_DIMS, such as
4,5,6. Each run resumes the SQLite study in
OUTPUT_DIR/study.db until every planned trial has finished, then writes the
report. A trial trains width-4 networks for one epoch on 16 synthetic images and
is scored by `PixelEvaluator`, so it takes seconds.

The script prints "Storage write: INSERT" (or UPDATE, DELETE) before each SQL
statement that changes the study and "Storage write: COMMIT" before the commit
of such a transaction. The evaluator prints "Evaluated a generator" before
`gan_lib.search` stores the epoch's score. The test kills the process right
after such lines, so that the kill lands in or next to a SQLite transaction.
"""

import os
import sys

import numpy as np

from gan_lib import config as config_lib
from gan_lib import data
from gan_lib import search

IMAGES = np.random.default_rng(0).integers(0, 256, size=(16, 28, 28, 1), dtype=np.uint8)
STORAGE_WRITE_PREFIX = "Storage write:"


class PixelEvaluator:
  """Scores a generator by the mean absolute pixel of 10 generated images, times 100."""

  def evaluate_generator(self, generator, num_samples, noise_dim=None, seed=0):
    noise = np.random.default_rng(seed).standard_normal((num_samples, noise_dim))
    images = generator(noise.astype(np.float32), training=False).numpy()
    distance = float(np.mean(np.abs(images)) * 100.0)
    print(f"Evaluated a generator: Frechet distance {distance:.6f}", file=sys.stderr, flush=True)
    return dict(inception_score=1.0 + 1.0 / distance, inception_score_std=0.1,
                frechet_distance=distance, kernel_distance=distance / 100.0,
                kernel_distance_std=0.0, precision=0.5, recall=0.5,
                class_coverage=dict(num_classes_present=10, kl_from_uniform=0.01),
                num_samples=num_samples, seconds=0.0)


def make_pipeline(batch_size, seed):
  return data.EpochPipeline.from_array(IMAGES, batch_size, seed)


def make_space(noise_dims):
  return search.SearchSpace({"noise_dim": list(noise_dims)})


def make_settings(output_dir):
  """SearchSettings of a grid search whose trials train for one epoch of two batches of 8."""
  train = config_lib.TrainConfig(
      output_dir=str(output_dir), epochs=1, batch_size=8, noise_dim=4, width=4, seed=3,
      checkpoint_every=0, precision="float32", jit_compile="false", eval_every=1,
      eval_samples=10, ema_decay=0.5)
  return search.SearchSettings(output_dir=str(output_dir), train=train, heartbeat_seconds=1.0,
                               grace_seconds=60.0, poll_seconds=0.2)


def run(output_dir, noise_dims):
  """Runs the search in this process and returns its `SearchReport`."""
  return search.run_search(make_settings(output_dir), make_space(noise_dims),
                           pipeline_factory=make_pipeline, evaluator=PixelEvaluator())


def _print_before_writes():
  """Prints a line before each SQL statement that changes the study and before its commit."""
  import sqlalchemy  # pylint: disable=g-import-not-at-top

  def before_statement(connection, cursor, statement, parameters, context, executemany):
    del cursor, parameters, context, executemany
    verb = statement.lstrip().split(None, 1)[0].upper()
    if verb in ("INSERT", "UPDATE", "DELETE"):
      connection.info["wrote"] = True
      print(f"{STORAGE_WRITE_PREFIX} {verb}", file=sys.stderr, flush=True)

  def before_commit(connection):
    if connection.info.pop("wrote", False):
      print(f"{STORAGE_WRITE_PREFIX} COMMIT", file=sys.stderr, flush=True)

  def after_rollback(connection):
    connection.info.pop("wrote", None)

  sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", before_statement)
  sqlalchemy.event.listen(sqlalchemy.engine.Engine, "commit", before_commit)
  sqlalchemy.event.listen(sqlalchemy.engine.Engine, "rollback", after_rollback)


def main(argv):
  if len(argv) != 3:
    sys.exit("usage: fault_sweep_worker.py OUTPUT_DIR NOISE_DIMS")
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  _print_before_writes()
  report = run(argv[1], [int(value) for value in argv[2].split(",")])
  print(f"Search finished: {report.counts}", file=sys.stderr, flush=True)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  main(sys.argv)
