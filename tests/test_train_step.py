"""Tests of the compiled train step: tracing, determinism and updates."""

import numpy as np
import pytest
import tensorflow as tf

from gan_lib import train_step

BATCH = 8


def _model(seed=0):
  return train_step.GanModel(noise_dim=8, width=4, seed=seed)


def _batches(count, seed=0):
  rng = np.random.default_rng(seed)
  return [tf.constant(rng.uniform(-1, 1, size=(BATCH, 28, 28, 1)), tf.float32)
          for _ in range(count)]


def test_step_traces_once_per_input_shape():
  model = _model()
  step = train_step.make_train_step(model, BATCH)
  for batch in _batches(4):
    step(batch)
  assert step.experimental_get_tracing_count() == 1
  assert int(model.step) == 4


def test_step_updates_both_networks_and_returns_finite_metrics():
  model = _model()
  step = train_step.make_train_step(model, BATCH)
  generator_before = [v.numpy() for v in model.generator.trainable_variables]
  discriminator_before = [v.numpy() for v in model.discriminator.trainable_variables]
  metrics = step(_batches(1)[0])
  expected_keys = {"discriminator_loss", "generator_loss", "real_logit_mean",
                   "fake_logit_mean", "discriminator_gradient_norm", "generator_gradient_norm",
                   "variables_finite"}
  assert set(metrics) == expected_keys
  variables_finite = metrics.pop("variables_finite")
  assert variables_finite.dtype == tf.bool
  assert bool(variables_finite)
  for value in metrics.values():
    assert np.isfinite(float(value))
  for before, variable in zip(generator_before, model.generator.trainable_variables):
    assert not np.array_equal(before, variable.numpy()), variable.name
  for before, variable in zip(discriminator_before, model.discriminator.trainable_variables):
    assert not np.array_equal(before, variable.numpy()), variable.name


def test_step_losses_match_eager_recomputation():
  # The discriminator loss at the start of a step must equal the cross-entropy of
  # the logits computed from the weights before the update.
  model = _model()
  step = train_step.make_train_step(model, BATCH)
  batch = _batches(1)[0]
  rng_state = model.rng.state.numpy()
  noise = model.rng.normal([BATCH, 8])
  seeds = model.rng.make_seeds(2)
  model.rng.reset(rng_state)
  fake = model.generator(noise, training=True)
  # The eager pass also moves the batch-norm averages, which training-mode losses do not read.
  real_logits = model.discriminator(batch, training=True, dropout_seeds=seeds).numpy()
  fake_logits = model.discriminator(fake, training=True, dropout_seeds=seeds).numpy()
  expected = np.mean(np.logaddexp(0, -real_logits) + np.logaddexp(0, fake_logits))
  metrics = step(batch)
  np.testing.assert_allclose(float(metrics["discriminator_loss"]), expected, rtol=1e-4)


def test_same_seed_gives_same_weights_after_same_steps():
  results = []
  for _ in range(2):
    model = _model(seed=3)
    step = train_step.make_train_step(model, BATCH)
    for batch in _batches(3):
      step(batch)
    results.append([v.numpy() for v in model.variables])
  for first, second in zip(*results):
    np.testing.assert_array_equal(first, second)


def test_different_seeds_give_different_weights():
  weights = []
  for seed in (1, 2):
    model = _model(seed=seed)
    step = train_step.make_train_step(model, BATCH)
    step(_batches(1)[0])
    weights.append(model.generator.project.w.numpy())
  assert not np.array_equal(weights[0], weights[1])


def test_bfloat16_step_keeps_float32_state():
  model = _model()
  step = train_step.make_train_step(model, BATCH, precision="mixed_bfloat16")
  metrics = step(_batches(1)[0])
  assert metrics["discriminator_loss"].dtype == tf.float32
  # Weights, moments and statistics are float32; the step counters and the random
  # generator's state are int64.
  assert {v.dtype for v in model.variables} == {tf.float32, tf.int64}
  assert np.isfinite(float(metrics["generator_loss"]))


def test_unknown_precision_is_rejected():
  with pytest.raises(ValueError, match="precision must be one of"):
    train_step.make_train_step(_model(), BATCH, precision="float64")


def test_ema_generator_follows_ramped_decay():
  model = train_step.GanModel(noise_dim=8, width=4, seed=0, ema_decay=0.5)
  initial = [v.numpy() for v in model.generator.variables]
  for average, variable in zip(initial, model.ema_generator.variables):
    np.testing.assert_array_equal(average, variable.numpy())
  step = train_step.make_train_step(model, BATCH)
  step(_batches(1)[0])
  # After step 1 the decay is min(0.5, 2 / 11).
  decay = 2.0 / 11.0
  for before, variable, average in zip(
      initial, model.generator.variables, model.ema_generator.variables):
    expected = decay * before + (1.0 - decay) * variable.numpy()
    np.testing.assert_allclose(average.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_no_ema_generator_when_decay_is_none():
  model = train_step.GanModel(noise_dim=8, width=4, seed=0, ema_decay=None)
  assert model.ema_generator is None
  assert "ema_generator" not in model.checkpoint_items()
  step = train_step.make_train_step(model, BATCH)
  step(_batches(1)[0])
  assert int(model.step) == 1


@pytest.mark.parametrize("owner", ["discriminator_optimizer", "ema_generator", "generator"])
def test_finite_flag_drops_for_nan_variable(owner):
  model = _model()
  step = train_step.make_train_step(model, BATCH)
  batches = _batches(2)
  assert bool(step(batches[0])["variables_finite"])
  # A NaN in one element of the group's last float variable. The step's update
  # or average carries it on, and the flag must drop in this same step.
  variable = [v for v in model.checkpoint_items()[owner].variables if v.dtype.is_floating][-1]
  poisoned = variable.numpy()
  poisoned.flat[0] = np.nan
  variable.assign(poisoned)
  assert not bool(step(batches[1])["variables_finite"])
  groups = model.non_finite_variables()
  assert owner in groups
  assert variable.name in groups[owner]


def test_non_finite_variables_separate_slots():
  model = _model()
  slot = model.generator_optimizer.second_moments[0]
  slot.assign(tf.fill(slot.shape, np.inf))
  assert model.non_finite_variables() == {"generator_optimizer": [slot.name]}


def test_checked_variables_cover_floats():
  model = _model()
  checked = model.checked_variables()
  assert {v.dtype for v in checked} == {tf.float32}
  assert len(checked) == len([v for v in model.variables if v.dtype == tf.float32])
  checked_ids = {id(v) for v in checked}
  for owner in ("generator", "discriminator", "ema_generator"):
    for variable in model.checkpoint_items()[owner].variables:
      assert id(variable) in checked_ids, variable.name
  for slot in model.discriminator_optimizer.first_moments + model.discriminator_optimizer.second_moments:
    assert id(slot) in checked_ids
