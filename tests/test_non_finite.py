"""Tests of NaN and Inf handling in the training loop: stop, rollback and its limit."""

import json
import logging
import math

import numpy as np
import pytest
import tensorflow as tf

from gan_lib import config as config_lib
from gan_lib import data
from gan_lib import training

BATCH = 16  # 64 tiny images give 4 steps per epoch
LEARNING_RATE = 2e-4


def _config(output_dir, **overrides):
  settings = dict(output_dir=str(output_dir), epochs=1, batch_size=BATCH, noise_dim=8,
                  width=4, seed=11, checkpoint_every=2, precision="float32",
                  jit_compile="false", eval_every=0, learning_rate=LEARNING_RATE)
  settings.update(overrides)
  return config_lib.TrainConfig(**settings)


def _train(pipeline, output_dir, **overrides):
  return training.train(_config(output_dir, **overrides), pipeline=pipeline)


class _NanBatchPipeline:
  """An `EpochPipeline` whose batch for step `nan_step` is all NaN, every time it is read."""

  def __init__(self, images, nan_step):
    self._pipeline = data.EpochPipeline.from_array(images, BATCH, seed=11)
    self.batch_size = BATCH
    self.nan_step = nan_step

  def steps_for(self, examples_per_epoch=None):
    return self._pipeline.steps_for(examples_per_epoch)

  def epoch(self, epoch, skip_batches=0, num_batches=None):
    steps_per_epoch = num_batches or self._pipeline.steps_per_epoch
    # Steps count from 1, so batch i of the epoch is trained by this step.
    first_step = epoch * steps_per_epoch + skip_batches + 1
    dataset = self._pipeline.epoch(epoch, skip_batches, num_batches).enumerate(start=first_step)
    nan_step = self.nan_step

    def poison(step, batch):
      return tf.where(step == nan_step, tf.fill(tf.shape(batch), np.nan), batch)

    return dataset.map(poison)


def _patch_step(monkeypatch, before_step):
  """Wraps every train step made by `training` so that `before_step(model, batch)` runs first.

  `before_step` returns the batch to train on. Returns the list of the model's
  step counter before each call.
  """
  real_make_train_step = training.train_step.make_train_step
  steps_seen = []

  def make_train_step(model, *args, **kwargs):
    step_function = real_make_train_step(model, *args, **kwargs)

    def wrapped(batch):
      steps_seen.append(int(model.step))
      return step_function(before_step(model, batch))

    return wrapped

  monkeypatch.setattr(training.train_step, "make_train_step", make_train_step)
  return steps_seen


def _nan_once_at(step_number):
  """Returns a `before_step` that feeds a NaN batch to step `step_number`, the first time only."""
  done = []

  def before_step(model, batch):
    if int(model.step) + 1 == step_number and not done:
      done.append(True)
      return tf.fill(tf.shape(batch), np.nan)
    return batch

  return before_step


def _rows(output_dir):
  return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def _warnings(caplog, text):
  return [record.getMessage() for record in caplog.records
          if record.levelno == logging.WARNING and text in record.getMessage()]


def test_nan_batch_stop_names_checkpoint(tiny_images, tmp_path):
  with pytest.raises(training.NonFiniteLossError) as raised:
    _train(_NanBatchPipeline(tiny_images, nan_step=3), tmp_path)
  error = raised.value
  message = str(error)
  assert error.step == 3
  assert error.checkpoint == str(tmp_path / "checkpoints" / "ckpt-2")
  assert message.startswith("non-finite values at step 3: discriminator_loss=nan")
  assert "discriminator variables (" in message
  assert "discriminator_optimizer variables (" in message
  assert f"last good checkpoint: {tmp_path / 'checkpoints' / 'ckpt-2'}" in message
  assert "--on_non_finite=rollback" in message
  # Nothing after step 2 was saved, and ckpt-2 contains finite weights and slots.
  latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
  assert latest.endswith("ckpt-2")
  reader = tf.train.load_checkpoint(latest)
  for name in reader.get_variable_to_dtype_map():
    if name.startswith("best_frechet_distance"):
      continue  # Infinite until the first evaluation.
    value = reader.get_tensor(name)
    if np.issubdtype(np.asarray(value).dtype, np.floating):
      assert np.all(np.isfinite(value)), name


def test_weight_nan_caught_same_step(tiny_images, tmp_path, monkeypatch):
  # A NaN in an Adam slot before step 3 leaves step 3's losses finite (they are
  # computed before the update) but turns the updated weights NaN.
  def poison_slot_before_step_three(model, batch):
    if int(model.step) == 2:
      slot = model.discriminator_optimizer.second_moments[0]
      slot.assign(tf.fill(slot.shape, np.nan))
    return batch

  _patch_step(monkeypatch, poison_slot_before_step_three)
  pipeline = data.EpochPipeline.from_array(tiny_images, BATCH, seed=11)
  with pytest.raises(training.NonFiniteLossError) as raised:
    _train(pipeline, tmp_path)
  message = str(raised.value)
  assert raised.value.step == 3
  assert message.startswith("non-finite values at step 3: ")
  assert "_loss=" not in message  # the losses were finite
  assert "discriminator_optimizer variables (" in message
  assert raised.value.checkpoint.endswith("ckpt-2")


def test_rollback_lowers_learning_rate(tiny_images, tmp_path, monkeypatch, caplog):
  caplog.set_level(logging.INFO)
  steps_seen = _patch_step(monkeypatch, _nan_once_at(3))
  pipeline = data.EpochPipeline.from_array(tiny_images, BATCH, seed=11)
  result = _train(pipeline, tmp_path, epochs=2, on_non_finite="rollback")

  # Steps 1-3, the NaN at step 3, back to ckpt-2, then steps 3-8.
  assert steps_seen == [0, 1, 2, 2, 3, 4, 5, 6, 7]
  assert result.step == 8
  lowered = LEARNING_RATE * 0.5
  for optimizer in (result.model.generator_optimizer, result.model.discriminator_optimizer):
    assert math.isclose(float(optimizer.learning_rate), lowered, rel_tol=1e-6)
  for variable in result.model.variables:
    assert np.all(np.isfinite(variable.numpy())), variable.name
  rows = _rows(tmp_path)
  assert [row["adam_learning_rate"] for row in rows] == [lowered, lowered]
  assert [row["rollbacks"] for row in rows] == [1, 1]
  rollback_warnings = _warnings(caplog, "rolled back")
  assert len(rollback_warnings) == 1
  assert "NaN or Inf at step 3" in rollback_warnings[0]
  assert str(tmp_path / "checkpoints" / "ckpt-2") in rollback_warnings[0]
  assert "from 0.0002 to 0.0001" in rollback_warnings[0]

  # The lowered rate and the rollback count come back with the checkpoint.
  caplog.clear()
  resumed = _train(pipeline, tmp_path, epochs=3, on_non_finite="rollback")
  assert math.isclose(float(resumed.model.generator_optimizer.learning_rate), lowered,
                      rel_tol=1e-6)
  assert _rows(tmp_path)[-1]["adam_learning_rate"] == lowered
  assert _rows(tmp_path)[-1]["rollbacks"] == 1
  assert len(_warnings(caplog, "Using the learning rate 0.0001 from the checkpoint")) == 1


def test_rollback_without_checkpoint_restarts(tiny_images, tmp_path, monkeypatch, caplog):
  steps_seen = _patch_step(monkeypatch, _nan_once_at(1))
  pipeline = data.EpochPipeline.from_array(tiny_images, BATCH, seed=11)
  result = _train(pipeline, tmp_path, checkpoint_every=0, on_non_finite="rollback")
  assert steps_seen == [0, 0, 1, 2, 3]
  assert result.step == 4
  rollback_warnings = _warnings(caplog, "rolled back")
  assert len(rollback_warnings) == 1
  assert str(tmp_path / "checkpoints" / "ckpt-0") in rollback_warnings[0]


def test_rollback_limit_stops_run(tiny_images, tmp_path, caplog):
  with pytest.raises(training.NonFiniteLossError) as raised:
    _train(_NanBatchPipeline(tiny_images, nan_step=3), tmp_path, on_non_finite="rollback",
           max_rollbacks=2)
  assert raised.value.step == 3
  assert raised.value.rollbacks == 2
  assert "stopped after 2 rollbacks (--max_rollbacks=2)" in str(raised.value)
  assert raised.value.checkpoint.endswith("ckpt-2")
  rollback_warnings = _warnings(caplog, "rolled back")
  assert len(rollback_warnings) == 2
  assert "from 0.0002 to 0.0001" in rollback_warnings[0]
  assert "from 0.0001 to 5e-05" in rollback_warnings[1]
