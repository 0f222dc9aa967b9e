"""Prepares TFDS mnist from a local copy, for test_fault_injection_prep_sweep.py to kill.

  python tests/fault_prep_worker.py SOURCE DATA_DIR

The script calls `mnist_prep.prepare_mnist(SOURCE, DATA_DIR, expected=None)`.
It prints a line before each step that the test kills at, and sleeps briefly
after it so that a kill lands inside the step:
  * "Writing record N to PATH" before each TFRecord that TFDS writes,
  * "Renaming SOURCE to TARGET" before and "Renamed SOURCE to TARGET" after
    each os.rename and os.replace, which covers TFDS's shard and folder renames
    and the final rename into DATA_DIR/mnist/3.0.1,
  * "Removing PATH" before each shutil.rmtree, which covers the removal of the
    staging folder.
The sleeps make a preparation slower, never different.
"""

import os
import shutil
import sys
import time

RECORD_SLEEP_SECONDS = 0.01
STEP_SLEEP_SECONDS = 0.05


def _print(message):
  print(message, file=sys.stderr, flush=True)


def _wrap_rename(rename):
  def wrapper(source, target, *args, **kwargs):
    _print(f"Renaming {os.fspath(source)} to {os.fspath(target)}")
    time.sleep(STEP_SLEEP_SECONDS)
    result = rename(source, target, *args, **kwargs)
    _print(f"Renamed {os.fspath(source)} to {os.fspath(target)}")
    time.sleep(STEP_SLEEP_SECONDS)
    return result
  return wrapper


def _wrap_rmtree(rmtree):
  def wrapper(path, *args, **kwargs):
    _print(f"Removing {os.fspath(path)}")
    time.sleep(STEP_SLEEP_SECONDS)
    return rmtree(path, *args, **kwargs)
  return wrapper


def _instrument():
  """Installs the printing and sleeping wrappers described in the module docstring."""
  from tensorflow_datasets.core import file_adapters  # pylint: disable=g-import-not-at-top
  os.rename = _wrap_rename(os.rename)
  os.replace = _wrap_rename(os.replace)
  shutil.rmtree = _wrap_rmtree(shutil.rmtree)

  adapter = file_adapters.TfRecordFileAdapter
  write_examples = adapter.write_examples.__func__

  def slow_write_examples(cls, path, iterator):
    def records():
      for number, record in enumerate(iterator, start=1):
        _print(f"Writing record {number} to {os.fspath(path)}")
        time.sleep(RECORD_SLEEP_SECONDS)
        yield record
    return write_examples(cls, path, records())

  adapter.write_examples = classmethod(slow_write_examples)


def main(argv):
  if len(argv) != 3:
    sys.exit("usage: fault_prep_worker.py SOURCE DATA_DIR")
  from absl import logging  # pylint: disable=g-import-not-at-top
  from gan_lib import mnist_prep  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  _instrument()
  version_dir = mnist_prep.prepare_mnist(argv[1], argv[2], expected=None)
  _print(f"Preparation finished: {version_dir}")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  main(sys.argv)
