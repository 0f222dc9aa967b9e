"""Trains the evaluation classifier on the MNIST train split and writes its weights.

The evaluator's Inception Score, Frechet distance, kernel distance and
precision/recall all use this classifier's logits and features. The default
--output replaces the weights shipped in metrics/weights/.

  python examples/train_classifier.py --epochs=12
"""

import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # Hide TensorFlow's C++ info lines.

from absl import app
from absl import flags
from absl import logging
import numpy as np

import metrics

# TensorFlow and the modules that import it are imported inside the functions,
# after the flags are checked, so a bad flag gets its one-line error in about a
# second instead of after TensorFlow's start-up.

# The same path as metrics.classifier.DEFAULT_WEIGHTS_PATH, which needs the
# TensorFlow import. `import metrics` imports no TensorFlow.
_DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(metrics.__file__)), "weights",
                               "mnist_classifier.npz")
_TRAIN_SPLIT_SIZE = 60_000

flags.DEFINE_string("output", _DEFAULT_OUTPUT, "Path of the weights file to write (.npz).")
flags.DEFINE_integer("epochs", 12, "Passes over the 60,000-image train split.")
flags.DEFINE_integer("batch_size", 128, "Images per train step, at most 60,000.")
flags.DEFINE_float("learning_rate", 1e-3, "Initial Adam step size, in (0, 1); it decays to 0 on a "
                   "cosine schedule over the run.")
flags.DEFINE_integer("max_shift", 2, "Maximum random shift of each training image, in pixels, "
                     "along each axis.")
flags.DEFINE_integer("seed", 0, "Seed of the initial weights, shuffle order, shifts and dropout, "
                     "a whole number >= 0.")
flags.DEFINE_string("data_dir", None, "TFDS data dir holding (or to receive) the prepared mnist "
                    "data set; default: TFDS's own.")


def random_shift(images, max_shift, rng):
  """Shifts each image by its own random offset in [-max_shift, max_shift] pixels per axis.

  Pixels shifted in from outside are background (-1).

  Args:
    images: float32 [B, 28, 28, 1] in [-1, 1].
    max_shift: maximum shift in pixels, an int >= 0.
    rng: `tf.random.Generator` that draws the offsets.

  Returns:
    float32 [B, 28, 28, 1].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if max_shift == 0:
    return images
  batch_size = tf.shape(images)[0]
  size = images.shape[1]
  padded = tf.pad(images, [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]],
                  constant_values=-1.0)
  offsets = rng.uniform([batch_size, 2], minval=0, maxval=2 * max_shift + 1, dtype=tf.int32)
  positions = tf.range(size)[tf.newaxis, :]
  rows = offsets[:, :1] + positions
  columns = offsets[:, 1:] + positions
  shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
  return tf.gather(shifted, columns, axis=2, batch_dims=1)


def make_train_step(classifier, optimizer, rng, max_shift):
  """Builds the compiled step: shift, forward, cross-entropy, backward, Adam update."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.function
  def train_step(uint8_images, labels, learning_rate):
    images = tf.cast(uint8_images, tf.float32) / 127.5 - 1.0
    images = random_shift(images, max_shift, rng)
    optimizer.learning_rate.assign(learning_rate)
    with tf.GradientTape() as tape:
      logits, _ = classifier(images, training=True, dropout_seed=rng.make_seeds(1)[:, 0])
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    gradients = tape.gradient(loss, classifier.trainable_variables)
    optimizer.apply(gradients)
    return loss

  return train_step


def accuracy(batch_classifier, uint8_images, labels):
  """Returns the fraction of images whose largest logit is the label."""
  images = uint8_images.astype(np.float32) / 127.5 - 1.0
  logits, _ = batch_classifier.classify_all(images)
  return float(np.mean(np.argmax(logits, axis=1) == labels))


def _check_flags():
  """Returns a one-line error for the first invalid flag, or None."""
  values = flags.FLAGS
  if values.epochs < 1:
    return f"--epochs={values.epochs} is invalid: expected a whole number >= 1"
  if not 1 <= values.batch_size <= _TRAIN_SPLIT_SIZE:
    # A batch larger than the train split would leave no train step, and the
    # untrained weights would replace the output file.
    return (f"--batch_size={values.batch_size} is invalid: expected a whole number in "
            f"[1, {_TRAIN_SPLIT_SIZE}], the size of the train split")
  if not 0.0 < values.learning_rate < 1.0:
    return f"--learning_rate={values.learning_rate} is invalid: expected a number in (0, 1)"
  if not 0 <= values.max_shift <= 8:
    return f"--max_shift={values.max_shift} is invalid: expected a whole number in [0, 8]"
  if values.seed < 0:
    return f"--seed={values.seed} is invalid: expected a whole number >= 0"
  if not values.output:
    return "--output is missing: expected the path of the .npz file to write"
  if os.path.isdir(values.output):
    return f"--output={values.output!r} is invalid: it is a folder, expected a file path"
  if values.data_dir is not None and os.path.exists(values.data_dir) and not os.path.isdir(
      values.data_dir):
    return f"--data_dir={values.data_dir!r} is invalid: it is a file, expected a folder"
  return None


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}; every setting is a --flag")
  error = _check_flags()
  if error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  values = flags.FLAGS
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from gan_lib import mnist_prep  # pylint: disable=g-import-not-at-top
  from gan_lib import optimizers  # pylint: disable=g-import-not-at-top
  from metrics import classifier as classifier_lib  # pylint: disable=g-import-not-at-top

  mnist_prep.ensure_mnist(values.data_dir)
  train_images, train_labels = classifier_lib.load_mnist_split("train", values.data_dir)
  test_images, test_labels = classifier_lib.load_mnist_split("test", values.data_dir)
  logging.info("Loaded %d train and %d test images", len(train_images), len(test_images))

  tf.random.set_seed(values.seed)
  classifier = classifier_lib.MnistClassifier(seed=values.seed)
  optimizer = optimizers.Adam(classifier.trainable_variables, values.learning_rate, beta1=0.9)
  rng = tf.random.Generator.from_seed(values.seed + 1)
  train_step = make_train_step(classifier, optimizer, rng, values.max_shift)
  batch_classifier = classifier_lib.FixedBatchClassifier(classifier)

  steps_per_epoch = len(train_images) // values.batch_size
  total_steps = steps_per_epoch * values.epochs
  shuffle_rng = np.random.default_rng(values.seed)
  step = 0
  start_time = time.time()
  for epoch in range(values.epochs):
    order = shuffle_rng.permutation(len(train_images))
    losses = []
    for batch in range(steps_per_epoch):
      indices = order[batch * values.batch_size:(batch + 1) * values.batch_size]
      # Cosine decay from the initial rate to 0 over all steps.
      learning_rate = 0.5 * values.learning_rate * (1.0 + math.cos(math.pi * step / total_steps))
      loss = train_step(train_images[indices], train_labels[indices],
                        tf.constant(learning_rate, tf.float32))
      losses.append(float(loss))
      step += 1
    test_accuracy = accuracy(batch_classifier, test_images, test_labels)
    logging.info("Epoch %d/%d: mean train loss %.4f, test accuracy %.4f, %.0f s elapsed",
                 epoch + 1, values.epochs, np.mean(losses), test_accuracy,
                 time.time() - start_time)

  train_accuracy = accuracy(batch_classifier, train_images, train_labels)
  test_accuracy = accuracy(batch_classifier, test_images, test_labels)
  classifier_lib.save_classifier_weights(classifier, values.output)
  logging.info("Train accuracy %.4f, test accuracy %.4f; wrote %s (%d bytes, sha256 %s)",
               train_accuracy, test_accuracy, values.output, os.path.getsize(values.output),
               classifier_lib.file_sha256(values.output))


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
