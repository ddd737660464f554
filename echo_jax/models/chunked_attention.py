"""softmax(q.k + bias) v over blocks of queries, storing no [Tq, Tk] tensor for the backward pass.

models.softmax_attention keeps the [B, H, Tq, Tk] probabilities from the forward pass for the
backward one; at the seed shape (1,500 encoder frames, no downsampling) those buffers dominate the
train step's memory (docs/performance.md, "Memory at the seed shape"). This version runs the
queries in blocks of `chunk` rows, saves only the output and two softmax statistics per query row
(row max and inverse row sum), and recomputes each block's logits in the backward pass, so the
live [Tq, Tk] data is one block of [chunk, Tk] at a time: the memory of the flash-attention
algorithm at the price of one more q.k contraction per block in the backward pass. The forward
and gradient formulas per block are models.softmax_attention's.

The values and gradients are those of the unchunked path (to float32 rounding,
tests/test_fast_paths.py); `model.attention_query_chunk` selects it (0: off).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from echo_jax.models.softmax_attention import (attention_forward, attention_gradients,
                                                attention_logits, is_row_bias, pad_rows,
                                                sum_to_shape)


def _blocks(x: jax.Array, axis: int, chunk: int) -> jax.Array:
  """x with `axis` (a multiple of chunk long) split into [n_blocks, ..., chunk, ...]."""
  n = x.shape[axis] // chunk
  x = x.reshape(x.shape[:axis] + (n, chunk) + x.shape[axis + 1:])
  return jnp.moveaxis(x, axis, 0)


def _unblocks(x: jax.Array, axis: int) -> jax.Array:
  """Inverse of _blocks: [n_blocks, ..., chunk, ...] -> [..., n_blocks * chunk, ...]."""
  x = jnp.moveaxis(x, 0, axis)
  return x.reshape(x.shape[:axis] + (x.shape[axis] * x.shape[axis + 1],) + x.shape[axis + 2:])


def _padded(q, bias, chunk):
  tq = q.shape[1]
  extra = -tq % chunk
  q = pad_rows(q, 1, extra)
  if is_row_bias(bias):
    bias = pad_rows(bias, 2, extra)
  return q, bias, tq


def _forward(q, k, v, bias, chunk):
  q, bias, tq = _padded(q, bias, chunk)
  row_bias = is_row_bias(bias)

  def block(args):
    q_block, bias_block = args if row_bias else (args, bias)
    out, _, row_max, inv_sum = attention_forward(q_block, k, v, bias_block)
    return out, row_max, inv_sum

  xs = (_blocks(q, 1, chunk), _blocks(bias, 2, chunk)) if row_bias else _blocks(q, 1, chunk)
  out, row_max, inv_sum = jax.lax.map(block, xs)
  return (_unblocks(out, 1)[:, :tq], _unblocks(row_max, 2)[:, :, :tq],
          _unblocks(inv_sum, 1)[:, :tq])


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def chunked_softmax_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                              bias: Optional[jax.Array], chunk: int) -> jax.Array:
  """q [B, Tq, H, hd], k and v [B, Tk, H, hd], bias float32 broadcastable to [B, H, Tq, Tk] (or
  None) -> [B, Tq, H, hd] in v's dtype, computed `chunk` query rows at a time."""
  return _forward(q, k, v, bias, chunk)[0].astype(v.dtype)


def _fwd(q, k, v, bias, chunk):
  out, row_max, inv_sum = _forward(q, k, v, bias, chunk)
  return out.astype(v.dtype), (q, k, v, bias, out, row_max, inv_sum)


def _bwd(chunk, residuals, dout):
  q, k, v, bias, out, row_max, inv_sum = residuals
  q, bias_rows, tq = _padded(q, bias, chunk)
  row_bias = is_row_bias(bias)
  extra = q.shape[1] - tq
  dout = pad_rows(dout, 1, extra)
  out = pad_rows(out, 1, extra)
  # Padded rows: max 0 and inverse sum 0 make their probabilities 0, so they add nothing.
  row_max = pad_rows(row_max, 2, extra)
  inv_sum = pad_rows(inv_sum, 1, extra)
  bias_template = None if bias is None else (
      bias.shape[:2] + (chunk,) + bias.shape[3:] if row_bias else bias.shape)

  def block(carry, xs):
    d_k, d_v, d_bias_acc = carry
    q_b, dout_b, out_b, max_b, inv_b, bias_b = xs
    if not row_bias:
      bias_b = bias_rows
    p = jnp.exp(attention_logits(q_b, k, bias_b) - max_b)  # the forward pass's p, recomputed
    dlogits, d_q, d_k_b, d_v_b = attention_gradients(q_b, k, v, p, inv_b, out_b, dout_b)
    d_bias = None
    if bias is not None:
      d_bias = sum_to_shape(dlogits, bias_template)
      if not row_bias:
        d_bias_acc, d_bias = d_bias_acc + d_bias, None
    return (d_k + d_k_b, d_v + d_v_b, d_bias_acc), (d_q, d_bias)

  zeros = jnp.zeros(k.shape, jnp.float32)
  acc = jnp.zeros(bias.shape, jnp.float32) if bias is not None and not row_bias else None
  xs = (_blocks(q, 1, chunk), _blocks(dout, 1, chunk), _blocks(out, 1, chunk),
        _blocks(row_max, 2, chunk), _blocks(inv_sum, 1, chunk),
        _blocks(bias_rows, 2, chunk) if row_bias else None)
  (d_k, d_v, d_bias_acc), (d_q, d_bias) = jax.lax.scan(block, (zeros, zeros, acc), xs)
  d_q = _unblocks(d_q, 1)[:, :tq].astype(q.dtype)
  if bias is None:
    d_bias = None
  elif row_bias:
    d_bias = _unblocks(d_bias, 2)[:, :, :tq].astype(bias.dtype)
  else:
    d_bias = d_bias_acc.astype(bias.dtype)
  return d_q, d_k.astype(k.dtype), d_v.astype(v.dtype), d_bias


chunked_softmax_attention.defvjp(_fwd, _bwd)
