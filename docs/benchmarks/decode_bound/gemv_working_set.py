"""[1, 256] x [256, 4000] products (the small shape's output projection) in a 256-step loop, cycling
through n different weight matrices (4 MB each): how the per-product time grows once the weights
outgrow the caches, the bound of batch-1 cached decoding (docs/performance.md, "Decode: what bounds
the cache speed-up at batch 1").

  python docs/benchmarks/decode_bound/gemv_working_set.py
"""

import time

import jax
import jax.numpy as jnp

D_MODEL, OUTPUTS, STEPS = 256, 4000, 256


def seconds_per_product(matrices: int) -> float:
  weights = jax.random.normal(jax.random.PRNGKey(0), (matrices, D_MODEL, OUTPUTS)) / 16

  def body(i, h):
    w = jax.lax.dynamic_index_in_dim(weights, i % matrices, keepdims=False)
    return jnp.tanh(h @ w)[:, :D_MODEL] + h  # the next product depends on this one

  loop = jax.jit(lambda h: jax.lax.fori_loop(0, STEPS, body, h))
  h0 = jnp.ones((1, D_MODEL), jnp.float32)
  jax.block_until_ready(loop(h0))
  best = float("inf")
  for _ in range(7):
    start = time.perf_counter()
    jax.block_until_ready(loop(h0))
    best = min(best, time.perf_counter() - start)
  return best / STEPS


def main():
  matrix_bytes = D_MODEL * OUTPUTS * 4
  for matrices in (1, 2, 4, 8, 16):
    per = seconds_per_product(matrices)
    print(f"{matrices:2d} matrices ({matrices * matrix_bytes / 2**20:4.0f} MiB): "
          f"{per * 1e6:6.1f} us per product, {matrix_bytes / per / 1e9:6.1f} GB/s of weights")


if __name__ == "__main__":
  main()
