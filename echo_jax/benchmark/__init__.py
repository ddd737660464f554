"""Benchmarks of training, decoding, the input pipeline and compilation (docs/performance.md).

  python -m echo_jax.benchmark --config configs/default.py [--shape small|seed] --out bench.json

Modules, one per concern:
  command     the command line: flags, running the sections, --table and --compare
  shapes      the fixed benchmark shapes and the random full-length batches
  measure     timing, peak memory and XLA compile counting
  peak        the matmul peak every rate is compared with, GEMM rates, MFU arithmetic
  train       the trainer's train step: throughput, FLOPs, MFU; the diagnostics step's cost
  op_profile  --profile: the step's op time from a jax.profiler trace
  operators   micro-benchmarks of the attention core, rotary and depthwise conv rewrites
  decode      cached vs uncached greedy and beam decoding
  data        feature precompute speed and the tf.data pipeline against the step
  recompiles  compilations over steps that cycle through the buckets
  report      targets, the markdown tables and the ratio table of two results
"""

from echo_jax.benchmark.command import cli, main  # noqa: F401 (the command, as before the split)
