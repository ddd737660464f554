"""The pitch ablation's out-of-range split: trained on low voices, tested on high ones.

  .venv/bin/python -m echo_jax.experiments.ablation --config configs/ablation_f0_range.py \
      --workdir runs/ablation_f0_range [--publish]

What it runs: `fixed`, `seed` and `pitch_bias` x 3 seeds of configs/ablation.py's recipe, trained
only on utterances whose median voiced F0 is below 170 Hz (data.train_max_f0_hz; ~5,800 of the
8,000 training utterances by the corpus's expected F0) and scored only on test utterances at or
above it (data.eval_min_f0_hz; ~190 of the 1,000, from voices never heard in training), and on
pitch-shifted copies of those (-3 and +3 semitones). If pitch-conditioned rotary lets the model
generalise over pitch, it should show here first.
Hardware: one 2-core x86-64 CPU (no accelerator), 24 GiB.
Wall time: not measured; estimated from configs/ablation.py: 9 runs x ~14 min = ~2 h, plus the
one-off median-F0 scan of the prepared splits (cached beside the records).
Result: not yet measured.
"""

import os

from echo_jax.config.files import load_config_file

F0_LIMIT_HZ = 170.0


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "ablation.py"))
  config.data.train_max_f0_hz = F0_LIMIT_HZ
  config.data.eval_min_f0_hz = F0_LIMIT_HZ
  a = config.ablation
  a.variants = ("fixed", "seed", "pitch_bias")
  a.semitones = (-3.0, 3.0)
  a.max_test_examples = -1  # every out-of-range test utterance (~190)
  a.report_name = "ablation_f0_range"
  a.archive_dir = "docs/ablation_f0_range/runs"
  return config
