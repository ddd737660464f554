"""Compilations over many train steps whose batches cycle through the config's buckets."""

from typing import Any, Dict, List

import jax
import ml_collections
import numpy as np

from echo_jax.benchmark.measure import CompileCounter
from echo_jax.benchmark.shapes import full_batch
from echo_jax.benchmark.train import train_state_and_step
from echo_jax.data.pipeline import global_batch_sizes, target_lengths
from echo_jax.parallel import sharding as sharding_lib


def bucket_schedule(num_buckets: int, steps: int, seed: int = 0) -> List[int]:
  """A random bucket per step in which every bucket occurs (as the pipeline's epoch plan mixes)."""
  rng = np.random.default_rng(seed)
  order = list(range(num_buckets)) + list(rng.integers(0, num_buckets, max(steps - num_buckets, 0)))
  rng.shuffle(order)
  return [int(b) for b in order[:steps]]


def bench_recompiles(config, steps: int = 50, small_model: bool = True) -> Dict[str, Any]:
  """Compilations over `steps` train steps whose batches cycle through the config's buckets with
  varying real lengths inside each bucket; must equal the number of buckets (0 after warm-up)."""
  config = ml_collections.ConfigDict(config.to_dict())
  if small_model:  # shapes, not sizes, decide compilations: keep 50 steps cheap
    m = config.model
    m.d_model, m.num_heads, m.encoder_layers, m.decoder_layers = 64, 2, 1, 1
  edges = [int(e) for e in config.data.bucket_frames]
  sizes = list(global_batch_sizes(config.data).buckets)
  lengths = target_lengths(config.data)
  mesh, _, state, step = train_state_and_step(config)
  rng = np.random.default_rng(1)
  plan = bucket_schedule(len(edges), steps)
  host_batches = []
  for i, b in enumerate(plan):
    low = edges[b - 1] + 1 if b > 0 else max(edges[0] // 2, 1)
    num_frames = rng.integers(low, edges[b] + 1, sizes[b])
    num_tokens = rng.integers(2, lengths[b] + 1, sizes[b])
    host = full_batch(config.model, sizes[b], edges[b], lengths[b], seed=i, num_frames=num_frames,
                      num_tokens=num_tokens)
    host_batches.append(sharding_lib.split_host_batch(host)[0])
  per_step = []
  with CompileCounter() as total:
    for host in host_batches:
      with CompileCounter() as this_step:
        batch = sharding_lib.global_batch(host, mesh)
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
      per_step.append(this_step.count)
  warm = [c for i, c in enumerate(per_step) if plan[i] in set(plan[:i])]
  return {"steps": steps, "buckets": len(edges), "bucket_frames": edges,
          "bucket_target_lengths": list(lengths),
          "bucket_batch_sizes": sizes,
          "compilations": total.count, "compile_seconds": total.seconds,
          "compilations_after_warmup": int(sum(warm)),
          "jit_cache_size": int(step._cache_size()),  # pylint: disable=protected-access
          "compilations_per_step": per_step, "bucket_per_step": plan,
          "model": {"d_model": int(config.model.d_model),
                    "layers": int(config.model.encoder_layers)}}
