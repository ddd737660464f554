"""The seed's sizes: d 512, 4 heads, 4 encoder + 4 decoder layers, 128 mels, 4,000 word pieces.

  python -m echo_jax.train --config configs/base.py --workdir runs/base

Hardware: TPU slices (v5e 2x2 and 4x4, v4-8/16/32) or GPUs; on a CPU use configs/default.py.
Batch sizes are per device (data.batch_size_unit = "per_device"): 8, 4, 2, 2 rows per chip for the
512/1024/1536/2048-frame buckets and 4 for eval, i.e. the old global (32, 16, 8, 8) and 16 on a
v5e 2x2, and scaled with the chips on larger slices, so the config runs on any of them unedited.
Wall time and result: not measured; the config has never been trained on its hardware. What is
known comes from compile_for (README, "TPU pods: compile before you rent"): 45.8 M parameters;
the train step (longest bucket, 2 rows per chip) compiles for a v5e 2x2 in 1.9 GiB of 16 GiB HBM
per chip replicated, 1.5 GiB with FSDP, 2.68 TFLOP per step; v5e 4x4 and v4 slices hold the same
rows per chip, so the per-chip memory stays about the same.
"""

from echo_jax.config.defaults import default_config


def get_config():
  config = default_config()
  config.data.vocab_size = 4000
  config.data.synth_num_utterances = 6000
  d = config.data
  # Rows per chip, so the global batch follows the slice: 4 chips give (32, 16, 8, 8) and 16.
  d.batch_size_unit = "per_device"
  d.bucket_batch_sizes = (8, 4, 2, 2)
  d.eval_batch_size = 4
  return config
