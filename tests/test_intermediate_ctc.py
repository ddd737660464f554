"""Intermediate and self-conditioned CTC: the intermediate logits are the shared CTC head on that
layer's output, self-conditioning feeds them back (and nothing else changes), padding and other
rows do not leak in, the train step's loss is the stated mix, and bad settings are named."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax.config.check import validate_config
from echo_jax.models import EchoModel, building, count_params, expected_param_count
from echo_jax.models.config import validate_model_config
from echo_jax.models.testing import pad_batch, random_batch, tiny_model_config
from echo_jax.parallel import sharding
from echo_jax.training import losses, metrics, optim
from echo_jax.training import setup as train_setup
from echo_jax.training import steps
from ragged_batches import ragged_batch

NUM_FRAMES, NUM_TOKENS = [16, 9, 13], [7, 4, 6]


def _config(**options):
  return tiny_model_config(ctc_head=True, spectrogram_downsample=2, encoder_layers=3, **options)


def _forward(cfg, variables, batch, **kwargs):
  return EchoModel(cfg).apply(variables, batch, method=EchoModel.forward, **kwargs)


@pytest.fixture(scope="module")
def plain():
  """A 3-layer encoder with a CTC head and no intermediate CTC: variables, batch."""
  cfg = _config()
  batch = random_batch(cfg, NUM_FRAMES, NUM_TOKENS, 16, 7, seed=3)
  return batch, jax.jit(EchoModel(cfg).init)(jax.random.PRNGKey(0), batch)


def test_intermediate_logits_are_the_shared_head_on_that_layer(plain):
  """Without self-conditioning the forward pass is the plain model's, and the logits after
  layers 1 and 2 are the CTC head (same norm, same projection) applied to those layers' outputs."""
  batch, variables = plain
  cfg = _config(intermediate_ctc_layers=(1, 2))
  assert count_params(variables["params"]) == expected_param_count(cfg)  # no new parameters
  (logits, ctc), state = _forward(cfg, variables, batch, mutable=["intermediates"])
  plain_logits, plain_ctc = _forward(_config(), variables, batch)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(plain_logits), atol=1e-6)
  np.testing.assert_allclose(np.asarray(ctc.logits), np.asarray(plain_ctc.logits), atol=1e-6)
  assert len(ctc.intermediate_logits) == 2
  encoder = state["intermediates"]["encoder"]
  for layer, got in zip((0, 1), ctc.intermediate_logits):
    hidden = encoder[f"blocks_spectrogram_{layer}"]["residual_output"][0]
    expected = EchoModel(cfg).apply(variables, hidden, method=EchoModel._ctc_logits)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-6)
  # Layer 3's output is the final head's input: an intermediate head there would be the final one.
  assert not np.allclose(np.asarray(ctc.intermediate_logits[1]), np.asarray(ctc.logits),
                         atol=1e-3)


def test_self_conditioning_adds_the_projected_prediction_back(plain):
  """Zero conditioning weights give the plain model exactly; real ones change what follows the
  intermediate layer (final CTC, decoder) but not the intermediate prediction itself."""
  batch, variables = plain
  cfg = _config(intermediate_ctc_layers=(1,), self_conditioning=True)
  init = jax.jit(EchoModel(cfg).init)(jax.random.PRNGKey(0), batch)
  assert count_params(init["params"]) == expected_param_count(cfg)
  assert expected_param_count(cfg) - expected_param_count(_config()) == (24 + 1) * 32
  conditioning = init["params"]["encoder"]["self_conditioning"]
  params = {**variables["params"],
            "encoder": {**variables["params"]["encoder"], "self_conditioning": conditioning}}
  zeroed = jax.tree.map(jnp.zeros_like, conditioning)
  params_zero = {**params, "encoder": {**params["encoder"], "self_conditioning": zeroed}}

  _, plain_ctc = _forward(_config(), variables, batch)
  _, ctc_zero = _forward(cfg, {"params": params_zero}, batch)
  np.testing.assert_allclose(np.asarray(ctc_zero.logits), np.asarray(plain_ctc.logits), atol=1e-6)
  logits, ctc = _forward(cfg, {"params": params}, batch)
  logits_zero, _ = _forward(cfg, {"params": params_zero}, batch)
  np.testing.assert_allclose(np.asarray(ctc.intermediate_logits[0]),
                             np.asarray(ctc_zero.intermediate_logits[0]), atol=1e-6)
  valid = np.asarray(ctc.valid)
  assert np.abs(np.asarray(ctc.logits) - np.asarray(ctc_zero.logits))[valid].max() > 1e-3
  assert np.abs(np.asarray(logits) - np.asarray(logits_zero)).max() > 1e-3


def test_self_conditioned_outputs_ignore_padding_and_other_rows(plain):
  batch, _ = plain
  cfg = _config(intermediate_ctc_layers=(1, 2), self_conditioning=True)
  variables = jax.jit(EchoModel(cfg).init)(jax.random.PRNGKey(1), batch)
  forward = jax.jit(lambda v, b: _forward(cfg, v, b))
  _, ctc = forward(variables, batch)
  padded = pad_batch(batch, 24, 9, cfg.hop_length)
  padded["mel"][0, 16:] = 5.0  # garbage in the padding
  _, ctc_padded = forward(variables, padded)
  _, alone = forward(variables, {k: v[1:2] for k, v in batch.items()})
  for row, n in enumerate(np.asarray(ctc.valid).sum(axis=1)):
    for got, expected in zip((ctc_padded.logits, *ctc_padded.intermediate_logits),
                             (ctc.logits, *ctc.intermediate_logits)):
      np.testing.assert_allclose(np.asarray(got)[row, :n], np.asarray(expected)[row, :n],
                                 atol=3e-5)
  n = int(np.asarray(ctc.valid)[1].sum())
  np.testing.assert_allclose(np.asarray(alone.logits)[0, :n], np.asarray(ctc.logits)[1, :n],
                             atol=3e-5)


def test_train_step_loss_mixes_final_and_intermediate_ctc():
  """step loss == (1 - w) * CE + w * ((1 - u) * CTC_final + u * mean CTC_intermediate), each CTC
  divided by the label count, on the tiny config with two intermediate layers."""
  config = importlib.import_module("configs.tiny").get_config()
  config.model.update(dict(vocab_size=40, ctc_head=True, encoder_layers=3,
                           intermediate_ctc_layers=(1, 2), self_conditioning=True))
  config.train.update(dict(ctc_weight=0.4, intermediate_ctc_weight=0.5, label_smoothing=0.0,
                           warmup_steps=0))
  validate_config(config)
  model = building.build_model(config)
  tx = optim.make_optimizer(config.train)
  mesh = sharding.make_mesh(jax.devices()[:1])
  state, shardings = train_setup.create_train_state(model, tx, config, mesh)
  step = steps.make_train_step(model, tx, optim.learning_rate_schedule(config.train), mesh,
                               shardings, train_config=config.train)
  batch = ragged_batch(config, 4, 256, 40, 0)
  params = jax.device_get(state.params)
  _, step_metrics = step(state, sharding.global_batch(batch, mesh))

  logits, ctc = model.apply({"params": params}, batch, train=True, method=EchoModel.forward)
  targets = jnp.asarray(batch["decoder_target_tokens"])
  sums = metrics.token_sums(logits, targets)
  ce = float(sums["loss_sum"]) / float(sums["num_tokens"])

  def per_label(ctc_logits):
    s = losses.ctc_sums(ctc_logits, ctc.valid, targets)
    return float(s["ctc_loss_sum"]) / float(s["num_labels"])
  final = per_label(ctc.logits)
  inter = [per_label(x) for x in ctc.intermediate_logits]
  assert len(inter) == 2 and abs(inter[0] - final) > 1e-3
  np.testing.assert_allclose(float(step_metrics["intermediate_ctc_loss"]), np.mean(inter),
                             rtol=1e-4)
  np.testing.assert_allclose(float(step_metrics["ctc_loss"]), final, rtol=1e-4)
  np.testing.assert_allclose(float(step_metrics["loss"]),
                             0.6 * ce + 0.4 * (0.5 * final + 0.5 * np.mean(inter)), rtol=1e-4)


@pytest.mark.parametrize("options,fix", [
    (dict(intermediate_ctc_layers=(3,)), "from 1 to encoder_layers - 1 = 2"),
    (dict(intermediate_ctc_layers=(2, 1)), "increasing"),
    (dict(intermediate_ctc_layers=(0,)), "from 1"),
    (dict(intermediate_ctc_layers=(1,), ctc_upsample=2), "ctc_upsample=1"),
    (dict(self_conditioning=True), "set model.intermediate_ctc_layers"),
])
def test_bad_intermediate_settings_name_the_field(options, fix):
  with pytest.raises(ValueError, match=f"config.model.*{fix}"):
    validate_model_config(_config(**options))
  with pytest.raises(ValueError, match="config.model.intermediate_ctc_layers=.*ctc_head=True"):
    validate_model_config(tiny_model_config(encoder_layers=3, intermediate_ctc_layers=(1,)))


def test_intermediate_weight_needs_intermediate_layers():
  config = importlib.import_module("configs.tiny").get_config()
  config.model.ctc_head = True
  config.train.ctc_weight = 0.3
  config.train.intermediate_ctc_weight = 0.5
  with pytest.raises(ValueError, match="config.train.intermediate_ctc_weight=0.5.*"
                                       "intermediate_ctc_layers"):
    validate_config(config)
