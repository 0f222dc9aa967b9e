"""tf.data input pipelines for MNIST from tensorflow-datasets."""

import tensorflow as tf
import tensorflow_datasets as tfds


def load_mnist_images(split, data_dir=None):
  """Loads one split of the prepared TFDS `mnist` data set, without downloading.

  Args:
    split: a TFDS split name such as "train" or "test".
    data_dir: the TFDS data dir; None for TFDS's default. Prepare it first with
      `gan_lib.mnist_prep.ensure_mnist`.

  Returns:
    (dataset of uint8 images [28, 28, 1], number of examples in the split).
  """
  builder = tfds.builder("mnist", data_dir=data_dir)
  num_examples = builder.info.splits[split].num_examples
  dataset = builder.as_dataset(split=split, shuffle_files=False)
  return dataset.map(lambda example: example["image"], num_parallel_calls=tf.data.AUTOTUNE), num_examples


def to_model_range(images):
  """Converts uint8 images in [0, 255] to float32 in [-1, 1]."""
  return tf.cast(images, tf.float32) / 127.5 - 1.0


class EpochPipeline:
  """Batches of training images, shuffled anew each epoch from (seed, epoch).

  Each epoch's order depends only on the seed and the epoch number. A run that
  resumes in the middle of an epoch skips the batches it already used and gets
  exactly the batches an uninterrupted run would get.
  """

  def __init__(self, images, num_examples, batch_size, seed):
    """Wraps a dataset of uint8 images [28, 28, 1].

    Args:
      images: `tf.data.Dataset` of uint8 images [28, 28, 1].
      num_examples: number of images in `images`.
      batch_size: images per batch; the last partial batch of an epoch is dropped.
      seed: integer shuffle seed.
    """
    if batch_size < 1:
      raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if num_examples < batch_size:
      raise ValueError(
          f"batch_size {batch_size} is larger than the data set ({num_examples} images)")
    # The uint8 images of the whole MNIST train split take 47 MB, so caching them in
    # memory is cheap and the shuffle buffer can hold all of them.
    self._images = images.cache()
    self.num_examples = num_examples
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = num_examples // batch_size

  @classmethod
  def from_tfds(cls, batch_size, seed, split="train", data_dir=None):
    """Builds the pipeline over a split of the prepared TFDS `mnist` data set."""
    images, num_examples = load_mnist_images(split, data_dir)
    return cls(images, num_examples, batch_size, seed)

  @classmethod
  def from_array(cls, images, batch_size, seed):
    """Builds the pipeline over uint8 images [N, 28, 28, 1] held in memory."""
    return cls(tf.data.Dataset.from_tensor_slices(images), len(images), batch_size, seed)

  def steps_for(self, examples_per_epoch=None):
    """Returns the batches in an epoch of `examples_per_epoch` images (None: all of them)."""
    if examples_per_epoch is None:
      return self.steps_per_epoch
    return min(self.steps_per_epoch, examples_per_epoch // self.batch_size)

  def epoch(self, epoch, skip_batches=0, num_batches=None):
    """Returns the dataset of one epoch's float32 batches [batch_size, 28, 28, 1] in [-1, 1].

    Args:
      epoch: zero-based epoch number; it selects the shuffle order.
      skip_batches: number of batches of this epoch already consumed.
      num_batches: batches in the epoch, counting the skipped ones; None for
        all. A shorter epoch is the start of the full epoch's order.
    """
    epoch_seed = (self.seed * 1_000_003 + epoch) % (2**31 - 1)
    dataset = self._images.shuffle(
        self.num_examples, seed=epoch_seed, reshuffle_each_iteration=False)
    dataset = dataset.batch(self.batch_size, drop_remainder=True)
    if num_batches is not None:
      dataset = dataset.take(num_batches)
    if skip_batches:
      dataset = dataset.skip(skip_batches)
    dataset = dataset.map(to_model_range, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
