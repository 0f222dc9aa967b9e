"""`tf.distribute` strategies for training, and what each worker may write.

Three strategies are supported:

- "default": TensorFlow's default strategy, one device.
- "mirrored": `MirroredStrategy` over the local GPUs, or over the logical CPU
  devices when there is no GPU.
- "multi_worker": `MultiWorkerMirroredStrategy`; the `TF_CONFIG` environment
  variable names the cluster and this process's task. It must be created before
  TensorFlow runs its first op in the process.

In a multi-worker run the chief alone writes the output folder. Saving a
checkpoint or a SavedModel may run collective operations, so the other workers
save too, into a scratch folder that is deleted afterwards.
"""

import contextlib
import json
import os
import shutil
import tempfile

from absl import logging
import numpy as np
import tensorflow as tf

from gan_lib.config import STRATEGY_CHOICES


def make_strategy(name):
  """Creates the strategy `name`, one of `STRATEGY_CHOICES`.

  Raises:
    ValueError: on an unknown name or a `TF_CONFIG` that is not valid JSON.
    RuntimeError: "multi_worker" was requested after TensorFlow had run an op.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    devices = [device.name for device in tf.config.list_logical_devices("GPU")]
    if not devices:
      devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  if name == "multi_worker":
    return _make_multi_worker_strategy()
  raise ValueError(f"strategy must be one of {STRATEGY_CHOICES}, got {name!r}")


def _make_multi_worker_strategy():
  tf_config = os.environ.get("TF_CONFIG")
  if not tf_config:
    logging.warning("TF_CONFIG is not set, so the multi_worker strategy trains on this "
                    "process alone")
  else:
    try:
      json.loads(tf_config)
    except json.JSONDecodeError as error:
      raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {tf_config!r}") from None
  try:
    return tf.distribute.MultiWorkerMirroredStrategy()
  except RuntimeError as error:
    if "program startup" not in str(error):
      raise
    raise RuntimeError(
        "the multi_worker strategy must be created before TensorFlow runs any op in this "
        "process: call gan_lib.distribute.make_strategy('multi_worker') first and pass the "
        "strategy to training.train(strategy=...)") from error


def is_multi_worker(strategy):
  """Returns whether `strategy` spans more than one process."""
  resolver = strategy.cluster_resolver
  if resolver is None or resolver.task_type is None:
    return False
  cluster = resolver.cluster_spec().as_dict()
  return sum(len(cluster.get(job, ())) for job in ("chief", "worker")) > 1


def is_chief(strategy):
  """Returns whether this process writes the run's outputs.

  The chief is the "chief" task, or worker 0 when the cluster has no "chief"
  task. Single-process strategies are always the chief.
  """
  resolver = strategy.cluster_resolver
  if resolver is None or resolver.task_type is None:
    return True
  if resolver.task_type == "chief":
    return True
  cluster = resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def task_name(strategy):
  """Returns "type:index" of this process's task, or "local" outside a cluster."""
  resolver = strategy.cluster_resolver
  if resolver is None or resolver.task_type is None:
    return "local"
  return f"{resolver.task_type}:{resolver.task_id}"


@contextlib.contextmanager
def worker_scratch_dir(strategy):
  """Yields a private temporary folder on non-chief workers and None on the chief.

  Non-chief workers write their checkpoint and SavedModel copies there. The
  folder is in the system temporary folder, not in the output folder, and it is
  deleted on exit, also when training raises.
  """
  if is_chief(strategy):
    yield None
    return
  name = task_name(strategy).replace(":", "")
  folder = tempfile.mkdtemp(prefix=f"gan_lib_{name}_")
  try:
    yield folder
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def distribute_batches(strategy, make_dataset, global_batch_size):
  """Splits a dataset of global batches between the replicas of `strategy`.

  Replica r (its `replica_id_in_sync_group`) gets rows
  [r * B / R, (r + 1) * B / R) of every global batch of size B, where R is the
  number of replicas, so each replica gets its contiguous slice of the batch a
  single device would get. Every worker builds the full dataset, which must give
  the same batches in the same order on every worker, and keeps its replicas'
  rows.

  Args:
    strategy: a `tf.distribute.Strategy`.
    make_dataset: a function returning a dataset of [global_batch_size, ...]
      batches.
    global_batch_size: rows per batch; a multiple of the number of replicas.

  Returns:
    `make_dataset()` unchanged with one replica, else a distributed dataset of
    per-replica batches [global_batch_size / R, ...].
  """
  num_replicas = strategy.num_replicas_in_sync
  if num_replicas == 1:
    return make_dataset()
  if global_batch_size % num_replicas:
    raise ValueError(f"global batch size {global_batch_size} is not a multiple of the "
                     f"{num_replicas} replicas")
  per_replica = global_batch_size // num_replicas

  def dataset_fn(input_context):
    local_replicas = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    start = input_context.input_pipeline_id * local_replicas * per_replica

    def split_rows(batch):
      rows = batch[start:start + local_replicas * per_replica]
      return tf.reshape(rows, [local_replicas, per_replica] + batch.shape[1:].as_list())

    # Each worker's iterator hands its elements to the local replicas in turn,
    # so the k-th slice goes to local replica k.
    return make_dataset().map(split_rows).unbatch()

  return strategy.distribute_datasets_from_function(dataset_fn)


def local_replica_ids(strategy):
  """Returns the ids (`replica_id_in_sync_group`) of this process's replicas.

  They are in the order of `strategy.experimental_local_results`. The replicas
  of other workers are left out.
  """
  ids = strategy.experimental_distribute_values_from_function(
      lambda context: tf.constant(context.replica_id_in_sync_group))
  return [int(value) for value in strategy.experimental_local_results(ids)]


def _gather_scalar(strategy, value):
  """Returns float64 [num_replicas]: `value` as each replica's process passed it."""

  @tf.function
  def gather(local_value):
    def replica_fn():
      context = tf.distribute.get_replica_context()
      return context.all_gather(tf.reshape(local_value, [1]), axis=0)

    return strategy.experimental_local_results(strategy.run(replica_fn))[0]

  return gather(tf.constant(value, tf.float64)).numpy()


def broadcast_from_chief(strategy, value):
  """Returns the chief's `value`, a float, on every worker.

  Every worker must call this at the same point, because it runs a collective
  operation in a multi-worker run. Non-chief workers may pass any float. In a
  single-process run it returns `value`.
  """
  if not is_multi_worker(strategy):
    return value
  # Replica 0 is on the chief, because the chief is task 0 of the cluster.
  return float(_gather_scalar(strategy, value)[0])


def check_workers_agree(strategy, value, name):
  """Raises RuntimeError on every worker unless all workers pass the same `value`.

  It runs a collective operation in a multi-worker run, so a disagreement stops
  every worker instead of leaving some waiting. In a single-process run it does
  nothing.
  """
  if not is_multi_worker(strategy):
    return
  values = _gather_scalar(strategy, value)
  if not np.all(values == values[0]):
    raise RuntimeError(
        f"workers disagree on {name}: {values.tolist()} (one value per replica); every "
        "worker must see the same output folder, for example on a shared file system")
