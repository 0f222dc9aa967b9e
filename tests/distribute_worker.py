"""Runs of the train step and the training loop under a strategy, for test_distribute.py.

TensorFlow fixes its devices and collective settings at the first op, so each
run needs a fresh process:

  python tests/distribute_worker.py mirrored OUTPUT_DIR
      Two logical CPUs under MirroredStrategy: how batches are split, 5 steps
      against 5 steps on one device, and training with a resume.
  TF_CONFIG=... python tests/distribute_worker.py multi_worker OUTPUT_DIR RESULT_NPZ
      One worker of a MultiWorkerMirroredStrategy cluster: how batches are
      split, then training for one epoch and resuming for a second.

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

  def evaluate_generator(self, generator, num_samples, noise_dim=None, seed=0):
    del generator, noise_dim, seed
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


def main(argv):
  if argv[1] == "mirrored":
    run_mirrored(argv[2])
  elif argv[1] == "multi_worker":
    run_multi_worker(argv[2], argv[3])
  else:
    sys.exit(f"unknown mode {argv[1]!r}: expected mirrored or multi_worker")


if __name__ == "__main__":
  main(sys.argv)
