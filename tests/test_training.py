"""Tests of the training loop: outputs, resume equivalence and export."""

import json
import os
import signal

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from gan_lib import config as config_lib
from gan_lib import data
from gan_lib import training

BATCH = 16  # 64 tiny images give 4 steps per epoch


def _config(output_dir, **overrides):
  settings = dict(output_dir=str(output_dir), epochs=2, batch_size=BATCH, noise_dim=8,
                  width=4, seed=11, checkpoint_every=0, precision="float32",
                  jit_compile="false", eval_every=0)
  settings.update(overrides)
  return config_lib.TrainConfig(**settings)


def _train(tiny_images, output_dir, evaluator=None, **overrides):
  pipeline = data.EpochPipeline.from_array(tiny_images, BATCH, seed=11)
  return training.train(_config(output_dir, **overrides), pipeline=pipeline,
                        evaluator=evaluator)


class _ScriptedEvaluator:
  """Returns preset Frechet distances, one per call, to drive the loop's bookkeeping."""

  def __init__(self, frechet_distances):
    self.frechet_distances = list(frechet_distances)
    self.calls = []

  def evaluate_generator(self, generator, num_samples, noise_dim=None, seed=0):
    self.calls.append((generator.name, num_samples, noise_dim, seed))
    distance = self.frechet_distances.pop(0)
    return dict(inception_score=10.0 - distance, inception_score_std=0.1,
                frechet_distance=distance, kernel_distance=distance / 100,
                kernel_distance_std=0.0, precision=0.5, recall=0.5,
                class_coverage=dict(num_classes_present=10, kl_from_uniform=0.01),
                num_samples=num_samples, seconds=0.1)


def _weights(result):
  return [v.numpy() for v in result.model.variables]


def test_run_writes_samples_log_checkpoint_and_saved_model(tiny_images, tmp_path):
  result = _train(tiny_images, tmp_path)
  assert result.step == 8
  assert result.epoch == 2

  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [row["epoch"] for row in rows] == [1, 2]
  assert [row["step"] for row in rows] == [4, 8]
  for row in rows:
    assert np.isfinite(row["discriminator_loss"])
    assert row["steps_per_second"] > 0
  for epoch in (1, 2):
    with Image.open(tmp_path / "samples" / f"epoch_{epoch:04d}.png") as png:
      assert png.size == (8 * 28, 8 * 28)
  with Image.open(tmp_path / "samples" / "progress.gif") as gif:
    assert gif.n_frames == 2
  assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-8")
  assert os.listdir(tmp_path / "tensorboard")
  assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == BATCH
  leftovers = [name for name in os.listdir(tmp_path) if name.endswith((".tmp", ".old"))]
  assert leftovers == []


def test_saved_model_serves_generator_samples(tiny_images, tmp_path):
  result = _train(tiny_images, tmp_path, epochs=1, ema_decay=0.0)
  loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
  serve = loaded.signatures["serving_default"]
  noise = tf.random.stateless_normal([3, 8], seed=[1, 1])
  served = serve(noise=noise)["images"]
  assert served.shape == (3, 28, 28, 1)
  expected = result.model.generator(noise, training=False)
  np.testing.assert_allclose(served.numpy(), expected.numpy(), atol=1e-6)


def test_resume_gives_same_weights_as_straight_run(tiny_images, tmp_path):
  # 6 steps straight against 3 steps, stop (inside epoch 1), resume, 3 more steps.
  straight = _train(tiny_images, tmp_path / "straight", max_steps=6)
  first_half = _train(tiny_images, tmp_path / "resumed", max_steps=3)
  assert first_half.step == 3
  second_half = _train(tiny_images, tmp_path / "resumed", max_steps=6)
  assert second_half.step == 6
  for a, b in zip(_weights(straight), _weights(second_half)):
    np.testing.assert_array_equal(a, b)
  straight_rows = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
  resumed_rows = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
  assert len(straight_rows) == len(resumed_rows) == 1
  for key in ("epoch", "step", "discriminator_loss", "generator_loss"):
    assert json.loads(straight_rows[0])[key] == json.loads(resumed_rows[0])[key]


def test_finished_run_resumes_without_training_again(tiny_images, tmp_path):
  first = _train(tiny_images, tmp_path, epochs=1)
  again = _train(tiny_images, tmp_path, epochs=1)
  assert again.step == first.step
  for a, b in zip(_weights(first), _weights(again)):
    np.testing.assert_array_equal(a, b)
  rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert len(rows) == 1


def test_sigterm_saves_checkpoint_and_stops(tiny_images, tmp_path, monkeypatch):
  real_step = training.train_step.make_train_step

  def step_then_signal(*args, **kwargs):
    step = real_step(*args, **kwargs)

    def wrapped(batch):
      outputs = step(batch)
      os.kill(os.getpid(), signal.SIGTERM)
      return outputs

    return wrapped

  monkeypatch.setattr(training.train_step, "make_train_step", step_then_signal)
  with pytest.raises(training.TrainingInterrupted) as interruption:
    _train(tiny_images, tmp_path)
  assert interruption.value.signal_number == signal.SIGTERM
  assert interruption.value.step == 1
  assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-1")


def test_non_finite_loss_stops_with_step_and_checkpoint(tiny_images, tmp_path, monkeypatch):
  real_step = training.train_step.make_train_step

  def step_with_nan_at_three(model, *args, **kwargs):
    step = real_step(model, *args, **kwargs)

    def wrapped(batch):
      outputs = dict(step(batch))
      if int(model.step) == 3:
        outputs["generator_loss"] = tf.constant(float("nan"))
      return outputs

    return wrapped

  monkeypatch.setattr(training.train_step, "make_train_step", step_with_nan_at_three)
  with pytest.raises(training.NonFiniteLossError, match=r"at step 3.*ckpt-2"):
    _train(tiny_images, tmp_path, checkpoint_every=2)


def test_pipeline_batch_size_must_match_config(tiny_images, tmp_path):
  pipeline = data.EpochPipeline.from_array(tiny_images, 8, seed=0)
  with pytest.raises(ValueError, match="differs from --batch_size=16"):
    training.train(_config(tmp_path), pipeline=pipeline)


def test_second_process_on_same_folder_is_rejected(tiny_images, tmp_path):
  with training.OutputDirLock(str(tmp_path)):
    with pytest.raises(training.OutputDirInUseError, match=f"in use by process {os.getpid()}"):
      _train(tiny_images, tmp_path)
  # Released: training now runs.
  assert _train(tiny_images, tmp_path, epochs=1).step == 4


def test_corrupt_latest_checkpoint_falls_back_to_previous(tiny_images, tmp_path, caplog):
  first = _train(tiny_images, tmp_path, epochs=1)
  good_weights = _weights(first)
  _train(tiny_images, tmp_path, epochs=2)
  checkpoints = tmp_path / "checkpoints"
  data_file = next(checkpoints.glob("ckpt-8.data-*"))
  data_file.write_bytes(data_file.read_bytes()[:100])  # truncate the latest checkpoint

  resumed = _train(tiny_images, tmp_path, epochs=1)
  assert resumed.step == 4
  for a, b in zip(good_weights, _weights(resumed)):
    np.testing.assert_array_equal(a, b)
  fallback_messages = [record.getMessage() for record in caplog.records
                       if "Fell back" in record.getMessage()]
  assert len(fallback_messages) == 1
  assert "ckpt-8" in fallback_messages[0]
  assert "ckpt-4" in fallback_messages[0]


def test_all_checkpoints_corrupt_is_an_error(tiny_images, tmp_path):
  _train(tiny_images, tmp_path, epochs=1)
  for data_file in (tmp_path / "checkpoints").glob("ckpt-*.data-*"):
    data_file.write_bytes(b"garbage")
  with pytest.raises(training.NoGoodCheckpointError, match="none of the checkpoints"):
    _train(tiny_images, tmp_path, epochs=1)


def test_evaluation_rows_best_checkpoint_and_plot(tiny_images, tmp_path):
  # Raw and averaged generator per epoch; the averaged one decides the best epoch.
  evaluator = _ScriptedEvaluator([9.0, 5.0, 8.0, 3.0, 7.0, 4.0])
  result = _train(tiny_images, tmp_path, evaluator=evaluator, epochs=3, eval_every=1,
                  eval_samples=20)
  assert [call[0] for call in evaluator.calls] == ["generator", "ema_generator"] * 3
  assert all(call[1:] == (20, 8, 11) for call in evaluator.calls)

  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [row["frechet_distance"] for row in rows] == [9.0, 8.0, 7.0]
  assert [row["ema_frechet_distance"] for row in rows] == [5.0, 3.0, 4.0]
  assert rows[0]["ema_classes_present"] == 10.0
  best = json.loads((tmp_path / "best.json").read_text())
  assert best["epoch"] == 2
  assert best["checkpoint"] == os.path.join("best_checkpoint", "ckpt-8")
  assert tf.train.latest_checkpoint(str(tmp_path / "best_checkpoint")).endswith("ckpt-8")
  with Image.open(tmp_path / "metrics.png") as plot:
    assert plot.size[0] > 100
  assert result.epoch == 3


def test_best_distance_survives_resume(tiny_images, tmp_path):
  _train(tiny_images, tmp_path, evaluator=_ScriptedEvaluator([9.0, 3.0]), epochs=1,
         eval_every=1, eval_samples=20)
  # Epoch 2 is worse than epoch 1's 3.0, so the best checkpoint stays at epoch 1.
  _train(tiny_images, tmp_path, evaluator=_ScriptedEvaluator([8.0, 4.0]), epochs=2,
         eval_every=1, eval_samples=20)
  assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 1
  assert tf.train.latest_checkpoint(str(tmp_path / "best_checkpoint")).endswith("ckpt-4")


def test_eval_every_skips_epochs_but_evaluates_last(tiny_images, tmp_path):
  evaluator = _ScriptedEvaluator([5.0, 4.0, 3.0, 2.0])
  _train(tiny_images, tmp_path, evaluator=evaluator, epochs=3, eval_every=2, eval_samples=20)
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert ["frechet_distance" in row for row in rows] == [False, True, True]


def test_samples_and_export_use_averaged_generator(tiny_images, tmp_path):
  result = _train(tiny_images, tmp_path, epochs=1, ema_decay=0.9)
  loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
  noise = tf.random.stateless_normal([2, 8], seed=[3, 3])
  served = loaded.signatures["serving_default"](noise=noise)["images"].numpy()
  averaged = result.model.ema_generator(noise, training=False).numpy()
  raw = result.model.generator(noise, training=False).numpy()
  np.testing.assert_allclose(served, averaged, atol=1e-6)
  assert not np.allclose(served, raw, atol=1e-4)


def test_short_epochs_resume_exactly(tiny_images, tmp_path):
  # 64 images at batch 16: an epoch of 32 images is 2 steps.
  evaluator = _ScriptedEvaluator([5.0, 4.0, 3.0, 2.0])
  straight = _train(tiny_images, tmp_path / "straight", evaluator=evaluator, epochs=2,
                    examples_per_epoch=32, eval_every=1, eval_samples=10, ema_decay=0.0)
  rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text()
          .splitlines()]
  assert [(row["epoch"], row["step"]) for row in rows] == [(1, 2), (2, 4)]
  assert [row["frechet_distance"] for row in rows] == [5.0, 4.0]
  _train(tiny_images, tmp_path / "resumed", epochs=2, examples_per_epoch=32, max_steps=3,
         ema_decay=0.0)
  resumed = _train(tiny_images, tmp_path / "resumed", epochs=2, examples_per_epoch=32,
                   ema_decay=0.0)
  assert resumed.step == 4
  for a, b in zip(_weights(straight), _weights(resumed)):
    np.testing.assert_array_equal(a, b)


def test_resume_with_other_width_is_rejected(tiny_images, tmp_path):
  _train(tiny_images, tmp_path, epochs=1)
  stored = (tmp_path / "config.json").read_text()
  with pytest.raises(config_lib.ConfigError,
                     match=r"--width=8 is invalid: the run in .* was started with width=4"):
    _train(tiny_images, tmp_path, epochs=2, width=8)
  assert (tmp_path / "config.json").read_text() == stored
  resumed = _train(tiny_images, tmp_path, epochs=2)
  assert resumed.epoch == 2
