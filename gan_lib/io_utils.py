"""Atomic file writes, so a reader never reads a half-written file, even after a crash."""

import json
import os
import shutil
import tempfile


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
    # mkstemp creates the file readable by its owner only. Give it the mode a plain
    # open() would, so other users can still read the outputs.
    os.chmod(temporary_path, 0o666 & ~_current_umask())
    with os.fdopen(file_descriptor, "wb") as temporary_file:
      temporary_file.write(data)
      temporary_file.flush()
      os.fsync(temporary_file.fileno())
    os.replace(temporary_path, path)
  except BaseException:
    if os.path.exists(temporary_path):
      os.remove(temporary_path)
    raise


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
