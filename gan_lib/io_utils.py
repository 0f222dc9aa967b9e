"""Atomic file writes, so a reader never reads a half-written file, even after a crash."""

import contextlib
import errno
import json
import os
import shutil
import tempfile

from absl import logging

# Advice for the usual reasons a write fails, keyed by errno.
_ADVICE = {
    errno.ENOSPC: "free space on that disk",
    errno.EDQUOT: "free space or raise the disk quota",
    errno.EFBIG: "raise the file size limit (ulimit -f) or free space on that disk",
    errno.EROFS: "remount the file system read-write or choose another output folder",
    errno.EACCES: "give this user write permission there or choose another output folder",
    errno.EPERM: "give this user write permission there or choose another output folder",
    errno.EIO: "check the disk, it reported an I/O error",
}


class OutputWriteError(OSError):
  """Writing an output file failed.

  The message names the file, its path, the operating system's reason and what
  to do. `errno` is the reason's error number when it is known, else None.
  """

  def __init__(self, description, path, error, next_step=""):
    """Describes `error`, raised while writing `description` (e.g. "the sample PNG") at `path`.

    Args:
      description: what the file is, for the message.
      path: the file or folder being written.
      error: the exception raised: an OSError, or another exception such as a
        `tf.errors.OpError` whose message contains the reason.
      next_step: a sentence appended to the message, such as how to resume.
    """
    reason_number = _error_number(error)
    reason = _reason_text(error, reason_number)
    advice = _ADVICE.get(reason_number, "check that the folder is writable and has free space")
    message = f"cannot write {description} {path}: {reason}; {advice}"
    if next_step:
      message += f". {next_step}"
    super().__init__(message)
    self.errno = reason_number
    self.strerror = os.strerror(reason_number) if reason_number else None
    self.filename = path
    self.description = description
    self._message = message

  def __str__(self):
    # OSError would print "[Errno N] strerror: 'filename'" and drop the advice.
    return self._message


def _error_number(error):
  """Returns the errno of `error`, read from the attribute or matched in the message."""
  number = getattr(error, "errno", None)
  if isinstance(number, int) and number > 0:
    return number
  # TensorFlow's file errors carry the reason only as text, e.g. "... : File too large".
  message = str(error)
  for candidate in _ADVICE:
    if os.strerror(candidate) in message:
      return candidate
  return None


def _reason_text(error, reason_number):
  if reason_number:
    return f"{os.strerror(reason_number)} ({errno.errorcode.get(reason_number, reason_number)})"
  lines = str(error).strip().splitlines()
  return lines[0] if lines else type(error).__name__


@contextlib.contextmanager
def reporting_write_errors(description, path, next_step=""):
  """Turns an OSError raised inside the block into an `OutputWriteError` about `path`."""
  try:
    yield
  except OutputWriteError:
    raise
  except OSError as error:
    raise OutputWriteError(description, path, error, next_step) from error


def atomic_write_bytes(path, data):
  """Writes `data` to `path` through a temporary file in the same folder and a rename.

  The previous file at `path`, if any, stays intact until the new one is complete
  and flushed to disk. On error the temporary file is removed and the error is
  raised.
  """
  folder = os.path.dirname(os.path.abspath(path))
  file_descriptor, temporary_path = tempfile.mkstemp(
      dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(file_descriptor, "wb") as temporary_file:
      # mkstemp creates the file readable by its owner only. Give it the mode a plain
      # open() would, so other users can still read the outputs.
      os.chmod(temporary_path, 0o666 & ~_current_umask())
      temporary_file.write(data)
      temporary_file.flush()
      os.fsync(temporary_file.fileno())
    os.replace(temporary_path, path)
  except BaseException:
    _remove_quietly(temporary_path)
    raise


def _remove_quietly(path):
  """Removes `path` if it exists; a failure to remove must not hide the error being raised."""
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
  except OSError as error:
    logging.warning("Cannot remove the temporary file %s: %s", path, error)


def _current_umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def atomic_write_text(path, text):
  """Writes UTF-8 `text` to `path` atomically (see `atomic_write_bytes`)."""
  atomic_write_bytes(path, text.encode("utf-8"))


def read_json_lines(path):
  """Returns the list of JSON objects in a JSON Lines file, or [] if it does not exist."""
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as lines:
    return [json.loads(line) for line in lines if line.strip()]


def write_json_lines(path, rows):
  """Writes `rows`, one JSON object a line, atomically."""
  atomic_write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def replace_directory(new_directory, target):
  """Moves the complete folder `new_directory` to `target`, replacing any old one.

  The old folder is renamed aside to `target + ".old"` first and deleted only
  after the new one is in place. So at every moment a complete folder exists,
  at `target` or at the aside name, which the next call removes.
  """
  aside = target + ".old"
  if os.path.exists(aside):
    shutil.rmtree(aside)
  if os.path.exists(target):
    os.rename(target, aside)
  os.rename(new_directory, target)
  if os.path.exists(aside):
    shutil.rmtree(aside)


def remove_temporary_files(folder):
  """Deletes leftovers of interrupted atomic writes (hidden `*.tmp` files) in `folder`."""
  if not os.path.isdir(folder):
    return
  for name in os.listdir(folder):
    if name.startswith(".") and name.endswith(".tmp"):
      path = os.path.join(folder, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      else:
        os.remove(path)
