"""EchoModel options: every rotary / radius / pitch-bias / feature option keeps the invariances,
the KV cache and the analytic parameter count; bfloat16 compute; the reference behaviours
(fzero pad_scale, non-causal decoder) behave as documented."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax.models import (EchoModel, count_params, decode_step, expected_param_count,
                             init_decode_cache)
from echo_jax.models.attention import MultiheadA
from echo_jax.models.config import model_settings
from echo_jax.models.testing import pad_batch, random_batch, tiny_model_config

FRAMES, TOKENS = 16, 7
NUM_FRAMES, NUM_TOKENS = [16, 9, 13], [7, 4, 6]
ATOL = 2e-5

OPTION_SETS = {
    "per_frame+f0_radius+learned_pitch_bias+x2": dict(
        theta_mode="per_frame", radius_mode="f0", pitch_bias=True, pitch_bias_learned=True,
        spectrogram_downsample=2),
    "mel+learned_radius+all_features+x4": dict(
        theta_mode="mel", radius_mode="learned", features=("spectrogram", "pitch", "waveform"),
        spectrogram_downsample=4, pitch_downsample=2),
    "clamped+utt_all+no_text_rotary": dict(
        theta_mode="clamped", f0_mean_mode="utt_all", decoder_rotary=False,
        cross_attn_rotary=False),
}


@pytest.fixture(scope="module", params=sorted(OPTION_SETS))
def option_model(request):
  cfg = tiny_model_config(**OPTION_SETS[request.param])
  model = EchoModel(cfg)
  batch = random_batch(cfg, NUM_FRAMES, NUM_TOKENS, FRAMES, TOKENS, seed=3)
  variables = jax.jit(model.init)(jax.random.PRNGKey(1), batch)
  logits, encoded = jax.jit(functools.partial(model.apply, method=_logits_and_encoding))(
      variables, batch)
  return cfg, model, batch, variables, jax.jit(model.apply), logits, encoded


def _logits_and_encoding(module, batch):
  encoded = module.encode(batch)
  return module.decode(encoded, batch["decoder_input_tokens"]), encoded


def test_parameter_count_matches_analytic_count(option_model):
  cfg, _, _, variables, _, _, _ = option_model
  assert count_params(variables["params"]) == expected_param_count(cfg)


def test_padding_and_batch_invariance(option_model):
  cfg, _, batch, variables, apply, logits, _ = option_model
  assert bool(jnp.all(jnp.isfinite(logits)))
  padded = pad_batch(batch, FRAMES + 8, TOKENS + 3, cfg.hop_length)
  padded_logits = apply(variables, padded)
  np.testing.assert_allclose(padded_logits[:, :TOKENS], logits, atol=ATOL)
  # Row 0 does not depend on its batch companions (replaced by other utterances).
  others = random_batch(cfg, [5, 16, 12], [2, 7, 5], FRAMES, TOKENS, seed=9)
  mixed = pad_batch({k: np.concatenate([batch[k][:1], others[k][1:]]) for k in batch},
                    FRAMES + 8, TOKENS + 3, cfg.hop_length)
  np.testing.assert_allclose(apply(variables, mixed)[0], padded_logits[0], atol=ATOL)


def test_stream_lengths_and_cached_decoding(option_model):
  cfg, model, batch, variables, _, logits, enc = option_model
  factors = {"spectrogram": cfg.spectrogram_downsample, "pitch": cfg.pitch_downsample,
             "waveform": 1}
  for feature in cfg.features:
    factor = factors[feature]
    assert enc.encodings[feature].shape[1] == -(-FRAMES // factor)
    np.testing.assert_array_equal(enc.key_masks[feature].sum(axis=1),
                                  -(-np.asarray(NUM_FRAMES) // factor))
  step = jax.jit(lambda cache, tokens: decode_step(model, variables, cache, enc, tokens))
  cache = init_decode_cache(model, variables, enc, len(NUM_FRAMES), TOKENS)
  outputs = []
  for t in range(TOKENS):
    out, cache = step(cache, batch["decoder_input_tokens"][:, t:t + 1])
    outputs.append(out)
  np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), logits, atol=ATOL)


@pytest.fixture(scope="module")
def default_model():
  cfg = tiny_model_config()
  batch = random_batch(cfg, NUM_FRAMES, NUM_TOKENS, FRAMES, TOKENS, seed=4)
  model = EchoModel(cfg)
  variables = jax.jit(model.init)(jax.random.PRNGKey(2), batch)
  return cfg, batch, variables, jax.jit(model.apply)(variables, batch)


def test_bfloat16_compute_keeps_float32_params_and_logits(default_model):
  cfg, batch, variables, logits = default_model
  cfg_bf16 = tiny_model_config(dtype="bfloat16")
  model = EchoModel(cfg_bf16)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(2), batch)
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(shapes))
  out = jax.jit(model.apply)(variables, batch)
  assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
  # Same parameters, bf16 activations. bf16 keeps 8 significand bits (relative rounding
  # 2^-8 = 0.4 %): over the valid positions the logits' relative L2 error is a few roundings, far
  # above float32's 2^-24, which shows that the compute really ran in bf16; the predicted tokens
  # agree.
  valid = batch["decoder_target_tokens"] > 0
  relative = float(jnp.linalg.norm((out - logits)[valid]) / jnp.linalg.norm(logits[valid]))
  assert 2.0 ** -16 < relative < 4 * 2.0 ** -8, relative
  assert bool(jnp.all((out.argmax(-1) == logits.argmax(-1))[valid]))


def test_reference_non_causal_decoder_leaks_the_future(default_model):
  cfg, batch, variables, logits = default_model
  model = EchoModel(tiny_model_config(causal_decoder=False))
  changed = dict(batch)
  tokens = batch["decoder_input_tokens"].copy()
  tokens[0, 3] = 9 if tokens[0, 3] != 9 else 10
  changed["decoder_input_tokens"] = tokens
  apply = jax.jit(model.apply)
  leak = jnp.abs(apply(variables, changed)[0, :3] - apply(variables, batch)[0, :3]).max()
  assert float(leak) > 1e-4  # the corrected model is checked causal in test_model.py


def test_fzero_pad_scale_is_the_reference_behaviour():
  settings = model_settings(tiny_model_config(fzero="pad_scale"))
  attention = MultiheadA(settings)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, settings.d_model))
  valid = jnp.arange(6)[None] < 4
  variables = attention.init(jax.random.PRNGKey(1), x, key_valid=valid)
  np.testing.assert_allclose(variables["params"]["fzero"], 1e-4)

  def loss(params, x):
    return jnp.mean(attention.apply({"params": params}, x, key_valid=valid) ** 2)

  value, grads = jax.value_and_grad(loss)(variables["params"], x)
  # clamp(softplus(1e-4), 1e-6, 1e-3) is saturated: fzero never learns (spec §1.4 d).
  assert float(grads["fzero"]) == 0.0
  # Pad keys are scaled toward logit 0, not removed: their content reaches valid queries.
  moved = loss(variables["params"], x.at[:, 4:].set(5.0))
  assert abs(float(moved) - float(value)) > 1e-6
  # The default (fzero off) masks them: the same change has no effect on valid queries.
  plain = MultiheadA(model_settings(tiny_model_config()))
  params = {k: v for k, v in variables["params"].items() if k != "fzero"}
  before = plain.apply({"params": params}, x, key_valid=valid)[:, :4]
  after = plain.apply({"params": params}, x.at[:, 4:].set(5.0), key_valid=valid)[:, :4]
  np.testing.assert_allclose(before, after, atol=1e-6)


def test_dropout_only_in_training(default_model):
  cfg, batch, variables, logits = default_model
  model = EchoModel(tiny_model_config(dropout_rate=0.3))
  apply = jax.jit(functools.partial(model.apply, train=True))
  first = apply(variables, batch, rngs={"dropout": jax.random.PRNGKey(0)})
  second = apply(variables, batch, rngs={"dropout": jax.random.PRNGKey(1)})
  assert float(jnp.abs(first - second).max()) > 1e-4
  # Evaluation (train=False, the default) is deterministic and equals the dropout-free model.
  np.testing.assert_allclose(jax.jit(model.apply)(variables, batch), logits, atol=ATOL)


def test_too_long_inputs_fail_with_the_field_to_change():
  cfg = tiny_model_config(audio_ctx=12, text_ctx=6)
  model = EchoModel(cfg)
  rng = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="audio_ctx"):
    jax.eval_shape(model.init, rng, random_batch(cfg, [16], [3], 16, 4))
  with pytest.raises(ValueError, match="text_ctx"):
    jax.eval_shape(model.init, rng, random_batch(cfg, [8], [3], 8, 7))
  wrong_mels = random_batch(tiny_model_config(n_mels=8), [8], [3], 8, 4)
  with pytest.raises(ValueError, match="n_mels"):
    jax.eval_shape(model.init, rng, wrong_mels)
