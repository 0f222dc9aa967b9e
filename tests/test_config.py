"""Tests of TrainConfig validation: each bad value names its flag."""

import pytest

from gan_lib import config as config_lib

BAD_VALUES = [
    ("epochs", 0, "expected a whole number >= 1"),
    ("epochs", -3, "expected a whole number >= 1"),
    ("batch_size", 0, "expected a whole number >= 1"),
    ("batch_size", -1, "expected a whole number >= 1"),
    ("batch_size", 2.5, "expected a whole number >= 1"),
    ("noise_dim", 0, "expected a whole number >= 1"),
    ("width", 0, "expected a whole number >= 1"),
    ("learning_rate", 0.0, r"expected a number in \(0, 1\)"),
    ("learning_rate", 1.0, r"expected a number in \(0, 1\)"),
    ("learning_rate", -1e-3, r"expected a number in \(0, 1\)"),
    ("learning_rate", float("nan"), r"expected a number in \(0, 1\)"),
    ("beta1", 1.0, r"expected a number in \[0, 1\)"),
    ("beta2", -0.1, r"expected a number in \[0, 1\)"),
    ("checkpoint_every", -1, "expected a whole number >= 0"),
    ("max_steps", 0, "expected a whole number >= 1"),
    ("seed", -1, "expected a whole number >= 0"),
    ("eval_every", -1, "expected a whole number >= 0"),
    ("eval_samples", 9, "expected a whole number >= 10"),
    ("ema_decay", 1.0, r"expected a number in \[0, 1\)"),
    ("precision", "float64", "expected one of auto, float32, mixed_bfloat16"),
    ("jit_compile", "yes", "expected one of auto, true, false"),
    ("on_non_finite", "skip", "expected one of stop, rollback"),
    ("rollback_learning_rate_factor", 1.0, r"expected a number in \(0, 1\)"),
    ("rollback_learning_rate_factor", 0.0, r"expected a number in \(0, 1\)"),
    ("rollback_learning_rate_factor", float("nan"), r"expected a number in \(0, 1\)"),
    ("max_rollbacks", -1, "expected a whole number >= 0"),
    ("max_rollbacks", 1.5, "expected a whole number >= 0"),
]


@pytest.mark.parametrize("name,value,message", BAD_VALUES)
def test_bad_value_names_flag_and_allowed_range(tmp_path, name, value, message):
  config = config_lib.TrainConfig(output_dir=str(tmp_path))
  setattr(config, name, value)
  with pytest.raises(config_lib.ConfigError, match=rf"^--{name}=.* is invalid: {message}"):
    config.validate()


def test_defaults_are_valid(tmp_path):
  config_lib.TrainConfig(output_dir=str(tmp_path / "new")).validate()
  assert (tmp_path / "new").is_dir()


def test_output_dir_that_is_a_file_is_rejected(tmp_path):
  file_path = tmp_path / "file"
  file_path.write_text("")
  with pytest.raises(config_lib.ConfigError, match="it is a file, expected a folder"):
    config_lib.TrainConfig(output_dir=str(file_path)).validate()


def test_output_dir_below_a_file_is_rejected(tmp_path):
  file_path = tmp_path / "file"
  file_path.write_text("")
  with pytest.raises(config_lib.ConfigError, match="the folder is not writable"):
    config_lib.TrainConfig(output_dir=str(file_path / "run")).validate()


def test_unwritable_output_dir_is_rejected():
  # /proc refuses new folders even for root, which ignores permission bits.
  with pytest.raises(config_lib.ConfigError, match="the folder is not writable"):
    config_lib.TrainConfig(output_dir="/proc/gan_lib_run").validate()


def test_missing_mnist_source_is_rejected(tmp_path):
  config = config_lib.TrainConfig(output_dir=str(tmp_path),
                                  mnist_source=str(tmp_path / "absent.npz"))
  with pytest.raises(config_lib.ConfigError, match="no such file or folder"):
    config.validate()


def test_data_dir_that_is_a_file_is_rejected(tmp_path):
  file_path = tmp_path / "file"
  file_path.write_text("")
  config = config_lib.TrainConfig(output_dir=str(tmp_path / "run"), data_dir=str(file_path))
  with pytest.raises(config_lib.ConfigError, match="--data_dir=.* it is a file, expected a folder"):
    config.validate()


def test_non_finite_defaults(tmp_path):
  config = config_lib.TrainConfig(output_dir=str(tmp_path))
  assert config.on_non_finite == "stop"
  assert config.rollback_learning_rate_factor == 0.5
  assert config.max_rollbacks == 3
  config.on_non_finite = "rollback"
  config.max_rollbacks = 0
  config.validate()


def test_epoch_shorter_than_one_batch_is_rejected(tmp_path):
  config = config_lib.TrainConfig(output_dir=str(tmp_path), batch_size=64, examples_per_epoch=63)
  with pytest.raises(config_lib.ConfigError,
                     match="--examples_per_epoch=63 is invalid: expected a whole number >= 64"):
    config.validate()
