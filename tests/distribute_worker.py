"""Runs of the train step and the training loop under a strategy, for test_distribute.py.

TensorFlow fixes its devices and collective settings at the first op, so each
run needs a fresh process:

  python tests/distribute_worker.py mirrored OUTPUT_DIR
      Two logical CPUs under MirroredStrategy: how batches are split, 5 steps
      against 5 steps on one device, and training with a resume.
  TF_CONFIG=... python tests/distribute_worker.py multi_worker OUTPUT_DIR RESULT_NPZ
      One worker of a MultiWorkerMirroredStrategy cluster: how batches are
      split, then training for one epoch and resuming for a second.
  python tests/distribute_worker.py evaluate_mirrored RESULT_NPZ CACHE_DIR
  TF_CONFIG=... python tests/distribute_worker.py evaluate_multi_worker RESULT_NPZ CACHE_DIR
      Evaluations of generators split over two logical CPUs or two workers,
      and the same evaluations on one device, for test_distributed_evaluation.py.
      CACHE_DIR is the folder of the cached reference statistics.

Results go to .npz files that the test reads.
"""

import os
import sys

import numpy as np
import tensorflow as tf

BATCH = 16
NOISE_DIM = 8
WIDTH = 4


def tiny_images():
  """uint8 images [64, 28, 28, 1], the same as the tests' `tiny_images` fixture."""
  return np.random.default_rng(0).integers(0, 256, size=(64, 28, 28, 1), dtype=np.uint8)


def train_config(output_dir, **overrides):
  from gan_lib import config as config_lib  # pylint: disable=g-import-not-at-top
  settings = dict(output_dir=output_dir, epochs=2, batch_size=BATCH, noise_dim=NOISE_DIM,
                  width=WIDTH, seed=11, checkpoint_every=0, precision="float32",
                  jit_compile="false", eval_every=0)
  settings.update(overrides)
  return config_lib.TrainConfig(**settings)


class ScriptedEvaluator:
  """Returns a preset Frechet distance for each call, without running the generator."""

  def __init__(self, frechet_distances):
    self.frechet_distances = list(frechet_distances)

  def evaluate_generator(self, generator, num_samples, noise_dim=None, seed=0, strategy=None):
    del generator, noise_dim, seed, strategy
    distance = self.frechet_distances.pop(0)
    return dict(inception_score=10.0 - distance, inception_score_std=0.1,
                frechet_distance=distance, kernel_distance=distance / 100,
                kernel_distance_std=0.0, precision=0.5, recall=0.5,
                class_coverage=dict(num_classes_present=10, kl_from_uniform=0.01),
                num_samples=num_samples, seconds=0.1)


def replica_rows(strategy, distribute):
  """Returns int32 [batches, local replicas, rows]: the row numbers each local replica gets."""
  row_numbers = tf.data.Dataset.range(3 * BATCH).map(lambda i: tf.cast(i, tf.int32))
  batches = distribute.distribute_batches(
      strategy, lambda: row_numbers.batch(BATCH), BATCH)
  received = []
  for batch in batches:
    local = strategy.experimental_local_results(strategy.run(tf.identity, args=(batch,)))
    received.append([values.numpy() for values in local])
  return np.array(received)


def variables_by_name(variables, prefix):
  return {f"{prefix}/{index}/{variable.name}": variable.numpy()
          for index, variable in enumerate(variables)}


def run_mirrored(output_dir):
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from gan_lib import config as config_lib  # pylint: disable=g-import-not-at-top
  from gan_lib import data  # pylint: disable=g-import-not-at-top
  from gan_lib import distribute  # pylint: disable=g-import-not-at-top
  from gan_lib import train_step  # pylint: disable=g-import-not-at-top
  from gan_lib import training  # pylint: disable=g-import-not-at-top

  strategy = distribute.make_strategy("mirrored")
  results = dict(num_replicas=strategy.num_replicas_in_sync,
                 replica_rows=replica_rows(strategy, distribute))

  # 5 steps without dropout on one device and on two replicas, same global batches.
  images = np.random.default_rng(1).uniform(-1, 1, size=(5 * BATCH, 28, 28, 1))
  make_dataset = lambda: tf.data.Dataset.from_tensor_slices(images.astype(np.float32)).batch(BATCH)
  single = train_step.GanModel(noise_dim=NOISE_DIM, width=WIDTH, seed=3, dropout_rate=0.0)
  single_step = train_step.make_train_step(single, BATCH)
  single_losses = [float(single_step(batch)["discriminator_loss"]) for batch in make_dataset()]
  with strategy.scope():
    mirrored = train_step.GanModel(noise_dim=NOISE_DIM, width=WIDTH, seed=3, dropout_rate=0.0)
  mirrored_step = train_step.make_train_step(mirrored, BATCH, strategy=strategy)
  mirrored_losses = [
      float(mirrored_step(batch)["discriminator_loss"])
      for batch in distribute.distribute_batches(strategy, make_dataset, BATCH)]
  results.update(variables_by_name(single.variables, "single"))
  results.update(variables_by_name(mirrored.variables, "mirrored"))
  results["single_losses"] = np.array(single_losses)
  results["mirrored_losses"] = np.array(mirrored_losses)
  results["mirrored_step"] = int(mirrored.step.numpy())

  # The training loop on two replicas: settings it rejects, then 6 steps straight
  # against 3, stop, resume, 3.
  def train(folder, **overrides):
    pipeline = data.EpochPipeline.from_array(tiny_images(), BATCH, seed=11)
    return training.train(train_config(os.path.join(output_dir, folder), strategy="mirrored",
                                       **overrides),
                          pipeline=pipeline, strategy=strategy)

  config_errors = []
  for overrides in (dict(batch_size=15), dict(jit_compile="true")):
    try:
      train("rejected", **overrides)
    except config_lib.ConfigError as error:
      config_errors.append(str(error))
  results["config_errors"] = np.array(config_errors)

  straight = train("straight", max_steps=6)
  train("resumed", max_steps=3)
  resumed = train("resumed", max_steps=6)
  results.update(variables_by_name(straight.model.variables, "straight"))
  results.update(variables_by_name(resumed.model.variables, "resumed"))
  results["resumed_step"] = resumed.step
  np.savez(os.path.join(output_dir, "mirrored_results.npz"), **results)


def run_multi_worker(output_dir, result_path):
  # The strategy comes first: it must configure collectives before any other op.
  from gan_lib import distribute  # pylint: disable=g-import-not-at-top
  strategy = distribute.make_strategy("multi_worker")
  from gan_lib import data  # pylint: disable=g-import-not-at-top
  from gan_lib import training  # pylint: disable=g-import-not-at-top

  results = dict(replica_rows=replica_rows(strategy, distribute),
                 chief=distribute.is_chief(strategy))
  # One epoch (4 steps), then a second call that resumes from its checkpoint for
  # epoch 2. Each evaluation scores the raw and the averaged generator, on the
  # chief only.
  for epochs, frechet_distances in ((1, [5.0, 3.0]), (2, [4.0, 2.0])):
    pipeline = data.EpochPipeline.from_array(tiny_images(), BATCH, seed=11)
    result = training.train(
        train_config(output_dir, strategy="multi_worker", epochs=epochs, eval_every=1,
                     eval_samples=20),
        pipeline=pipeline, strategy=strategy, evaluator=ScriptedEvaluator(frechet_distances))
    results[f"step_{epochs}"] = result.step
    results.update(variables_by_name(result.model.variables, f"epochs{epochs}"))
  np.savez(result_path, **results)


# Evaluation under a strategy.

EVALUATION_SCALARS = ("inception_score", "inception_score_std", "frechet_distance",
                      "kernel_distance", "kernel_distance_std", "precision", "recall",
                      "num_samples")
# (evaluator batch size, images). 500 gives blocks of two classifier batches,
# and 1130 images end in a step where the first replica gets 130 rows and the
# second none. 100 is no multiple of the classifier batch, so the blocks (250)
# are larger than the one-device generator batches.
EVALUATION_CASES = ((500, 1130), (100, 620))


def make_evaluator(cache_dir, batch_size):
  from metrics import evaluator as evaluator_lib  # pylint: disable=g-import-not-at-top
  # The first 1,000 test images and 10 kernel distance subsets keep each evaluation short.
  return evaluator_lib.Evaluator(reference_split="test[:1000]", cache_dir=cache_dir,
                                 batch_size=batch_size, max_kernel_samples=500,
                                 kernel_num_subsets=10)


def evaluation_arrays(results, prefix):
  """Returns {prefix/key: value} of an evaluator result's scalars and class counts."""
  arrays = {f"{prefix}/{key}": results[key] for key in EVALUATION_SCALARS}
  arrays[f"{prefix}/class_counts"] = results["class_coverage"]["counts"]
  return arrays


def evaluate_model_both_ways(strategy, cache_dir):
  """Returns evaluate_model's rows for a model built under `strategy`, with and without it."""
  from gan_lib import evaluation  # pylint: disable=g-import-not-at-top
  from gan_lib import train_step  # pylint: disable=g-import-not-at-top
  with strategy.scope():
    model = train_step.GanModel(noise_dim=NOISE_DIM, width=WIDTH, seed=3)
  evaluator = make_evaluator(cache_dir, 500)
  split_row = evaluation.evaluate_model(evaluator, model, 300, seed=5, strategy=strategy)
  single_row = evaluation.evaluate_model(evaluator, model, 300, seed=5)
  arrays = {f"model_split/{key}": value for key, value in split_row.items()}
  arrays.update({f"model_single/{key}": value for key, value in single_row.items()})
  return arrays


def invalid_images_error(strategy, cache_dir, generator):
  """Returns the message of the ValueError that evaluating `generator` raises, or ""."""
  try:
    # 1,000 images give each of two replicas a block of 500.
    make_evaluator(cache_dir, 500).evaluate_generator(generator, 1000, noise_dim=2,
                                                       strategy=strategy)
  except ValueError as error:
    return str(error)
  return ""


def images_of_255(noise):
  """A generator that returns pixels of 255, outside the evaluator's range [-1, 1]."""
  return tf.fill([tf.shape(noise)[0], 28, 28, 1], 255.0)


def run_evaluation_mirrored(result_path, cache_dir):
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from gan_lib import distribute  # pylint: disable=g-import-not-at-top
  from tiny_generator import TinyGenerator  # pylint: disable=g-import-not-at-top

  strategy = distribute.make_strategy("mirrored")
  results = dict(num_replicas=strategy.num_replicas_in_sync)
  generator = TinyGenerator()
  for batch_size, num_samples in EVALUATION_CASES:
    evaluator = make_evaluator(cache_dir, batch_size)
    case = f"{batch_size}_{num_samples}"
    results.update(evaluation_arrays(
        evaluator.evaluate_generator(generator, num_samples, seed=4, strategy=strategy),
        f"split/{case}"))
    results.update(evaluation_arrays(
        evaluator.evaluate_generator(generator, num_samples, seed=4), f"single/{case}"))
  results.update(evaluate_model_both_ways(strategy, cache_dir))
  results["invalid_error"] = invalid_images_error(strategy, cache_dir, images_of_255)
  np.savez(result_path, **results)


def run_evaluation_multi_worker(result_path, cache_dir):
  # The strategy comes first, because it must configure collectives before any other op.
  from gan_lib import distribute  # pylint: disable=g-import-not-at-top
  strategy = distribute.make_strategy("multi_worker")
  from tiny_generator import TinyGenerator  # pylint: disable=g-import-not-at-top

  chief = distribute.is_chief(strategy)
  results = dict(chief=chief, replica_ids=distribute.local_replica_ids(strategy))
  generator = TinyGenerator()
  batch_size, num_samples = EVALUATION_CASES[0]
  evaluator = make_evaluator(cache_dir, batch_size)
  results.update(evaluation_arrays(
      evaluator.evaluate_generator(generator, num_samples, seed=4, strategy=strategy), "split"))
  results.update(evaluation_arrays(
      evaluator.evaluate_generator(generator, num_samples, seed=4), "single"))
  # Only the second worker's images are invalid. Both workers must raise
  # instead of the chief waiting for a gather the other never joins.
  valid_generator = lambda noise: tf.zeros([tf.shape(noise)[0], 28, 28, 1]) - 0.5
  results["invalid_error"] = invalid_images_error(
      strategy, cache_dir, valid_generator if chief else images_of_255)
  np.savez(result_path, **results)


def main(argv):
  modes = {
      "mirrored": run_mirrored,
      "multi_worker": run_multi_worker,
      "evaluate_mirrored": run_evaluation_mirrored,
      "evaluate_multi_worker": run_evaluation_multi_worker,
  }
  if argv[1] not in modes:
    sys.exit(f"unknown mode {argv[1]!r}: expected one of {sorted(modes)}")
  modes[argv[1]](*argv[2:])


if __name__ == "__main__":
  main(sys.argv)
