"""The matmul peak every rate is compared with, and model-shaped GEMM rates.

Every rate is measured in the same run next to the float32 matmul peak of this machine (a 2048^2
jnp matmul, best of several, at the start and again at the end; the better one is the peak), so
ratios stay meaningful on a shared, noisy machine.
"""

from typing import Dict, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from echo_jax.benchmark.measure import time_calls

PEAK_SIZE = 2048


class PeakProbe:
  """float32 [size, size] @ [size, size] under jit; `gflops(repeats)` is the best of `repeats`.

  Probed right before every timed step too, so each step is compared with the peak of its moment
  (the machine is shared and its load moves by 2x within minutes).
  """

  def __init__(self, size: int = PEAK_SIZE, dtype: str = "float32"):
    keys = jax.random.split(jax.random.PRNGKey(0))
    self.size = size
    self.a = jax.random.normal(keys[0], (size, size), jnp.dtype(dtype))
    self.b = jax.random.normal(keys[1], (size, size), jnp.dtype(dtype))
    # Accumulating in float32 as the model's matmuls do (a bfloat16-accumulating product is not
    # the fast form on every backend; docs/performance.md, "bfloat16 on this CPU").
    self.matmul = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    jax.block_until_ready(self.matmul(self.a, self.b))

  def times(self, repeats: int) -> List[float]:
    return time_calls(lambda: jax.block_until_ready(self.matmul(self.a, self.b)), repeats)

  def gflops(self, repeats: int = 3) -> float:
    return matmul_flops(self.size, self.size, self.size) / min(self.times(repeats)) / 1e9


def matmul_flops(rows: int, inner: int, cols: int) -> float:
  """FLOPs of one [rows, inner] @ [inner, cols] product (a multiply and an add per term)."""
  return 2.0 * rows * inner * cols


def mfu(flops: float, seconds: float, peak_gflops: float) -> float:
  """Model FLOPs utilisation: achieved FLOP/s over the peak FLOP/s."""
  return flops / seconds / 1e9 / peak_gflops


def mfu_vs_probe(flops: float, step_seconds: Sequence[float],
                 probe_gflops: Sequence[float]) -> float:
  """Median over steps of each step's MFU against the peak probed right before it."""
  return float(np.median([mfu(flops, t, p) for t, p in zip(step_seconds, probe_gflops)]))


def measure_peak(size: int = PEAK_SIZE, repeats: int = 10, dtype: str = "float32"
                 ) -> Dict[str, float]:
  """The matmul peak: best GFLOP/s of `repeats` calls (median reported too)."""
  times = PeakProbe(size, dtype).times(repeats)
  flops = matmul_flops(size, size, size)
  return {"size": size, "dtype": dtype, "flops": flops, "best_s": min(times),
          "median_s": float(np.median(times)),
          "gflops": flops / min(times) / 1e9, "median_gflops": flops / np.median(times) / 1e9}


def matmul_rate(rows: int, inner: int, cols: int, repeats: int = 5) -> float:
  """Best GFLOP/s of one [rows, inner] @ [inner, cols] float32 matmul (a model-shaped GEMM)."""
  a = jnp.ones((rows, inner), jnp.float32)
  b = jnp.ones((inner, cols), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  jax.block_until_ready(matmul(a, b))
  best = min(time_calls(lambda: jax.block_until_ready(matmul(a, b)), repeats))
  return matmul_flops(rows, inner, cols) / best / 1e9
