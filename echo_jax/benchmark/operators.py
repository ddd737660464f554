"""Micro-benchmarks of the rewritten operators against what they replaced, at the run's shape:
the attention core (fwd+bwd, and forward alone for the head-blocked form), the rotary cos/sin and
the front-end's depthwise convolution (fwd+bwd)."""

from typing import Dict

import jax
import jax.numpy as jnp
from flax import linen as nn

from echo_jax.benchmark.measure import alternating_best
from echo_jax.models import head_blocked_attention as head_blocks
from echo_jax.models import rotary as rotary_lib
from echo_jax.models.attention import MASK_BIAS
from echo_jax.models.layers import DepthwiseConv1D, PatchConv2D
from echo_jax.models.softmax_attention import softmax_attention


def bench_attention_core(batch: int, frames: int, heads: int, d_model: int,
                         repeats: int = 5) -> Dict[str, float]:
  """fwd+bwd seconds of one self-attention core over `frames` keys with key padding: the earlier
  formulation (select-masked logits, jax.nn.softmax, autodiff), the same with the mask as an
  additive bias, models.softmax_attention (bias, hand-written gradient) and the head-blocked form
  (models/head_blocked_attention.py, whatever the size threshold); then the forward alone (what
  inference runs) of the last two."""
  head_dim = d_model // heads
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  q, k, v, cotangent = (jax.random.normal(key, (batch, frames, heads, head_dim), jnp.float32)
                        for key in keys)
  lengths = jnp.maximum(frames - jnp.arange(batch) * (frames // 8), 1)
  mask = (jnp.arange(frames)[None, :] < lengths[:, None])[:, None, None, :]
  bias = jnp.where(mask, 0.0, MASK_BIAS).astype(jnp.float32)

  def softmax_core(q, k, v, masked_logits):
    logits = masked_logits(jnp.einsum("bqhd,bkhd->bhqk", q, k))
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)

  variants = {
      "select_mask_autodiff": lambda q, k, v: softmax_core(
          q, k, v, lambda x: jnp.where(mask, x, jnp.finfo(jnp.float32).min)),
      "bias_mask_autodiff": lambda q, k, v: softmax_core(q, k, v, lambda x: x + bias),
      "softmax_attention": lambda q, k, v: softmax_attention(q, k, v, bias),
      "head_blocked_attention": lambda q, k, v: head_blocks.head_blocked_attention(
          q, k, v, bias, head_blocks.query_chunk(batch, frames, frames), False),
  }
  grads, calls = {}, {}
  for name, fn in variants.items():
    grad = jax.jit(jax.grad(lambda q, k, v, fn=fn: jnp.sum(fn(q, k, v) * cotangent),
                            argnums=(0, 1, 2)))
    grads[name] = jax.block_until_ready(grad(q, k, v))
    calls[name] = lambda g=grad: jax.block_until_ready(g(q, k, v))
  out = {f"{name}_s": t for name, t in alternating_best(calls, repeats).items()}
  out["speedup_vs_select_mask"] = out["select_mask_autodiff_s"] / out["softmax_attention_s"]
  out["head_blocked_speedup"] = out["softmax_attention_s"] / out["head_blocked_attention_s"]
  out["max_abs_gradient_difference"] = float(max(
      jnp.max(jnp.abs(a - b)) for name in ("softmax_attention", "head_blocked_attention")
      for a, b in zip(grads["select_mask_autodiff"], grads[name])))
  forwards = {}
  for name in ("softmax_attention", "head_blocked_attention"):
    forward = jax.jit(variants[name])
    jax.block_until_ready(forward(q, k, v))
    forwards[name] = lambda f=forward: jax.block_until_ready(f(q, k, v))
  for name, seconds in alternating_best(forwards, repeats).items():
    out[f"forward_{name}_s"] = seconds
  out["head_blocked_forward_speedup"] = (out["forward_softmax_attention_s"] /
                                         out["forward_head_blocked_attention_s"])
  return out


def bench_rotary(batch: int, frames: int, heads: int, d_model: int, rotations: int = 4,
                 repeats: int = 5) -> Dict[str, float]:
  """fwd+bwd seconds of `rotations` rotations (q and k of two layers) sharing one stream's
  angles: cos/sin evaluated from the angles at each rotation (which XLA fuses into it, per head)
  vs models.rotary's cos/sin materialised once."""
  head_dim = d_model // heads
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, frames, heads, head_dim), jnp.float32)
  theta = jnp.linspace(9000.0, 12000.0, batch)

  def rotate_all(x, theta, once):
    inv_freq = rotary_lib.inverse_frequencies(theta, head_dim, "seed")[:, None, :]
    if once:
      rotary = rotary_lib.make_rotary(jnp.arange(frames), inv_freq)
      rotary_of = lambda: rotary  # noqa: E731
    else:
      angles = jnp.arange(frames, dtype=jnp.float32)[None, :, None] * inv_freq
      rotary_of = lambda: rotary_lib.Rotary(cos=jnp.cos(angles), sin=jnp.sin(angles))  # noqa: E731
    return sum(jnp.sum(rotary_lib.apply_rotary(x * (i + 1), rotary_of()) ** 2)
               for i in range(rotations))

  calls = {}
  for name, once in (("per_rotation", False), ("once_per_stream", True)):
    grad = jax.jit(jax.grad(lambda x, theta, once=once: rotate_all(x, theta, once)))
    jax.block_until_ready(grad(x, theta))
    calls[name] = lambda g=grad: jax.block_until_ready(g(x, theta))
  out = {f"{name}_s": t for name, t in alternating_best(calls, repeats).items()}
  out["speedup"] = out["per_rotation_s"] / out["once_per_stream_s"]
  return out


def race_modules(modules: Dict[str, nn.Module], params, x: jax.Array, repeats: int
                 ) -> Dict[str, float]:
  """fwd+bwd best seconds of two modules computing the same function with the same parameters
  (`{name}_s`, calls interleaved), the largest difference of their outputs and speedup = first's
  time / second's (the module replaced over its replacement)."""
  calls = {}
  for name, module in modules.items():
    grad = jax.jit(jax.grad(lambda p, x, m=module: jnp.sum(m.apply(p, x) ** 2), argnums=(0, 1)))
    jax.block_until_ready(grad(params, x))
    calls[name] = lambda g=grad: jax.block_until_ready(g(params, x))
  out = {f"{name}_s": t for name, t in alternating_best(calls, repeats).items()}
  old, new = modules.values()
  out["max_abs_difference"] = float(jnp.max(jnp.abs(old.apply(params, x) - new.apply(params, x))))
  old_name, new_name = modules
  out["speedup"] = out[f"{old_name}_s"] / out[f"{new_name}_s"]
  return out


def bench_depthwise(batch: int, frames: int, channels: int, kernel: int = 3,
                    repeats: int = 5) -> Dict[str, float]:
  """fwd+bwd seconds of the front-end's depthwise conv as a grouped convolution
  (feature_group_count = channels) vs the model's layers.DepthwiseConv1D (shifted multiply-adds,
  identical values)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, frames, channels), jnp.float32)
  init = nn.initializers.normal(1.0)
  shifted = DepthwiseConv1D(channels, kernel, jnp.float32, init, init)
  params = shifted.init(jax.random.PRNGKey(1), x)
  grouped = nn.Conv(channels, kernel_size=(kernel,), padding=((kernel // 2, kernel // 2),),
                    feature_group_count=channels)
  return race_modules({"grouped_conv": grouped, "shifted_sum": shifted}, params, x, repeats)


def bench_patch_conv2d(batch: int, frames: int, mels: int, channels: int, repeats: int = 5
                       ) -> Dict[str, float]:
  """fwd+bwd seconds of the conv2d front-end's two 3x3 convs (1 -> channels, channels ->
  channels, strides (2, 2) each) as XLA convolutions (nn.Conv) vs the model's
  layers.PatchConv2D (patches @ flattened kernel, identical values)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, frames, mels, 1), jnp.float32)
  init = nn.initializers.normal(0.3)

  def stack(make):
    class TwoConvs(nn.Module):
      @nn.compact
      def __call__(self, x):
        for i in range(2):
          x = jax.nn.gelu(make(f"conv{i + 1}")(x))
        return x
    return TwoConvs()

  modules = {
      "xla_conv": stack(lambda name: nn.Conv(channels, (3, 3), strides=(2, 2),
                                             padding=((1, 1), (1, 1)), kernel_init=init,
                                             bias_init=init, name=name)),
      "patch_matmul": stack(lambda name: PatchConv2D(channels, (3, 3), (2, 2), jnp.float32, init,
                                                     init, name=name)),
  }
  params = modules["patch_matmul"].init(jax.random.PRNGKey(1), x)
  return race_modules(modules, params, x, repeats)


MATMUL_ORIENTATIONS = {
    # name: (lhs, rhs) index spec of a layer's three products, x [M, K] @ w [K, N]
    "forward": "mk,kn->mn",  # x w
    "input_gradient": "mn,kn->mk",  # g w^T
    "weight_gradient": "mk,mn->kn",  # x^T g
}
MATMUL_DTYPES = {
    # name: (operand dtype, accumulation dtype given to XLA)
    "float32": (jnp.float32, jnp.float32),
    "bfloat16_accumulating_bfloat16": (jnp.bfloat16, jnp.bfloat16),
    "bfloat16_accumulating_float32": (jnp.bfloat16, jnp.float32),
}


def bench_matmul_dtypes(rows: int, inner: int, cols: int, repeats: int = 7
                        ) -> Dict[str, Dict[str, float]]:
  """GFLOP/s of a dense layer's three products (forward, input and weight gradient) at
  x [rows, inner] @ w [inner, cols] in float32 and in bfloat16 accumulating in bfloat16 or in
  float32 (what models.layers.dense does below float32): which forms a backend runs natively in
  bfloat16 and which it upcasts (docs/performance.md, "bfloat16 on this CPU")."""
  shapes = {"m": rows, "k": inner, "n": cols}
  flops = 2.0 * rows * inner * cols
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  calls = {}
  for orientation, spec in MATMUL_ORIENTATIONS.items():
    lhs_spec, rhs_spec = spec.split("->")[0].split(",")
    for dtype_name, (dtype, accumulation) in MATMUL_DTYPES.items():
      lhs = jax.random.normal(keys[0], tuple(shapes[c] for c in lhs_spec), dtype)
      rhs = jax.random.normal(keys[1], tuple(shapes[c] for c in rhs_spec), dtype)
      fn = jax.jit(lambda a, b, spec=spec, acc=accumulation: jnp.einsum(
          spec, a, b, preferred_element_type=acc))
      jax.block_until_ready(fn(lhs, rhs))
      calls[f"{orientation}/{dtype_name}"] = (
          lambda fn=fn, lhs=lhs, rhs=rhs: jax.block_until_ready(fn(lhs, rhs)))
  best = alternating_best(calls, repeats)
  out: Dict[str, Dict[str, float]] = {}
  for name, seconds in best.items():
    orientation, dtype_name = name.split("/")
    out.setdefault(orientation, {})[dtype_name] = flops / seconds / 1e9
  for rates in out.values():
    rates["bfloat16_float32_accumulation_speedup"] = (rates["bfloat16_accumulating_float32"] /
                                                      rates["float32"])
  out["shape"] = {"rows": rows, "inner": inner, "cols": cols}
  return out
