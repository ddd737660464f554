"""Does pitch conditioning help? The default recipe, shortened, for the ablation study.

  .venv/bin/python -m echo_jax.experiments.ablation --config configs/ablation.py \
      --workdir runs/ablation [--publish]

What it runs: 7 variants (fixed = baseline, seed, per_frame, pitch_bias, seed+pitch_bias,
radius_f0, shuffled_f0 = the placebo fed another utterance's F0; echo_jax/experiments/variants.py)
x 3 seeds, all on the same data, steps and seeds, each an ordinary training run; then each run's
final checkpoint is scored on the first 300 test utterances and on WORLD pitch-shifted copies of
them (-6, -3, +3, +6 semitones), and the report gives WER/CER with 95 % bootstrap intervals and
paired differences against `fixed`.

Recipe: configs/default.py (10,000 synthetic utterances, d192 4+2-layer Echo, CTC head, character
targets) with 900 instead of 3,600 steps (warm-up 200, cosine to 0), no in-training evaluation
(the study scores every run itself) and one checkpoint kept per run; every bucket pads to 160
tokens, as when the study began (the default's per-bucket lengths change the speed, not the loss).
Hardware: one 2-core x86-64 CPU (no accelerator), 24 GiB. Wall time, measured: on a 2-core CPU
with AVX-512 training 12.7 min for 900 steps (seed/seed0, 765 s) and 2.3-2.5 min for the five
evaluations (300 utterances each: greedy attention decoding, CTC best path, teacher forcing); on
a 2-core AVX2-only CPU (AMD EPYC) ~1.4 s per step, ~21 min of training per run. Once per machine:
the corpus and features (~25 min, shared with the main job) and the 1,200 pitch-shifted wavs (~4
min: one WORLD analysis per utterance for all shifts, 2 workers). So 7 variants x 3 seeds = ~5.3 h
on the faster CPU. Fewer seeds:
--config.ablation.seeds="(0,)".
Finished runs are archived in docs/ablation/runs/ (experiments/archive.py): the study continues
on any checkout where it stopped and `--publish` rebuilds docs/ablation.md from the archive.
Result: docs/ablation.md (interim until the runs are complete: `--report_only --publish`).
Archived so far (14 of 21 runs: seed 0 and seed 1 of each variant, AVX2 CPU; fixed/seed1: CTC CER
46.5 %, 47.2 / 47.9 / 50.0 / 51.5 % at the shifts, attention WER 120.3 %; seed/seed1: 45.8 %, 47.3 /
48.0 / 49.6 / 51.3 %, 118.5 %; per_frame/seed1: 46.1 %, 47.1 / 47.7 / 49.5 / 51.0 %, 126.5 %;
pitch_bias/seed1: 47.0 %, 48.2 / 48.4 / 50.2 / 51.2 %, 121.9 %; seed+pitch_bias/seed1: 46.7 %, 48.2
/ 48.2 / 49.6 / 50.8 %, 124.2 %; radius_f0/seed1: 47.3 %, 48.2 / 48.0 / 49.8 / 51.8 %, 125.5 %;
shuffled_f0/seed1: 46.6 %, 47.8 / 48.4 / 50.0 / 51.5 %, 120.9 %). Over seeds 0 and 1, CTC CER minus
fixed: seed -0.5 points (-1.2 to +0.2), per_frame -0.2 (-0.8 to +0.4), pitch_bias +0.5 (-0.2 to
+1.0), seed+pitch_bias +0.2 (-0.4 to +0.8), radius_f0 +0.5 (-0.3 to +1.3), shuffled_f0 -0.2 (-0.9 to
+0.5): no measurable difference; the seed-0 attention-WER gains of per_frame (-6.5 points),
pitch_bias and seed+pitch_bias (-7.3) vanish with seed 1 (-0.2, -9.7 to +8.6; -1.9, -8.2 to +3.9;
-1.7, -10.0 to +6.1). Seed 0 alone (paired differences use the seeds both runs have): test-split CTC
best path CER (seed 0) fixed 46.9 %, seed 46.6 %, per_frame 46.8 %, pitch_bias 47.3 %,
seed+pitch_bias 47.1 %, radius_f0 47.1 %, shuffled_f0 46.4 %; paired differences against fixed -0.2
(95 % interval -0.9 to +0.4), -0.0 (-0.7 to +0.6), +0.4 (-0.3 to +1.1), +0.2 (-0.5 to +0.8), +0.2
(-0.5 to +0.9) and -0.5 (-1.1 to +0.1) points: no measurable difference. At -6 / -3 / +3 / +6
semitones fixed 47.9 / 48.0 / 50.0 / 51.5 %, seed 47.5 / 47.6 / 49.5 / 51.2 %, per_frame 47.6 / 47.5
/ 49.7 / 50.9 %, pitch_bias 48.2 / 48.3 / 49.9 / 51.4 %, seed+pitch_bias 48.2 / 48.3 / 50.2 / 51.7
%, radius_f0 48.1 / 48.2 / 49.8 / 51.8 %, shuffled_f0 47.6 / 47.6 / 49.4 / 51.0 % (no measurable
difference at any shift). The attention decoder's WER is 125-132 % (it still inserts at 900 steps),
so its differences measure insertions, not recognition. Measured before the archive existed (11 of
21 runs whose records were not kept; one or two seeds each, no verdict): test-split CTC best path
CER, seed 0 / seed 1: fixed 46.4 / 46.4 %, seed 47.3 / 46.3 %, per_frame 46.8 / 46.6 %, pitch_bias
47.7 / 47.0 %, seed+pitch_bias 47.1 %, radius_f0 47.0 %, shuffled_f0 46.6 % (CTC WER 93-96 %; at 900
steps the attention decoder still inserts, WER 116-128 %, so CTC CER is the measure on which
differences can show). At -6 / +6 semitones fixed/seed0 47.7 / 51.5 %, seed/seed0 47.9 / 51.3 %.
"""

import os

from echo_jax.config.files import load_config_file
from echo_jax.experiments.settings import default_settings


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py"))
  t = config.train
  t.num_steps = 900
  t.warmup_steps = 200
  t.checkpoint_every = 300  # what an interrupted run loses at most
  t.keep_checkpoints = 1  # 21 runs: keep the disk use at one checkpoint each
  t.keep_best = 0
  config.eval.every = 0  # the study evaluates each run's final checkpoint itself
  # Every bucket padded to 160 tokens, as the runs archived before the default's per-bucket
  # lengths were trained (the loss is the same; only the step's speed and float rounding differ).
  config.data.bucket_target_lengths = ()
  config.decode.lm_path = ""  # the report reads the attention and CTC best-path hypotheses only

  config.ablation = default_settings()
  a = config.ablation
  a.variants = ("fixed", "seed", "per_frame", "pitch_bias", "seed+pitch_bias", "radius_f0",
                "shuffled_f0")
  a.seeds = (0, 1, 2)
  a.semitones = (-6.0, -3.0, 3.0, 6.0)
  a.max_test_examples = 300
  a.report_name = "ablation"  # --publish: docs/ablation.md, docs/ablation/report.json
  a.archive_dir = "docs/ablation/runs"  # finished runs, kept in the repository
  return config
