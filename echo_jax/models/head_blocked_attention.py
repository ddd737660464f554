"""softmax(q.k + bias) v one head and block of queries at a time, recomputing p in the backward.

models.softmax_attention works on the whole [B, H, Tq, Tk] logits at once: at 1,000 frames each
[B, H, T, T] tensor is 16-64 MB and every elementwise pass over it (bias, max, exp, sum, the
gradient's products) streams it through main memory. Here a loop over (head, query block) keeps one
block's [B, chunk, Tk] logits (a few MB) in the CPU's last-level cache from the q.k contraction to
the p.v one; the forward pass saves only the output and two statistics per query row (row max,
inverse row sum), and the backward pass recomputes each block's logits (one more q.k contraction)
and forms its gradients while the block is still in cache. The batch axis stays inside each block,
so a batch sharded over devices stays sharded (the loop runs over heads and queries only).

The per-block formulas are models.softmax_attention's, so values and gradients equal the
whole-tensor path to float32 rounding (tests/test_fast_paths.py). It pays where the whole logits
outgrow the cache (docs/performance.md, "Attention one head and block of queries at a time");
models/attention.py decides when (`model.attention_block_above_mib`).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from echo_jax.models.softmax_attention import (attention_forward, attention_logits,
                                                gradients_from, is_row_bias, output_gradient,
                                                pad_rows, sum_to_shape)

BLOCK_BYTES = 4 * 2**20  # one block's float32 logits: well inside a CPU's last-level cache


def pays_off(above_mib: float, batch: int, heads: int, q_len: int, k_len: int) -> bool:
  """Whether a layer's attention runs in blocks: on the CPU backend, when its float32 logits
  [B, H, Tq, Tk] exceed `above_mib` MiB (0: never). Accelerators fuse the whole-tensor form and
  would only serialise the loop."""
  return (above_mib > 0 and jax.default_backend() == "cpu"
          and 4 * batch * heads * q_len * k_len > above_mib * 2**20)


def query_chunk(batch: int, q_len: int, k_len: int) -> int:
  """Queries per block: as few equal blocks as keep [B, chunk, Tk] float32 within BLOCK_BYTES,
  rounded up to a multiple of 8. B is the batch the model sees, the global one under data
  parallelism, so each device's blocks are smaller by the number of devices (never larger)."""
  most = max(8, BLOCK_BYTES // (4 * batch * k_len))
  blocks = _ceil_div(q_len, most)
  return min(q_len, _ceil_div(_ceil_div(q_len, blocks), 8) * 8)


def _ceil_div(a: int, b: int) -> int:
  return -(-a // b)


def _check_bias(bias: Optional[jax.Array]):
  if bias is not None and (bias.ndim != 4 or bias.shape[1] != 1):
    raise ValueError(f"head-blocked attention takes a bias of shape [B|1, 1, Tq|1, Tk] (the same "
                     f"for every head), got {bias.shape}")


def _query_blocks(x: jax.Array, chunk: int) -> jax.Array:
  """[B, Tq, H, hd] (Tq a multiple of chunk) -> [H, n, B, chunk, 1, hd]."""
  b, t, h, d = x.shape
  return x.reshape(b, t // chunk, chunk, h, 1, d).transpose(3, 1, 0, 2, 4, 5)


def _from_query_blocks(x: jax.Array) -> jax.Array:
  """Inverse of _query_blocks."""
  h, n, b, chunk, _, d = x.shape
  return x[:, :, :, :, 0].transpose(2, 1, 3, 0, 4).reshape(b, n * chunk, h, d)


def _heads(x: jax.Array) -> jax.Array:
  """[B, Tk, H, hd] -> [H, B, Tk, 1, hd]."""
  return x.transpose(2, 0, 1, 3)[..., None, :]


def _from_heads(x: jax.Array) -> jax.Array:
  """Inverse of _heads."""
  return x[..., 0, :].transpose(1, 2, 0, 3)


def _pad_queries(x: jax.Array, axis: int, chunk: int) -> jax.Array:
  """x with its query `axis` zero-padded to whole blocks of `chunk`."""
  return pad_rows(x, axis, -x.shape[axis] % chunk)


def _bias_blocks(bias: Optional[jax.Array], chunk: int):
  """A row bias [B|1, 1, Tq, Tk] split like the queries: [n, B|1, 1, chunk, Tk]; other biases
  (None, or [B|1, 1, 1, Tk]) are the same for every block and stay as they are."""
  if not is_row_bias(bias):
    return bias
  bias = _pad_queries(bias, 2, chunk)
  b, _, t, k = bias.shape
  return bias.reshape(b, 1, t // chunk, chunk, k).transpose(2, 0, 1, 3, 4)


def _forward(q, k, v, bias, chunk):
  """Loops over heads, then over query blocks: each head's keys and values are sliced once."""
  _check_bias(bias)
  tq = q.shape[1]
  chunk = min(chunk, tq)
  bias_blocks = _bias_blocks(bias, chunk)
  row_bias = is_row_bias(bias)

  def head_forward(args):
    q_h, k_h, v_h = args

    def block_forward(block_args):
      q_b, bias_b = block_args if row_bias else (block_args, bias_blocks)
      out, _, row_max, inv_sum = attention_forward(q_b, k_h, v_h, bias_b)
      return out, row_max, inv_sum
    return jax.lax.map(block_forward, (q_h, bias_blocks) if row_bias else q_h)

  out, row_max, inv_sum = jax.lax.map(
      head_forward, (_query_blocks(_pad_queries(q, 1, chunk), chunk), _heads(k), _heads(v)))
  return _from_query_blocks(out)[:, :tq], row_max, inv_sum


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def head_blocked_attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: Optional[jax.Array],
                           chunk: int, bias_gradient: bool = True) -> jax.Array:
  """q [B, Tq, H, hd], k and v [B, Tk, H, hd], bias float32 [B|1, 1, Tq|1, Tk] (or None) ->
  [B, Tq, H, hd] in v's dtype, computed one head and `chunk` queries at a time.

  bias_gradient=False: the bias is data (masks) and its gradient is returned as zeros. XLA cannot
  drop an unused reduction from inside the loop, and the bias's is one pass over every block."""
  return _forward(q, k, v, bias, chunk)[0].astype(v.dtype)


def _fwd(q, k, v, bias, chunk, bias_gradient):
  out, row_max, inv_sum = _forward(q, k, v, bias, chunk)
  return out.astype(v.dtype), (q, k, v, bias, out, row_max, inv_sum)


def _bwd(chunk, bias_gradient, residuals, dout):
  q, k, v, bias, out, row_max, inv_sum = residuals
  tq = q.shape[1]
  chunk = min(chunk, tq)
  row_bias = is_row_bias(bias)
  bias_blocks = _bias_blocks(bias, chunk)
  d_bias_wanted = bias is not None and bias_gradient
  # The per-row term outside the loop: fused into a block's [chunk, Tk] pass, XLA:CPU recomputed
  # the reduction over hd for every key.
  g, row_dot = output_gradient(dout, _from_query_blocks(inv_sum)[:, :tq], out)
  q_blocks, g_blocks, row_dot_blocks = (_query_blocks(_pad_queries(x, 1, chunk), chunk)
                                        for x in (q, g, row_dot))

  def head_backward(d_bias, args):
    q_h, k_h, v_h, g_h, row_dot_h, max_h = args

    def block_backward(carry, block_args):
      d_k, d_v, d_bias_key = carry
      q_b, g_b, row_dot_b, max_b, bias_b = block_args
      if not row_bias:
        bias_b = bias_blocks
      p = jnp.exp(attention_logits(q_b, k_h, bias_b) - max_b)  # the forward's p, recomputed
      dlogits, d_q, d_k_b, d_v_b = gradients_from(q_b, k_h, v_h, p, g_b, row_dot_b)
      # Padded query rows have g 0: they add nothing to d_k, d_v or the bias.
      d_bias_b = sum_to_shape(dlogits, bias_b.shape) if d_bias_wanted else None
      if d_bias_wanted and not row_bias:
        d_bias_key, d_bias_b = d_bias_key + d_bias_b, None
      return (d_k + d_k_b, d_v + d_v_b, d_bias_key), (d_q, d_bias_b)

    zeros = jnp.zeros(k_h.shape, jnp.float32)
    key_zeros = jnp.zeros(bias.shape, jnp.float32) if d_bias_wanted and not row_bias else None
    (d_k, d_v, d_bias_key), (d_q, d_bias_rows) = jax.lax.scan(
        block_backward, (zeros, zeros, key_zeros),
        (q_h, g_h, row_dot_h, max_h, bias_blocks if row_bias else None))
    if d_bias_wanted:
      d_bias = d_bias + (d_bias_rows if row_bias else d_bias_key)
    return d_bias, (d_q, d_k, d_v)

  d_bias = None if not d_bias_wanted else jnp.zeros(
      bias_blocks.shape if row_bias else bias.shape, jnp.float32)
  d_bias, (d_q, d_k, d_v) = jax.lax.scan(
      head_backward, d_bias, (q_blocks, _heads(k), _heads(v), g_blocks, row_dot_blocks,
                              row_max))
  if bias is not None and not bias_gradient:
    d_bias = jnp.zeros(bias.shape, bias.dtype)
  elif d_bias is not None:
    if row_bias:  # [n, B|1, 1, chunk, Tk] -> [B|1, 1, Tq, Tk]
      n, b, _, c, tk = d_bias.shape
      d_bias = d_bias.transpose(1, 2, 0, 3, 4).reshape(b, 1, n * c, tk)[:, :, :tq]
    d_bias = d_bias.astype(bias.dtype)
  return (_from_query_blocks(d_q)[:, :tq].astype(q.dtype), _from_heads(d_k).astype(k.dtype),
          _from_heads(d_v).astype(v.dtype), d_bias)


head_blocked_attention.defvjp(_fwd, _bwd)
