"""Decoding speed: greedy and beam search with the KV cache vs re-running the decoder per token."""

from typing import Any, Dict, List, Optional, Sequence

import jax

from echo_jax.benchmark.measure import peak_rss_mib
from echo_jax.benchmark.shapes import full_batch
from echo_jax.inference.decoding import measure_decode_speed
from echo_jax.models.building import build_model
from echo_jax.perf import flops as flops_lib
from echo_jax.token_ids import EOS_ID


def never_eos(variables):
  """Zeroes the tied embedding row of EOS: its logit is 0 while the max over ~V random logits is
  positive, so random-init decoding runs to max_length in both variants (comparable work)."""

  def fix(path, leaf):
    names = [str(getattr(k, "key", k)) for k in path]
    if "token_embedding" in names and names[-1] == "embedding":
      return leaf.at[EOS_ID].set(0.0)
    return leaf
  return jax.tree_util.tree_map_with_path(fix, variables)


def bench_decode(config, frames: int, batch_sizes: Sequence[int], beam_size: int,
                 max_length: int, repeats: int,
                 beam_batch_sizes: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
  """Greedy (and beam, for batch sizes in beam_batch_sizes, default all) decoding with the KV
  cache vs re-running the decoder per token, timed back to back on the same batch."""
  model = build_model(config)
  results = []
  variables = None
  for batch_size in batch_sizes:
    batch = full_batch(config.model, batch_size, frames, max_length, seed=1)
    batch = {k: v for k, v in batch.items()
             if k not in ("decoder_input_tokens", "decoder_target_tokens", "example_index")}
    if variables is None:
      init_batch = full_batch(config.model, 1, frames, max_length)
      variables = never_eos(model.init(jax.random.PRNGKey(0), init_batch))
      variables = {"params": variables["params"]}
    beams = {1}
    if beam_batch_sizes is None or batch_size in beam_batch_sizes:
      beams.add(int(beam_size))
    for beam in sorted(beams):
      pair = {}
      for use_cache in (True, False):
        r = measure_decode_speed(model, variables, batch, max_length, beam_size=beam,
                                 use_cache=use_cache, repeats=repeats,
                                 sample_rate=int(config.data.sample_rate),
                                 hop_length=int(config.data.hop_length))
        steps = max(1, r["generated_tokens"] // max(batch_size, 1))
        r["analytic_flops"] = float(flops_lib.decode_flops(
            config.model, batch_size * beam, frames, max_length, steps, use_cache)["total"])
        r["peak_rss_mib"] = peak_rss_mib()
        pair["cached" if use_cache else "uncached"] = r
      per_step = {name: flops_lib.decode_flops(config.model, batch_size * beam, frames,
                                               max_length, 1, name == "cached")
                  for name in ("cached", "uncached")}
      results.append({
          "batch": batch_size, "beam": beam, "frames": frames, "max_length": max_length,
          **pair,
          "speedup": pair["uncached"]["seconds"] / pair["cached"]["seconds"],
          "decoder_speedup": (pair["uncached"]["decoder_seconds"] /
                              max(pair["cached"]["decoder_seconds"], 1e-9)),
          "analytic_step_flops": {k: float(v["per_step"]) for k, v in per_step.items()},
          "analytic_speedup_bound": float(per_step["uncached"]["per_step"] /
                                          per_step["cached"]["per_step"]),
      })
  return results
