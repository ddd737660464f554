"""softmax(q.k + bias) v with a hand-written gradient that never materialises more [B, H, Tq, Tk]
tensors than it must.

Autodiff of the plain expression stores the normalised weights, divides the whole [Tq, Tk] block
by the row sums, broadcasts the row sums back to [Tq, Tk] and reduces (dW * W) over the keys in the
backward pass. Here the forward keeps p = exp(s - max) unnormalised and divides the [Tq, hd] output
instead; the backward uses the flash-attention identity
    rowsum(dW * W) = rowsum(dout * out)          (an [Tq, hd] reduction, not [Tq, Tk])
so the only [Tq, Tk] work left is the contractions and one elementwise pass. Side by side with the
earlier select-masked autodiff formulation it is 1.0-1.15x faster forward + backward at the
benchmark shapes (`benchmark --profile`, `attention_core`; docs/performance.md); the values are
the plain expression's to float32 rounding (tests/test_fast_paths.py).

Logits, p and the softmax statistics are float32; q, k, v and the contractions keep their dtype
(bfloat16 compute stays bfloat16 in the matmuls, as in the plain path).
"""

from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from echo_jax.models.layers import outside_fusion


def attention_logits(q, k, bias):
  """q.k (+ bias) as float32 [B, H, Tq, Tk]."""
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
  return logits if bias is None else logits + bias


def attention_forward(q, k, v, bias):
  """(out float32 [B, Tq, H, hd], p = exp(logits - row max) [B, H, Tq, Tk], row max [B, H, Tq, 1],
  inverse row sum [B, Tq, H, 1])."""
  logits = attention_logits(q, k, bias)
  # Kept out of the q.k contraction's fusion: XLA:CPU fused the reduction into the contraction,
  # which then ran ~2x slower than the contraction alone.
  row_max = outside_fusion(lambda x: jnp.max(x, axis=-1, keepdims=True), logits)
  p = jnp.exp(logits - row_max)
  inv_sum = (1.0 / jnp.sum(p, axis=-1)).transpose(0, 2, 1)[..., None]  # [B, Tq, H, 1]
  out = jnp.einsum("bhqk,bkhd->bqhd", p.astype(v.dtype), v,
                   preferred_element_type=jnp.float32) * inv_sum
  return out, p, row_max, inv_sum


def output_gradient(dout, inv_sum, out):
  """(g, rowsum(g * out)) with g = dout * inv_sum: the gradient of the unnormalised p v, and the
  per-row term of the softmax gradient, [B, Tq, H, hd] and [B, Tq, H, 1] float32."""
  g = dout.astype(jnp.float32) * inv_sum
  return g, jnp.sum(g * out, axis=-1, keepdims=True)


def gradients_from(q, k, v, p, g, row_dot):
  """(dlogits, dq, dk, dv), float32, from p and output_gradient's g and row_dot.

  out = (p v) * inv_sum, so d(p v) = dout * inv_sum; with W = p * inv_sum,
  dlogits = W * (dW - rowsum(dW * W)) = p * (g v^T - rowsum(g * out)),  g = dout * inv_sum."""
  g_v = jnp.einsum("bqhd,bkhd->bhqk", g.astype(v.dtype), v, preferred_element_type=jnp.float32)
  dlogits = p * (g_v - row_dot.transpose(0, 2, 1, 3))
  d_q = jnp.einsum("bhqk,bkhd->bqhd", dlogits.astype(k.dtype), k,
                   preferred_element_type=jnp.float32)
  d_k = jnp.einsum("bhqk,bqhd->bkhd", dlogits.astype(q.dtype), q,
                   preferred_element_type=jnp.float32)
  d_v = jnp.einsum("bhqk,bqhd->bkhd", p.astype(v.dtype), g.astype(v.dtype),
                   preferred_element_type=jnp.float32)
  return dlogits, d_q, d_k, d_v


def attention_gradients(q, k, v, p, inv_sum, out, dout):
  """(dlogits, dq, dk, dv), float32, from the forward pass's p, inverse row sum and output."""
  return gradients_from(q, k, v, p, *output_gradient(dout, inv_sum, out))


@jax.custom_vjp
def softmax_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                      bias: Optional[jax.Array]) -> jax.Array:
  """q [B, Tq, H, hd], k and v [B, Tk, H, hd], bias float32 broadcastable to [B, H, Tq, Tk] (or
  None) -> [B, Tq, H, hd] in v's dtype. Masks belong in `bias` as large negative values."""
  return attention_forward(q, k, v, bias)[0].astype(v.dtype)


def _softmax_attention_fwd(q, k, v, bias):
  out, p, _, inv_sum = attention_forward(q, k, v, bias)
  return out.astype(v.dtype), (q, k, v, bias, p, inv_sum, out)


def sum_to_shape(x: jax.Array, shape: Tuple[int, ...]) -> jax.Array:
  """Sums x over the axes that were broadcast to reach its shape from `shape`."""
  axes = tuple(i for i, (n, m) in enumerate(zip(shape, x.shape)) if n == 1 and m != 1)
  return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def pad_rows(x: jax.Array, axis: int, rows: int) -> jax.Array:
  """x with `rows` zero rows appended along `axis` (the blocked forms pad queries to whole
  blocks)."""
  if rows == 0:
    return x
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, rows)
  return jnp.pad(x, pad)


def is_row_bias(bias: Optional[jax.Array]) -> bool:
  """Whether a [B|1, H|1, Tq|1, Tk] bias varies along the query axis (then the blocked forms
  split it into blocks with the queries)."""
  return bias is not None and bias.shape[2] != 1


def _softmax_attention_bwd(residuals, dout):
  q, k, v, bias, p, inv_sum, out = residuals
  dlogits, d_q, d_k, d_v = attention_gradients(q, k, v, p, inv_sum, out, dout)
  d_bias = None if bias is None else sum_to_shape(dlogits, bias.shape)
  return d_q.astype(q.dtype), d_k.astype(k.dtype), d_v.astype(v.dtype), d_bias


softmax_attention.defvjp(_softmax_attention_fwd, _softmax_attention_bwd)
