"""Tests of atomic writes: no half-written file ever replaces a good one."""

import errno
import os

import pytest

from gan_lib import io_utils

def test_atomic_write_replaces_content(tmp_path):
  path = tmp_path / "file.txt"
  io_utils.atomic_write_text(str(path), "old")
  io_utils.atomic_write_text(str(path), "new")
  assert path.read_text() == "new"
  assert os.listdir(tmp_path) == ["file.txt"]

def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
  path = tmp_path / "file.txt"
  io_utils.atomic_write_text(str(path), "good")

  def failing_fsync(_):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "fsync", failing_fsync)
  with pytest.raises(OSError, match="No space left"):
    io_utils.atomic_write_text(str(path), "partial")
  assert path.read_text() == "good"
  assert os.listdir(tmp_path) == ["file.txt"]

def test_json_lines_round_trip(tmp_path):
  path = str(tmp_path / "rows.jsonl")
  assert io_utils.read_json_lines(path) == []
  rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]
  io_utils.write_json_lines(path, rows)
  assert io_utils.read_json_lines(path) == rows

def test_replace_directory_swaps_whole_folders(tmp_path):
  target = tmp_path / "model"
  target.mkdir()
  (target / "old.txt").write_text("old")
  new = tmp_path / "model.tmp"
  new.mkdir()
  (new / "new.txt").write_text("new")
  io_utils.replace_directory(str(new), str(target))
  assert sorted(os.listdir(target)) == ["new.txt"]
  assert sorted(os.listdir(tmp_path)) == ["model"]

def test_remove_temporary_files_keeps_real_files(tmp_path):
  (tmp_path / ".metrics.jsonl.abc.tmp").write_text("partial")
  (tmp_path / "metrics.jsonl").write_text("{}\n")
  io_utils.remove_temporary_files(str(tmp_path))
  assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_atomic_write_uses_umask_mode(tmp_path):
  previous = os.umask(0o022)
  try:
    path = tmp_path / "file.txt"
    io_utils.atomic_write_text(str(path), "text")
  finally:
    os.umask(previous)
  assert (path.stat().st_mode & 0o777) == 0o644


def test_write_error_message_names_fix():
  error = io_utils.OutputWriteError("the sample PNG", "/run/samples/epoch_0002.png",
                                    OSError(errno.ENOSPC, "No space left on device"),
                                    "Run the same command again")
  assert str(error) == ("cannot write the sample PNG /run/samples/epoch_0002.png: No space "
                        "left on device (ENOSPC); free space on that disk. Run the same "
                        "command again")
  assert isinstance(error, OSError)
  assert error.errno == errno.ENOSPC
  assert error.filename == "/run/samples/epoch_0002.png"


def test_write_error_reads_reason_text():
  # TensorFlow's file errors carry no errno, only the reason in the text.
  tensorflow_like = RuntimeError("Failed to write ckpt-8_temp/part-00000: File too large")
  error = io_utils.OutputWriteError("the checkpoint", "/run/checkpoints/ckpt-8", tensorflow_like)
  assert error.errno == errno.EFBIG
  assert "File too large (EFBIG); raise the file size limit (ulimit -f)" in str(error)


def test_write_error_unknown_reason():
  error = io_utils.OutputWriteError("the checkpoint", "/run/ckpt-8",
                                    RuntimeError("disk went away\nmore detail"))
  assert error.errno is None
  assert str(error) == ("cannot write the checkpoint /run/ckpt-8: disk went away; check that "
                        "the folder is writable and has free space")


def test_reporting_wraps_only_os_errors(tmp_path):
  path = str(tmp_path / "file.txt")
  with pytest.raises(io_utils.OutputWriteError, match="Read-only file system") as raised:
    with io_utils.reporting_write_errors("the log", path):
      raise OSError(errno.EROFS, "Read-only file system")
  assert isinstance(raised.value.__cause__, OSError)
  with pytest.raises(ValueError):
    with io_utils.reporting_write_errors("the log", path):
      raise ValueError("not a write error")


def test_failed_new_file_leaves_nothing(tmp_path, monkeypatch):
  def failing_write(*args, **kwargs):
    raise OSError(errno.EFBIG, "File too large")

  monkeypatch.setattr(os, "fsync", failing_write)
  with pytest.raises(OSError, match="File too large"):
    io_utils.atomic_write_bytes(str(tmp_path / "new.png"), b"\x89PNG")
  assert os.listdir(tmp_path) == []
