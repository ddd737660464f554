"""The XLA flags every test process compiles with: the pytest workers and the trainers the tests
start (directly, through launch/local.sh, or as stand-in SLURM tasks and pod workers).

Tests compile far more than they run (tiny models), so the flags trade run time for compile time:
- LLVM optimisation level 0: ~1.5x faster compiles, the same HLO and fusions.
- The classic elemental emitters instead of the MLIR fusion emitters: the tiny train step on 8
  devices compiles in 8.4-10.7 s instead of 13.5-14 s, and two of the heaviest test files
  (test_model_options, test_encoder_options) take 193 s instead of 275 s, 79 % of which was
  backend compilation. Both emitters are XLA's own CPU code generators; the tests compare paths
  within one flag set, never against stored numbers.
"""

FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def cpu_devices(count: int) -> str:
  """XLA_FLAGS for a test process with `count` CPU devices."""
  return f"--xla_force_host_platform_device_count={count} {FAST_COMPILE}"
