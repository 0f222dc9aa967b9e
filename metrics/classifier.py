"""A small MNIST classifier whose logits and features the evaluator scores.

The Inception Score needs class probabilities and the Frechet distance, kernel
distance and precision/recall need a feature vector per image. Inception-v3
features do not suit 28x28 digits, so the evaluator uses this CNN, trained on the
MNIST train split by `examples/train_classifier.py`. Its weights ship in
`metrics/weights/`.

Weights file format (version 1): an `.npz` archive, read with
`allow_pickle=False`, that contains
  * "header": uint8 array of UTF-8 JSON with "format_version", "architecture"
    (the constructor arguments of `MnistClassifier`) and "variables" (a map from
    variable name to shape),
  * one float32 array per variable, under the variable's name.
"""

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from gan_lib import io_utils
from gan_lib import layers

WEIGHTS_FORMAT_VERSION = 1
DEFAULT_WEIGHTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                                    "mnist_classifier.npz")
NUM_CLASSES = 10
_HEADER_KEY = "header"
# The first bytes of a zip archive, such as an .npz: a local file header, or
# the end record of an archive without members.
_ZIP_SIGNATURE = b"PK\x03\x04"
_EMPTY_ZIP_SIGNATURE = b"PK\x05\x06"
_NPY_SIGNATURE = b"\x93NUMPY"


class WeightsFileError(ValueError):
    """A classifier weights file is missing, unreadable or does not fit the classifier."""


class MnistClassifier(tf.Module):
    """A CNN that maps MNIST images to 10 class logits and a feature vector.

    Each convolution block is a 3x3 convolution with SAME padding, ReLU and a 2x2
    max pool with SAME padding, so 28x28 becomes 14x14, 7x7, then 4x4. The
    flattened output goes through a dense layer with ReLU, whose output is the
    feature vector, then dropout (in training only) and the 10-way logit layer.
    """

    def __init__(self, conv_channels=(32, 64, 64), hidden_size=128, dropout_rate=0.3, seed=0,
                 name="mnist_classifier"):
        """Creates the variables, initialised from `seed`.

        Args:
          conv_channels: output channels of each convolution block, a sequence of
            ints >= 1.
          hidden_size: size d of the feature vector, an int >= 1.
          dropout_rate: fraction of features dropped in training, in [0, 1).
          seed: integer seed of the initial weights.
          name: module name.
        """
        super().__init__(name=name)
        conv_channels = tuple(int(channels) for channels in conv_channels)
        if not conv_channels or min(conv_channels) < 1:
            raise ValueError(f"conv_channels must be a non-empty sequence of ints >= 1, got {conv_channels}")
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be at least 1, got {hidden_size}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        self.conv_channels = conv_channels
        self.hidden_size = int(hidden_size)
        self.dropout_rate = float(dropout_rate)
        self.seed = int(seed)

        rng = tf.random.Generator.from_seed(self.seed)
        spatial_size = 28
        input_channels = 1
        with self.name_scope:
            self.convs = []
            for index, channels in enumerate(conv_channels):
                self.convs.append(layers.Conv2D(input_channels, channels, 3, 1, rng, name=f"conv{index + 1}"))
                input_channels = channels
                spatial_size = (spatial_size + 1) // 2
            self.flat_size = spatial_size * spatial_size * input_channels
            self.hidden = layers.Dense(self.flat_size, self.hidden_size, rng, name="hidden")
            self.logits = layers.Dense(self.hidden_size, NUM_CLASSES, rng, name="logits")

    @property
    def architecture(self):
        """The constructor arguments that fix every variable's shape, as a JSON-ready dict."""
        return {
            "conv_channels": list(self.conv_channels),
            "hidden_size": self.hidden_size,
            "dropout_rate": self.dropout_rate,
        }

    def named_variables(self):
        """Returns the (name, tf.Variable) pairs that the weights file stores, in a fixed order."""
        named = []
        for index, conv in enumerate(self.convs):
            named.append((f"conv{index + 1}.w", conv.w))
            named.append((f"conv{index + 1}.b", conv.b))
        named.extend([
            ("hidden.w", self.hidden.w),
            ("hidden.b", self.hidden.b),
            ("logits.w", self.logits.w),
            ("logits.b", self.logits.b),
        ])
        return named

    def __call__(self, images, training=False, dropout_seed=None):
        """Classifies images.

        Args:
          images: float32 [N, 28, 28, 1] in [-1, 1], where the MNIST background is -1.
          training: True to apply dropout to the features before the logit layer.
          dropout_seed: int32 or int64 [2] seed of the dropout mask; required when
            training is True.

        Returns:
          (logits float32 [N, 10], features float32 [N, hidden_size] >= 0). The
          features are the dense layer's ReLU output, taken before dropout.
        """
        x = tf.convert_to_tensor(images, tf.float32)
        for conv in self.convs:
            x = tf.nn.relu(conv(x))
            x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="SAME")
        x = tf.reshape(x, [-1, self.flat_size])
        features = tf.nn.relu(self.hidden(x))
        hidden = features
        if training and self.dropout_rate > 0.0:
            if dropout_seed is None:
                raise ValueError("dropout_seed is required when training is True")
            hidden = tf.nn.experimental.stateless_dropout(hidden, self.dropout_rate, seed=dropout_seed)
        return self.logits(hidden), features


class FixedBatchClassifier:
    """Runs a classifier on batches of one fixed size, so results never depend on the batch size.

    The classifier is traced once for [batch_size, 28, 28, 1]. A shorter batch is
    padded with -1 (blank) images whose outputs are dropped. Each image's logits
    and features then depend only on its position inside a fixed-size batch, so
    callers that always fill batches in the same order get bitwise identical
    results.
    """

    def __init__(self, classifier, batch_size=250):
        """Wraps `classifier`.

        Args:
          classifier: an `MnistClassifier` (or any module with its call signature).
          batch_size: images per classifier call, an int >= 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.classifier = classifier
        self.batch_size = int(batch_size)
        self._function = tf.function(
            lambda images: classifier(images, training=False),
            input_signature=[tf.TensorSpec([self.batch_size, 28, 28, 1], tf.float32)])

    def __call__(self, images):
        """Classifies at most `batch_size` images.

        Args:
          images: float32 array [n, 28, 28, 1] in [-1, 1], 1 <= n <= batch_size.

        Returns:
          (logits float32 array [n, 10], features float32 array [n, d]).
        """
        images = np.asarray(images, dtype=np.float32)
        count = images.shape[0]
        if not 1 <= count <= self.batch_size:
            raise ValueError(f"expected 1 to {self.batch_size} images, got {count}")
        if count < self.batch_size:
            padding = np.full((self.batch_size - count, 28, 28, 1), -1.0, dtype=np.float32)
            images = np.concatenate([images, padding])
        logits, features = self._function(tf.constant(images))
        return logits.numpy()[:count], features.numpy()[:count]

    def classify_all(self, images):
        """Classifies any number of images; returns (logits [N, 10], features [N, d]) arrays."""
        images = np.asarray(images, dtype=np.float32)
        logits, features = [], []
        for start in range(0, images.shape[0], self.batch_size):
            batch_logits, batch_features = self(images[start:start + self.batch_size])
            logits.append(batch_logits)
            features.append(batch_features)
        return np.concatenate(logits), np.concatenate(features)


def load_mnist_split(split, data_dir=None):
    """Reads a split of the prepared TFDS `mnist` data set into memory, without downloading.

    Args:
      split: a TFDS split name such as "train" or "test".
      data_dir: the TFDS data dir; None for TFDS's default. Prepare it first with
        `gan_lib.mnist_prep.ensure_mnist`.

    Returns:
      (uint8 images [N, 28, 28, 1] in [0, 255], int64 labels [N] in [0, 9]), in
      the order of the TFDS split.
    """
    images, labels = tfds.as_numpy(tfds.load(
        "mnist", split=split, data_dir=data_dir, download=False, as_supervised=True, batch_size=-1,
        shuffle_files=False))
    return images, labels.astype(np.int64)


def weights_fingerprint(classifier):
    """Computes the sha256 hex digest of a classifier's architecture and variable values.

    Two classifiers get the same fingerprint exactly when they compute the same
    function, so the evaluator keys cached reference statistics on it.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(classifier.architecture, sort_keys=True).encode("utf-8"))
    for name, variable in classifier.named_variables():
        values = np.ascontiguousarray(variable.numpy(), dtype="<f4")
        digest.update(f"{name}:{values.shape}".encode("utf-8"))
        digest.update(values.tobytes())
    return digest.hexdigest()


def file_sha256(path):
    """Returns the sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_classifier_weights(classifier, path):
    """Writes a classifier's weights to `path` in format version 1, atomically.

    The file is written to a temporary file in the same folder and renamed over
    `path`, so a reader never sees a partly written file.

    Args:
      classifier: an `MnistClassifier`.
      path: destination file, conventionally ending in `.npz`. Its folder is
        created if missing.
    """
    named = classifier.named_variables()
    header = {
        "format_version": WEIGHTS_FORMAT_VERSION,
        "architecture": classifier.architecture,
        "variables": {name: list(variable.shape) for name, variable in named},
    }
    arrays = {name: variable.numpy().astype(np.float32) for name, variable in named}
    arrays[_HEADER_KEY] = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    io_utils.atomic_write_bytes(path, buffer.getvalue())


def load_classifier_weights(classifier, path):
    """Assigns the weights stored at `path` to `classifier`'s variables.

    Args:
      classifier: an `MnistClassifier` whose architecture matches the file.
      path: a weights file written by `save_classifier_weights`.

    Raises:
      WeightsFileError: if the file is missing, is not a readable archive, lacks
        the header or a variable, has another format version, was saved for
        another architecture, or contains an array of the wrong shape or dtype. The
        message names the file and the problem. No variable changes in that case.
    """
    header, arrays = _read_weights_file(path)
    if header.get("format_version") != WEIGHTS_FORMAT_VERSION:
        raise WeightsFileError(
            f"classifier weights file {path} has format version {header.get('format_version')!r}, "
            f"but this code reads version {WEIGHTS_FORMAT_VERSION}. Retrain it with "
            "examples/train_classifier.py.")
    if header.get("architecture") != classifier.architecture:
        raise WeightsFileError(
            f"classifier weights file {path} was saved for architecture {header.get('architecture')}, "
            f"but the classifier has architecture {classifier.architecture}.")

    named = classifier.named_variables()
    expected_names = {name for name, _ in named}
    unexpected = sorted(set(arrays) - expected_names)
    if unexpected:
        raise WeightsFileError(f"classifier weights file {path} contains unexpected arrays {unexpected}.")
    for name, variable in named:
        if name not in arrays:
            raise WeightsFileError(f"classifier weights file {path} is missing the array {name!r}.")
        array = arrays[name]
        if array.dtype != np.float32:
            raise WeightsFileError(
                f"classifier weights file {path} has array {name!r} of dtype {array.dtype}, expected float32.")
        if tuple(array.shape) != tuple(variable.shape):
            raise WeightsFileError(
                f"classifier weights file {path} has array {name!r} of shape {list(array.shape)}, "
                f"but the classifier expects {list(variable.shape)}.")
        if not np.all(np.isfinite(array)):
            raise WeightsFileError(f"classifier weights file {path} has NaN or Inf values in array {name!r}.")

    # Every check passed, so assigning cannot stop halfway.
    for name, variable in named:
        variable.assign(arrays[name])


def load_classifier(path=None):
    """Builds the default `MnistClassifier` and loads its weights, with no network access.

    Args:
      path: weights file; None for the file shipped in `metrics/weights/`.

    Returns:
      The `MnistClassifier` with the stored weights.

    Raises:
      WeightsFileError: see `load_classifier_weights`.
    """
    path = DEFAULT_WEIGHTS_PATH if path is None else os.fspath(path)
    classifier = MnistClassifier()
    load_classifier_weights(classifier, path)
    return classifier


def _read_weights_file(path):
    """Returns (header dict, dict of arrays without the header) read from a weights file."""
    if os.path.isdir(path):
        raise WeightsFileError(
            f"classifier weights file {path} is a folder. Pass the path of the .npz file written by "
            "examples/train_classifier.py.")
    if not os.path.isfile(path):
        raise WeightsFileError(
            f"classifier weights file {path} not found. Pass the path of a file written by "
            "examples/train_classifier.py, or reinstall the package to restore the shipped one.")
    try:
        with open(path, "rb") as stream:
            signature = stream.read(len(_NPY_SIGNATURE))
        # Checked first because np.load reads any other file as a pickle, and with
        # allow_pickle=False its error talks about pickled data.
        if not signature:
            raise WeightsFileError(f"classifier weights file {path} is empty.")
        if signature == _NPY_SIGNATURE:
            raise WeightsFileError(
                f"classifier weights file {path} is a single array (.npy), not an .npz archive of weights.")
        if signature[:len(_ZIP_SIGNATURE)] not in (_ZIP_SIGNATURE, _EMPTY_ZIP_SIGNATURE):
            raise WeightsFileError(
                f"classifier weights file {path} is truncated or corrupt: it starts with {signature[:4]!r}, "
                f"not the zip signature {_ZIP_SIGNATURE!r} of an .npz archive. Pass a file written by "
                "examples/train_classifier.py.")
        loaded = np.load(path, allow_pickle=False)
        with loaded as archive:
            arrays = {name: archive[name] for name in archive.files}
    except WeightsFileError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as error:
        raise WeightsFileError(
            f"classifier weights file {path} is truncated or corrupt and could not be read: "
            f"{type(error).__name__}: {error}") from error
    if _HEADER_KEY not in arrays:
        raise WeightsFileError(f"classifier weights file {path} has no {_HEADER_KEY!r} entry, so it is not "
                               "a classifier weights file.")
    header_bytes = arrays.pop(_HEADER_KEY)
    try:
        header = json.loads(header_bytes.astype(np.uint8).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsFileError(f"classifier weights file {path} has an invalid header: {error}") from error
    if not isinstance(header, dict):
        raise WeightsFileError(f"classifier weights file {path} has a header that is not a JSON object.")
    return header, arrays
