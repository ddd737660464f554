"""The model's speed-motivated rewrites equal the operators they replace: the custom-gradient
softmax attention vs autodiff of softmax(q.k + bias) v, its query-chunked and head-blocked
forms vs the whole-tensor one, the depthwise conv as shifted multiply-adds
(with its hand-written gradient) vs nn.Conv with feature_group_count, the erf GELU vs
jax.nn.gelu, the whole model's two attention paths, and the bfloat16
matmuls accumulating in float32 (dense layers, decoding with its matrices cast once)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn

from echo_jax.inference import decoding
from echo_jax.models import EchoModel
from echo_jax.models.attention import MASK_BIAS
from echo_jax.models.config import model_settings
from echo_jax.models.chunked_attention import chunked_softmax_attention
from echo_jax.models import head_blocked_attention as head_blocks
from echo_jax.models.layers import (DepthwiseConv1D, PatchConv2D, activation, conv, dense,
                                    is_depthwise)
from echo_jax.models.softmax_attention import softmax_attention
from echo_jax.models.testing import random_batch, tiny_model_config


def _plain_attention(q, k, v, bias):
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) + bias
  weights = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)


def _inputs(batch=2, q_len=7, k_len=9, heads=3, head_dim=8, bias_shape="pitch", seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 5)
  q = jax.random.normal(keys[0], (batch, q_len, heads, head_dim))
  k = jax.random.normal(keys[1], (batch, k_len, heads, head_dim))
  v = jax.random.normal(keys[2], (batch, k_len, heads, head_dim))
  valid = jnp.arange(k_len)[None, :] < jnp.array([k_len, k_len - 4])[:batch, None]
  mask_bias = jnp.where(valid, 0.0, MASK_BIAS)[:, None, None, :]
  if bias_shape == "pitch":  # a differentiable [B, 1, Tq, Tk] term plus the mask
    bias = jax.random.uniform(keys[3], (batch, 1, q_len, k_len)) + mask_bias
  else:
    bias = mask_bias
  return q, k, v, bias, jax.random.normal(keys[4], (batch, q_len, heads, head_dim))


@pytest.mark.parametrize("bias_shape", ["pitch", "mask_only"])
def test_softmax_attention_values_and_gradients_equal_autodiff(bias_shape):
  q, k, v, bias, cotangent = _inputs(bias_shape=bias_shape)

  def loss(fn, q, k, v, bias):
    return jnp.sum(fn(q, k, v, bias) * cotangent)

  np.testing.assert_allclose(softmax_attention(q, k, v, bias), _plain_attention(q, k, v, bias),
                             atol=1e-5)
  ours = jax.grad(loss, argnums=(1, 2, 3, 4))(softmax_attention, q, k, v, bias)
  reference = jax.grad(loss, argnums=(1, 2, 3, 4))(_plain_attention, q, k, v, bias)
  for name, a, b in zip(("dq", "dk", "dv", "dbias"), ours, reference):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, atol=2e-5, err_msg=name)
  # Padding keys get exactly zero weight: their values never reach the output or its gradient.
  d_v = ours[2]
  assert float(jnp.max(jnp.abs(d_v[1, -4:]))) == 0.0


def test_softmax_attention_keeps_bfloat16_and_matches_float32():
  q, k, v, bias, cotangent = _inputs(bias_shape="mask_only", seed=1)
  low = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  out = softmax_attention(*low, bias)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(out.astype(jnp.float32), softmax_attention(q, k, v, bias),
                             atol=5e-2)
  grads = jax.grad(lambda q, k, v: jnp.sum(softmax_attention(q, k, v, bias).astype(jnp.float32)
                                           * cotangent), argnums=(0, 1, 2))(*low)
  assert all(g.dtype == jnp.bfloat16 for g in grads)


# 7 queries: blocks of 3 (the last one padded), of 4, and one block of 7.
@pytest.mark.parametrize("chunk,bias_shape", [(3, "pitch"), (4, "mask_only"), (7, "pitch")])
def test_chunked_attention_values_and_gradients_equal_the_unchunked_path(bias_shape, chunk):
  q, k, v, bias, cotangent = _inputs(bias_shape=bias_shape, seed=2)
  # One query row whose every key is masked: both paths give it uniform weights.
  if bias_shape == "pitch":
    bias = bias.at[0, 0, 2].set(MASK_BIAS)

  def loss(fn, q, k, v, bias):
    return jnp.sum(fn(q, k, v, bias) * cotangent)

  chunked = functools.partial(chunked_softmax_attention, chunk=chunk)
  np.testing.assert_allclose(chunked(q, k, v, bias), softmax_attention(q, k, v, bias), atol=1e-5)
  ours = jax.grad(loss, argnums=(1, 2, 3, 4))(chunked, q, k, v, bias)
  reference = jax.grad(loss, argnums=(1, 2, 3, 4))(softmax_attention, q, k, v, bias)
  for name, a, b in zip(("dq", "dk", "dv", "dbias"), ours, reference):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, atol=2e-5, err_msg=name)


def test_chunked_attention_stores_no_query_by_key_tensor_for_the_backward_pass():
  """What the forward pass saves for the backward one: the unchunked path keeps the [B, H, Tq,
  Tk] probabilities, the chunked one only [B, Tq, H, hd], [B, H, Tq, 1] and [B, Tq, H, 1]
  arrays (and the inputs)."""
  q, k, v, bias, _ = _inputs(q_len=12, k_len=40, bias_shape="mask_only")
  full_shape = (q.shape[0], q.shape[2], q.shape[1], k.shape[1])

  def saved_shapes(fn):
    _, vjp = jax.vjp(fn, q, k, v, bias)
    return {tuple(x.shape) for x in jax.tree.leaves(vjp)}

  assert full_shape in saved_shapes(softmax_attention)
  chunked = saved_shapes(lambda q, k, v, b: chunked_softmax_attention(q, k, v, b, 4))
  assert full_shape not in chunked
  assert max(int(np.prod(s)) for s in chunked) == max(x.size for x in (q, k, v, bias))


# 7 queries: blocks of 3 (the last one padded), of 4, and one block of 7; every bias form the
# model passes (none, key mask, per-row pitch term, a causal mask shared by the batch).
@pytest.mark.parametrize("chunk,bias_shape", [(3, "pitch"), (4, "mask_only"), (7, "pitch"),
                                              (4, "none"), (3, "shared_rows")])
def test_head_blocked_attention_values_and_gradients_equal_the_whole_tensor_path(bias_shape,
                                                                                 chunk):
  q, k, v, bias, cotangent = _inputs(bias_shape=bias_shape, seed=4)
  if bias_shape == "pitch":  # a query row whose every key is masked: uniform weights in both
    bias = bias.at[0, 0, 2].set(MASK_BIAS)
  elif bias_shape == "none":
    bias = None
  elif bias_shape == "shared_rows":
    causal = jnp.arange(q.shape[1])[:, None] >= jnp.arange(k.shape[1])[None, :]
    bias = jnp.where(causal, 0.0, MASK_BIAS)[None, None]
  argnums = (1, 2, 3) if bias is None else (1, 2, 3, 4)

  def loss(fn, q, k, v, bias):
    return jnp.sum(fn(q, k, v, bias) * cotangent)

  blocked = functools.partial(head_blocks.head_blocked_attention, chunk=chunk)
  np.testing.assert_allclose(blocked(q, k, v, bias), softmax_attention(q, k, v, bias), atol=1e-5)
  ours = jax.grad(loss, argnums=argnums)(blocked, q, k, v, bias)
  reference = jax.grad(loss, argnums=argnums)(softmax_attention, q, k, v, bias)
  for name, a, b in zip(("dq", "dk", "dv", "dbias"), ours, reference):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, atol=2e-5, err_msg=name)


def test_head_blocked_attention_without_a_bias_gradient_keeps_the_others():
  """bias_gradient=False (masks: data, not parameters) skips the bias's gradient and returns
  zeros for it; the query, key and value gradients stay those of the whole-tensor path."""
  q, k, v, bias, cotangent = _inputs(bias_shape="mask_only", seed=5)

  def loss(fn, q, k, v, bias):
    return jnp.sum(fn(q, k, v, bias) * cotangent)

  blocked = lambda q, k, v, b: head_blocks.head_blocked_attention(q, k, v, b, 3, False)
  ours = jax.grad(loss, argnums=(1, 2, 3, 4))(blocked, q, k, v, bias)
  reference = jax.grad(loss, argnums=(1, 2, 3))(softmax_attention, q, k, v, bias)
  for name, a, b in zip(("dq", "dk", "dv"), ours, reference):
    np.testing.assert_allclose(a, b, atol=2e-5, err_msg=name)
  assert ours[3].shape == bias.shape and not np.any(np.asarray(ours[3]))


def test_head_blocked_attention_stores_no_query_by_key_tensor_for_the_backward_pass():
  q, k, v, bias, _ = _inputs(q_len=12, k_len=40, bias_shape="mask_only")
  _, vjp = jax.vjp(lambda q, k, v, b: head_blocks.head_blocked_attention(q, k, v, b, 4),
                   q, k, v, bias)
  saved = [x.size for x in jax.tree.leaves(vjp)]
  assert max(saved) == max(x.size for x in (q, k, v, bias))


def test_head_blocked_attention_keeps_a_data_parallel_step_sharded():
  """The blocks loop over heads and queries, never over the batch: the trainer's step on all
  devices (batch sharded on `data`) gathers nothing more than with whole-tensor attention, and
  its loss is the same."""
  from echo_jax.benchmark.train import train_setup
  from random_runs import tiny_config
  losses, gathers = {}, {}
  for above_mib in (0.0, 1e-9):  # never / every layer in blocks
    config = tiny_config()
    config.model.attention_block_above_mib = above_mib
    config.model.vocab_size = 40  # what a tokenizer would set
    _, state, step, batch = train_setup(config, 256, 16, jax.device_count(), False)
    compiled = step.lower(state, batch).compile()
    gathers[above_mib] = compiled.as_text().count("all-gather")
    losses[above_mib] = float(compiled(state, batch)[1]["loss"])
  assert jax.device_count() > 1
  assert gathers[1e-9] <= gathers[0.0]
  np.testing.assert_allclose(losses[1e-9], losses[0.0], rtol=1e-5)


@pytest.mark.parametrize("batch,q_len,k_len", [(4, 1000, 1000), (8, 1000, 1000), (2, 1500, 1500),
                                               (1, 5000, 5000), (64, 300, 4000), (4, 5, 1000)])
def test_head_blocks_are_few_cache_sized_and_cover_the_queries(batch, q_len, k_len):
  chunk = head_blocks.query_chunk(batch, q_len, k_len)
  blocks = -(-q_len // chunk)
  most = max(8, head_blocks.BLOCK_BYTES // (4 * batch * k_len))
  assert chunk == q_len or (chunk % 8 == 0 and chunk <= most + 7)
  assert blocks <= -(-q_len // most)  # no more blocks than the size bound needs
  assert blocks * chunk - q_len < 8 * blocks  # padding: under 8 rows per block


def test_head_blocks_are_chosen_by_the_logits_size_on_the_cpu():
  logits_mib = 4 * 4 * 4 * 1000 * 1000 / 2**20  # float32, batch 4, 4 heads, 1000 x 1000: 61 MiB
  assert head_blocks.pays_off(32.0, 4, 4, 1000, 1000) == (jax.default_backend() == "cpu")
  assert not head_blocks.pays_off(logits_mib * 1.01, 4, 4, 1000, 1000)
  assert not head_blocks.pays_off(0.0, 4, 4, 1000, 1000)


@pytest.mark.parametrize("kernel", [3, 15])
def test_depthwise_conv_equals_grouped_conv_in_values_and_gradients(kernel):
  channels, frames = 6, 19
  x = jax.random.normal(jax.random.PRNGKey(0), (2, frames, channels))
  init = nn.initializers.normal(1.0)
  ours = DepthwiseConv1D(channels, kernel, jnp.float32, init, init)
  grouped = nn.Conv(channels, kernel_size=(kernel,), padding=((kernel // 2, kernel // 2),),
                    feature_group_count=channels)
  params = ours.init(jax.random.PRNGKey(1), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
      jnp.shape, grouped.init(jax.random.PRNGKey(1), x))
  np.testing.assert_allclose(ours.apply(params, x), grouped.apply(params, x), atol=1e-5)
  # Padded frames: the gradient reaching the conv is exactly 0 there (the conv module masks its
  # output), the case the hand-written weight gradient's select relies on.
  valid = (jnp.arange(frames)[None, :] < jnp.array([frames, frames - 5])[:, None])[..., None]

  def loss(module, params, x):
    return jnp.sum(jnp.where(valid, jnp.sin(module.apply(params, x)), 0.0))

  for a, b in zip(jax.tree.leaves(jax.grad(loss, argnums=(1, 2))(ours, params, x)),
                  jax.tree.leaves(jax.grad(loss, argnums=(1, 2))(grouped, params, x))):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_gelu_is_the_exact_erf_gelu_in_values_and_gradients():
  x = jnp.linspace(-12.0, 12.0, 2001, dtype=jnp.float32)
  gelu = activation("gelu")
  np.testing.assert_allclose(gelu(x), jax.nn.gelu(x, approximate=False), atol=2e-6, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(jax.grad(gelu))(x),
                             jax.vmap(jax.grad(functools.partial(jax.nn.gelu,
                                                                 approximate=False)))(x),
                             atol=2e-6, rtol=1e-6)
  # and not the tanh approximation, which differs by up to ~5e-4 here
  assert float(jnp.max(jnp.abs(gelu(x) - jax.nn.gelu(x, approximate=True)))) > 1e-4
  assert gelu(jnp.ones((2,), jnp.bfloat16)).dtype == jnp.bfloat16


def test_conv_builds_the_depthwise_module_only_for_depthwise_shapes():
  settings = model_settings(tiny_model_config())
  assert isinstance(conv(8, 3, 1, "c", settings, 8, groups=8), DepthwiseConv1D)
  assert isinstance(conv(8, 3, 1, "c", settings, 8, groups=4), nn.Conv)
  assert isinstance(conv(8, 3, 2, "c", settings, 8, groups=8), nn.Conv)
  assert not is_depthwise(8, 3, 1, 4, 4) and is_depthwise(8, 5, 1, 8, 8)


def test_model_attention_paths_agree_in_logits_and_gradients():
  """MultiheadA takes the plain softmax path when attention weights are collected, the custom-
  gradient path otherwise, the query-chunked one with model.attention_query_chunk and the
  head-blocked one above model.attention_block_above_mib (here every layer); with the pitch bias
  on, all four must give the same model."""
  cfg = tiny_model_config(pitch_bias=True, pitch_bias_learned=True)
  model = EchoModel(cfg)
  chunked_model = EchoModel(tiny_model_config(pitch_bias=True, pitch_bias_learned=True,
                                              attention_query_chunk=5))
  blocked_model = EchoModel(tiny_model_config(pitch_bias=True, pitch_bias_learned=True,
                                              attention_block_above_mib=1e-9))
  batch = random_batch(cfg, [24, 15], [10, 6], 24, 10, seed=3)
  variables = model.init(jax.random.PRNGKey(0), batch)
  params = variables["params"]

  def fast(params):
    return model.apply({"params": params}, batch)

  def chunked(params):
    return chunked_model.apply({"params": params}, batch)

  def blocked(params):
    return blocked_model.apply({"params": params}, batch)

  def plain(params):
    logits, _ = model.apply({"params": params}, batch, mutable=["attention_weights"])
    return logits

  weight = jax.random.normal(jax.random.PRNGKey(1), fast(params).shape)

  def logits_and_grad(fn):
    return jax.jit(lambda p: (fn(p), jax.grad(lambda p: jnp.sum(fn(p) * weight))(p)))(params)

  logits_fast, g_fast = logits_and_grad(fast)
  flat_fast = jax.tree_util.tree_leaves_with_path(g_fast)
  for other in (plain, chunked, blocked):
    logits, grads = logits_and_grad(other)
    np.testing.assert_allclose(logits_fast, logits, atol=2e-5, err_msg=other.__name__)
    for (path, a), b in zip(flat_fast, jax.tree.leaves(grads)):
      np.testing.assert_allclose(a, b, atol=5e-5, rtol=1e-4,
                                 err_msg=f"{other.__name__} {jax.tree_util.keystr(path)}")
  scale_grads = [leaf for path, leaf in flat_fast
                 if "pitch_bias_scale" in jax.tree_util.keystr(path)]
  assert scale_grads and all(float(jnp.abs(g)) > 0 for g in scale_grads)


def test_bfloat16_dense_accumulates_in_float32():
  """Below float32 the dense matmul sums bf16 products in float32 and rounds once at the end:
  equal (to one bf16 rounding) to a float32 matmul of the bf16-rounded operands, and its HLO dot
  produces float32."""
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 512))
  layer = dense(64, "probe", jnp.bfloat16)
  params = layer.init(jax.random.PRNGKey(1), x)
  out = layer.apply(params, x)
  assert out.dtype == jnp.bfloat16
  rounded = [a.astype(jnp.bfloat16).astype(jnp.float32)
             for a in (x, params["params"]["kernel"])]
  expected = (rounded[0] @ rounded[1]).astype(jnp.bfloat16).astype(jnp.float32)
  np.testing.assert_allclose(out.astype(jnp.float32), expected, rtol=2 ** -7, atol=1e-6)
  hlo = jax.jit(layer.apply).lower(params, x).as_text()
  assert "dot_general" in hlo
  dots = [line for line in hlo.splitlines() if "dot_general" in line and "=" in line]
  assert dots and all("-> tensor<8x64xf32>" in line for line in dots), dots
  # float32 models keep the plain dot (no change to their programs).
  assert dense(64, "probe", jnp.float32).dot_general is jax.lax.dot_general


def test_bfloat16_decoding_with_matrices_cast_once_equals_the_layers_own_cast():
  """make_decode_fn casts a bfloat16 model's float matrices once per call; the layers would cast
  them to bfloat16 themselves, so tokens and greedy scores equal decoding the float32 tree."""
  cfg = tiny_model_config(dtype="bfloat16")
  model = EchoModel(cfg)
  batch = random_batch(cfg, [40, 28], [5, 3], frames=40, tokens=8)
  variables = {"params": model.init(jax.random.PRNGKey(0), batch)["params"]}
  cast = decoding.matrices_in_compute_dtype(model, variables)
  kinds = {(x.ndim >= 2, x.dtype) for x in jax.tree.leaves(cast["params"])}
  assert kinds == {(True, jnp.dtype(jnp.bfloat16)), (False, jnp.dtype(jnp.float32))}
  decode_batch = {k: v for k, v in batch.items()
                  if k not in ("decoder_input_tokens", "decoder_target_tokens")}
  plain = jax.jit(functools.partial(decoding.greedy_decode, model, max_length=8))
  np.testing.assert_array_equal(decoding.make_decode_fn(model, 8).fn(variables, decode_batch),
                                plain(variables, decode_batch))
  f32_model = EchoModel(tiny_model_config())
  assert decoding.matrices_in_compute_dtype(f32_model, variables) is variables


@pytest.mark.parametrize("in_channels,strides", [(1, (1, 2)), (3, (2, 2)), (4, (1, 1))])
def test_patch_conv2d_equals_nn_conv_in_values_and_gradients(in_channels, strides):
  """PatchConv2D (gathered patches @ flattened kernel) == nn.Conv with 'same' padding, odd and
  even sizes, same parameter tree, same values and gradients."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 10, in_channels))
  init = nn.initializers.normal(1.0)
  ours = PatchConv2D(5, (3, 3), strides, jnp.float32, init, init)
  reference = nn.Conv(5, kernel_size=(3, 3), strides=strides, padding=((1, 1), (1, 1)),
                      kernel_init=init, bias_init=init)
  params = ours.init(jax.random.PRNGKey(1), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
      jnp.shape, reference.init(jax.random.PRNGKey(1), x))
  out = ours.apply(params, x)
  assert out.shape == reference.apply(params, x).shape
  np.testing.assert_allclose(out, reference.apply(params, x), rtol=1e-5, atol=1e-5)

  def loss(module, params, x):
    return jnp.sum(jnp.sin(module.apply(params, x)))

  for a, b in zip(jax.tree.leaves(jax.grad(loss, argnums=(1, 2))(ours, params, x)),
                  jax.tree.leaves(jax.grad(loss, argnums=(1, 2))(reference, params, x))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
