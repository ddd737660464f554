"""The jitted train step: data parallel over 8 devices equals 1 device, global-token loss,
one compile per bucket shape, non-finite steps never change the state."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax.inference import scoring
from echo_jax.training import metrics
from echo_jax.training import optim
from echo_jax.parallel import sharding
from echo_jax.models import building
from echo_jax.training import setup as train_setup
from echo_jax.training import steps
from ragged_batches import ragged_batch

VOCAB = 40


@pytest.fixture(scope="module")
def setup():
  config = importlib.import_module("configs.tiny").get_config()
  config.model.vocab_size = VOCAB
  config.train.warmup_steps = 1
  model = building.build_model(config)
  tx = optim.make_optimizer(config.train)
  schedule = optim.learning_rate_schedule(config.train)
  return config, model, tx, schedule


@pytest.fixture(scope="module")
def mesh8(setup):
  """The 8-device mesh, one compiled step shared by the tests, and the initial state on the host."""
  config, model, tx, schedule = setup
  mesh = sharding.make_mesh()
  state, shardings = train_setup.create_train_state(model, tx, config, mesh)
  step = steps.make_train_step(model, tx, schedule, mesh, shardings)
  return mesh, shardings, step, jax.device_get(state)


def _fresh(host_state, shardings):
  return jax.device_put(host_state, shardings)


def _batch(config, batch_size, frames, seed=0):
  return ragged_batch(config, batch_size, frames, VOCAB, seed)


def _train(step, state, mesh, batches):
  losses = []
  for batch in batches:
    state, step_metrics = step(state, sharding.global_batch(batch, mesh))
    losses.append(step_metrics["loss"])
  return jax.device_get(losses), jax.device_get(state.params)


def test_eight_devices_equal_one_device(setup, mesh8):
  config, model, tx, schedule = setup
  mesh, shardings, step, host_state = mesh8
  batches = [_batch(config, 8, 256, seed=s) for s in range(3)]
  mesh_1 = sharding.make_mesh(jax.devices()[:1])
  shardings_1 = train_setup.state_shardings(host_state, mesh_1, tx, "replicated")
  step_1 = steps.make_train_step(model, tx, schedule, mesh_1, shardings_1)
  losses_1, params_1 = _train(step_1, _fresh(host_state, shardings_1), mesh_1, batches)
  losses_8, params_8 = _train(step, _fresh(host_state, shardings), mesh, batches)
  # Same math, different reduction order across devices: float32 round-off only.
  np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5)
  assert losses_1[2] < losses_1[0]  # it trained
  for a, b in zip(jax.tree.leaves(params_8), jax.tree.leaves(params_1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_eight_devices_equal_one_device_with_dropout_and_spec_augment(setup):
  """The RNG path: dropout and SpecAugment masks drawn inside the step are the same whatever the
  device count (the step's key is split from the state's, not per device)."""
  config, _, tx, schedule = setup
  config = config.copy_and_resolve_references()
  config.model.dropout_rate = 0.2
  sa = config.train.spec_augment
  sa.freq_masks, sa.freq_mask_bins, sa.time_masks, sa.time_mask_frames = 2, 6, 2, 20
  model = building.build_model(config)
  batches = [_batch(config, 8, 256, seed=s) for s in range(2)]
  results = {}
  for devices in (8, 1):
    mesh = sharding.make_mesh(jax.devices()[:devices])
    state, shardings = train_setup.create_train_state(model, tx, config, mesh)
    step = steps.make_train_step(model, tx, schedule, mesh, shardings, train_config=config.train)
    results[devices] = _train(step, state, mesh, batches)
  (losses_8, params_8), (losses_1, params_1) = results[8], results[1]
  np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params_8), jax.tree.leaves(params_1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The masks are live: the same batch and parameters without them give another loss.
  plain = config.copy_and_resolve_references()
  plain.model.dropout_rate = 0.0
  plain.train.spec_augment.freq_masks = plain.train.spec_augment.time_masks = 0
  plain_model = building.build_model(plain)
  mesh = sharding.make_mesh(jax.devices()[:1])
  state, shardings = train_setup.create_train_state(plain_model, tx, plain, mesh)
  step = steps.make_train_step(plain_model, tx, schedule, mesh, shardings,
                               train_config=plain.train)
  plain_losses, _ = _train(step, state, mesh, batches[:1])
  assert abs(float(plain_losses[0]) - float(losses_1[0])) > 1e-3


def test_loss_is_mean_over_real_tokens_of_the_global_batch(setup, mesh8):
  config, model, _, _ = setup
  mesh, shardings, step, host_state = mesh8
  batch = _batch(config, 8, 256, seed=7)
  logits = np.asarray(model.apply({"params": host_state.params}, batch), np.float64)
  targets = batch["decoder_target_tokens"]
  top = logits.max(-1, keepdims=True)
  log_probs = logits - top - np.log(np.sum(np.exp(logits - top), -1, keepdims=True))
  nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  mask = targets != 0
  expected = nll[mask].sum() / mask.sum()  # EOS counted, pads not, one global denominator
  _, step_metrics = step(_fresh(host_state, shardings), sharding.global_batch(batch, mesh))
  np.testing.assert_allclose(float(step_metrics["loss"]), expected, rtol=1e-5)
  assert float(step_metrics["num_tokens"]) == mask.sum()


def test_one_compile_per_bucket_shape(setup, mesh8):
  config = setup[0]
  mesh, shardings, step, host_state = mesh8
  state = _fresh(host_state, shardings)
  for frames in (256, 512, 256, 512, 256):
    state, _ = step(state, sharding.global_batch(_batch(config, 8, frames, seed=frames), mesh))
  assert step._cache_size() == 2  # pylint: disable=protected-access


def test_nonfinite_step_keeps_last_good_state(setup, mesh8):
  config = setup[0]
  mesh, shardings, step, host_state = mesh8
  state = _fresh(host_state, shardings)
  good = _batch(config, 8, 256, seed=1)
  bad = _batch(config, 8, 256, seed=2)
  bad["mel"][3, 0, 0] = np.nan
  state, _ = step(state, sharding.global_batch(good, mesh))
  params_before = jax.device_get(state.params)
  state, bad_metrics = step(state, sharding.global_batch(bad, mesh))
  state, later_metrics = step(state, sharding.global_batch(good, mesh))
  assert not bool(bad_metrics["finite"]) and bool(later_metrics["finite"])
  assert int(state.first_bad_step) == 1 and int(state.step) == 3
  flagged = [bool(f) for f in jax.tree.leaves(bad_metrics["nonfinite_grads"])]
  assert any(flagged)
  # Neither the bad step nor any later step changed the parameters.
  for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(params_before)):
    np.testing.assert_array_equal(a, b)


def test_token_sums_ignore_pad_and_invalid_rows():
  logits = jnp.log(jnp.asarray([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]],
                                [[0.2, 0.2, 0.6], [0.3, 0.3, 0.4]]], jnp.float32))
  targets = jnp.asarray([[2, 0], [2, 1]], jnp.int32)
  sums = metrics.token_sums(logits, targets)
  np.testing.assert_allclose(float(sums["loss_sum"]), -np.log(0.25) - np.log(0.6) - np.log(0.3),
                             rtol=1e-6)
  assert float(sums["num_tokens"]) == 3 and float(sums["num_correct"]) == 1
  sums = metrics.token_sums(logits, targets, jnp.asarray([True, False]))
  np.testing.assert_allclose(float(sums["loss_sum"]), -np.log(0.25), rtol=1e-6)
  assert float(sums["num_tokens"]) == 1


def test_error_rates_match_hand_counts():
  rates = scoring.error_rates(["the cat sat", "a dog"], ["the cat sat down", "a log"])
  np.testing.assert_allclose(rates["wer"], 2 / 5)   # one insertion, one substitution
  np.testing.assert_allclose(rates["cer"], 6 / 16)  # " down" (5) + d->l (1) over 11 + 5 chars
