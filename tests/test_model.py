"""EchoModel (default corrected options): masks, causality, padding and batch invariance, KV cache,
single compilation, intermediates, parameter names and counts, initialisation, validation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from configs import base as base_config
from echo_jax.models import (EchoModel, count_params, decode_step, expected_param_count,
                             init_decode_cache, validate_model_config)
from echo_jax.models.testing import pad_batch, random_batch, select, tiny_model_config

FRAMES, TOKENS = 24, 10
NUM_FRAMES, NUM_TOKENS = [24, 15, 20], [10, 6, 8]
ATOL = 2e-5


@pytest.fixture(scope="module")
def setup():
  cfg = tiny_model_config()
  model = EchoModel(cfg)
  batch = random_batch(cfg, NUM_FRAMES, NUM_TOKENS, FRAMES, TOKENS, seed=0)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
  apply = jax.jit(model.apply)
  logits = apply(variables, batch)
  return cfg, model, batch, variables, apply, logits


@pytest.fixture(scope="module")
def encoded(setup):
  _, model, batch, variables, _, _ = setup
  return jax.jit(functools.partial(model.apply, method=EchoModel.encode))(variables, batch)


def _valid_token_rows(batch):
  return batch["decoder_input_tokens"] != 0


def test_logits_shape_dtype_and_scale(setup):
  cfg, _, batch, _, _, logits = setup
  assert logits.shape == (3, TOKENS, cfg.vocab_size) and logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  # Scaled tied embedding: logits of order 1 at init (the reference's N(0,1) gives ~sqrt(d)).
  assert 0.1 < float(jnp.std(logits)) < 3.0


def test_causality(setup):
  _, _, batch, variables, apply, logits = setup
  t = 3
  changed = dict(batch)
  tokens = batch["decoder_input_tokens"].copy()
  tokens[:, t + 1:] = np.where(tokens[:, t + 1:] != 0, 5, 0)
  tokens[0, t + 1] = 7
  changed["decoder_input_tokens"] = tokens
  out = apply(variables, changed)
  np.testing.assert_allclose(out[:, :t + 1], logits[:, :t + 1], atol=ATOL)
  assert float(jnp.abs(out[0, t + 1:] - logits[0, t + 1:]).max()) > 1e-4


def test_audio_padding_invariance(setup):
  cfg, _, batch, variables, apply, logits = setup
  padded = pad_batch(batch, FRAMES + 16, TOKENS, cfg.hop_length)
  padded["mel"][:, FRAMES:] = 0.0
  np.testing.assert_allclose(apply(variables, padded), logits, atol=ATOL)


def test_text_padding_invariance(setup):
  cfg, _, batch, variables, apply, logits = setup
  padded = pad_batch(batch, FRAMES, TOKENS + 6, cfg.hop_length)
  out = apply(variables, padded)
  np.testing.assert_allclose(out[:, :TOKENS], logits, atol=ATOL)


def test_padding_values_are_ignored(setup):
  """Junk in padded mel / f0 frames and pad-token positions does not reach valid outputs."""
  _, _, batch, variables, apply, logits = setup
  junk = dict(batch)
  frame_pad = np.arange(FRAMES)[None, :] >= np.asarray(NUM_FRAMES)[:, None]
  junk["mel"] = np.where(frame_pad[..., None], 3.0, batch["mel"]).astype(np.float32)
  junk["f0"] = np.where(frame_pad, 400.0, batch["f0"]).astype(np.float32)
  out = apply(variables, junk)
  valid = _valid_token_rows(batch)
  np.testing.assert_allclose(np.asarray(out)[valid], np.asarray(logits)[valid], atol=ATOL)


def test_batch_independence(setup):
  _, _, batch, variables, apply, logits = setup
  for row in range(3):
    alone = apply(variables, select(batch, [row]))
    np.testing.assert_allclose(alone[0], logits[row], atol=ATOL)


def test_theta_per_utterance_in_model(setup, encoded):
  _, _, batch, _, _, _ = setup
  enc = encoded
  mean = [batch["f0"][b, :n][batch["f0"][b, :n] > 0].mean() for b, n in enumerate(NUM_FRAMES)]
  pf = np.log1p(np.asarray(mean) / 700) / np.log1p(300 / 700)
  np.testing.assert_allclose(enc.theta, 10000 + 9200 * pf, rtol=1e-5)
  assert len(set(np.round(np.asarray(enc.theta)))) == 3
  np.testing.assert_array_equal(enc.key_masks["spectrogram"].sum(axis=1), NUM_FRAMES)


def test_incremental_decoding_matches_full_decode(setup, encoded):
  _, model, batch, variables, _, logits = setup
  step = jax.jit(lambda cache, enc, tokens: decode_step(model, variables, cache, enc, tokens))
  tokens = batch["decoder_input_tokens"]
  cache = init_decode_cache(model, variables, encoded, 3, TOKENS)
  outputs = []
  for t in range(TOKENS):
    out, cache = step(cache, encoded, tokens[:, t:t + 1])
    outputs.append(out)
  np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), logits, atol=ATOL)
  # A prefill of 4 tokens, then single steps, gives the same logits.
  cache = init_decode_cache(model, variables, encoded, 3, TOKENS)
  first, cache = step(cache, encoded, tokens[:, :4])
  np.testing.assert_allclose(first, logits[:, :4], atol=ATOL)
  nxt, _ = step(cache, encoded, tokens[:, 4:5])
  np.testing.assert_allclose(nxt[:, 0], logits[:, 4], atol=ATOL)
  # Cross-attention keys/values come from the first cached call and are reused: later calls
  # do not look at the encodings again.
  other = encoded.replace(encodings={f: jnp.ones_like(x) for f, x in encoded.encodings.items()})
  reused, _ = step(cache, other, tokens[:, 4:5])
  np.testing.assert_allclose(reused, nxt, atol=ATOL)


def test_single_compilation_and_finite_gradients(setup):
  cfg, model, batch, variables, _, _ = setup
  traces = []

  def loss_fn(params, batch):
    traces.append(1)  # runs only while tracing
    logits = model.apply({"params": params}, batch)
    targets = batch["decoder_target_tokens"]
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    weights = (targets != 0).astype(jnp.float32)
    return (losses * weights).sum() / weights.sum()

  grad_fn = jax.jit(jax.value_and_grad(loss_fn))
  loss, grads = grad_fn(variables["params"], batch)
  other = random_batch(cfg, [20, 24, 9], [4, 10, 7], FRAMES, TOKENS, seed=1)
  loss2, grads2 = grad_fn(variables["params"], other)
  assert len(traces) == 1
  for value, g in ((loss, grads), (loss2, grads2)):
    assert bool(jnp.isfinite(value))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(g))
  # Every parameter gets a gradient (no dead blocks as in the reference).
  flat = flatten_dict(grads)
  dead = [k for k, g in flat.items() if float(jnp.abs(g).max()) == 0.0]
  assert not dead, dead


def test_intermediates_only_when_requested(setup):
  _, model, batch, variables, _, logits = setup
  plain = jax.eval_shape(model.apply, variables, batch)
  assert isinstance(plain, jax.ShapeDtypeStruct)  # no collection unless asked for
  out, state = jax.jit(functools.partial(model.apply, mutable=["intermediates"]))(variables, batch)
  np.testing.assert_allclose(out, logits, atol=ATOL)
  names = {"/".join(k) for k in flatten_dict(state["intermediates"])}
  for name in ("rotary_theta", "encoder/blocks_spectrogram_0/attna/attention_output",
               "encoder/blocks_spectrogram_0/mlp_activation",
               "encoder/blocks_spectrogram_0/gate_activation",
               "encoder/blocks_spectrogram_0/residual_output",
               "decoder/_blocks_0/attna/attention_output",
               "decoder/blocks_spectrogram_0/attnb/attention_output",
               "decoder/final_output"):
    assert name in names, (name, sorted(names))
  theta = state["intermediates"]["rotary_theta"][0]
  assert theta.shape == (3,)
  gate = state["intermediates"]["decoder"]["_blocks_0"]["gate_activation"][0]
  assert gate.shape == (3, TOKENS, 1)


def test_parameter_names_follow_reference(setup):
  _, _, _, variables, _, _ = setup
  names = {"/".join(k) for k in flatten_dict(variables["params"])}
  for name in ("encoder/frontend_spectrogram/conv1/kernel",
               "encoder/blocks_spectrogram_0/attna/q/kernel",
               "encoder/blocks_spectrogram_0/lna/scale", "encoder/blocks_spectrogram_0/lnc/scale",
               "encoder/blocks_spectrogram_0/mlp/fc1/kernel",
               "encoder/blocks_spectrogram_0/mlp_gate/kernel",
               "decoder/_blocks_0/attna/o/bias", "decoder/_blocks_0/lna/scale",
               "decoder/blocks_spectrogram_0/attnb/k/kernel",
               "decoder/blocks_spectrogram_0/lnb/scale", "decoder/blocks_spectrogram_0/blend",
               "decoder/blend_spectrogram", "decoder/ln_dec/scale",
               "decoder/token_embedding/embedding", "decoder/positional_embedding"):
    assert name in names, name
  # k has no bias; the encoder and _blocks have no (dead) cross-attention.
  assert not any(n.endswith("/k/bias") for n in names)
  assert not any("attnb" in n for n in names if n.startswith(("encoder/", "decoder/_blocks")))


def test_base_parameter_count():
  """configs/base.py at vocab 40000 and text_ctx 512 is the spec's cleaned port (~64.3M).

  Spec §6: the reference has 72,677,937 trainable parameters; the cleaned port drops the dead
  attnb + lnb + blend of the 4 encoder and 4 _blocks residuals (8 x (1,050,113 + 512 + 1)), the
  fzero scalars of the 16 remaining attentions and the unused FEncoder.norm (512).
  """
  cfg = base_config.get_config().model
  cfg.vocab_size = 40000
  cfg.text_ctx = 512
  cleaned = 72_677_937 - 8 * (1_050_113 + 512 + 1) - 16 - 512
  assert cleaned == 64_272_401
  assert expected_param_count(cfg) == cleaned
  model = EchoModel(cfg)
  batch = random_batch(cfg, [16], [4], 16, 4)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
  assert count_params(shapes["params"]) == cleaned
  # The shipped base config (text_ctx 448) agrees with its analytic count too.
  cfg.text_ctx = 448
  shapes = jax.eval_shape(EchoModel(cfg).init, jax.random.PRNGKey(0), batch)
  assert count_params(shapes["params"]) == expected_param_count(cfg) == cleaned - 64 * 512


def test_initialisation_follows_spec(setup):
  cfg, _, _, variables, _, _ = setup
  p = variables["params"]
  embedding = np.asarray(p["decoder"]["token_embedding"]["embedding"])
  assert np.all(embedding[0] == 0)
  assert abs(embedding[1:].std() - cfg.d_model ** -0.5) < 0.03
  assert abs(float(np.std(p["decoder"]["positional_embedding"])) - 0.02) < 0.004
  conv = p["encoder"]["frontend_spectrogram"]["conv2"]
  assert abs(float(np.std(conv["kernel"])) - 0.02) < 0.003 and np.all(conv["bias"] == 0)
  q = p["encoder"]["blocks_spectrogram_0"]["attna"]["q"]
  bound = np.sqrt(6.0 / (2 * cfg.d_model))  # xavier uniform
  assert np.abs(q["kernel"]).max() <= bound and np.abs(q["kernel"]).max() > 0.8 * bound
  assert np.all(q["bias"] == 0)
  assert np.all(p["decoder"]["ln_dec"]["scale"] == 1)
  assert float(p["decoder"]["blend_spectrogram"]) == 0.5
  assert float(p["decoder"]["blocks_spectrogram_0"]["blend"]) == 0.5
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(p))


@pytest.mark.parametrize("field,value,message", [
    ("vocab_size", -1, "vocab_size"),
    ("vocab_size", 3, "vocab_size"),
    ("d_model", 33, "divisible by num_heads"),
    ("num_heads", 4, "even"),  # 36 / 4 = 9: odd head dim
    ("features", ("spectrogram", "mfcc"), "unknown feature 'mfcc'"),
    ("features", (), "features"),
    ("theta_mode", "dafc", "theta_mode"),
    ("radius_mode", "on", "radius_mode"),
    ("f0_mean_mode", "voiced", "f0_mean_mode"),
    ("fzero", "faithful", "fzero"),
    ("encoder_act", "mish", "encoder_act"),
    ("dtype", "float16", "dtype"),
    ("spectrogram_downsample", 3, "spectrogram_downsample"),
    ("pitch_downsample", 8, "pitch_downsample"),
    ("embed_init", "xavier", "embed_init"),
    ("theta", 0.0, "theta"),
    ("dropout_rate", 1.0, "dropout_rate"),
])
def test_invalid_configs_name_the_field(field, value, message):
  cfg = tiny_model_config()
  if field == "num_heads":
    cfg.d_model = 36
  setattr(cfg, field, value)
  with pytest.raises(ValueError, match=message) as err:
    validate_model_config(cfg)
  assert f"config.model.{field}" in str(err.value)
  with pytest.raises(ValueError, match=message):
    EchoModel(cfg).init(jax.random.PRNGKey(0), {})


def test_valid_default_configs():
  for cfg in (tiny_model_config(), base_config.get_config().model):
    cfg.vocab_size = max(cfg.vocab_size, 100)
    settings = validate_model_config(cfg)
    assert settings.head_dim * settings.num_heads == settings.d_model
