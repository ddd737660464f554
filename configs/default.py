"""Small, CPU-friendly Echo trained on the offline synthetic corpus: the main job.

  bash launch/setup.sh && .venv/bin/python -m echo_jax.train --config configs/default.py \
      --workdir runs/default
  .venv/bin/python -m echo_jax.evaluate --workdir runs/default --split test

Hardware: one 2-core x86-64 CPU (no accelerator), 24 GiB; peak RSS 2.7 GB.
Recipe: 10,000 synthetic utterances (8,000 distinct training sentences from fortunes and WordNet,
135 voices, seeded acoustic augmentation), a d192 4+2-layer Echo with a CTC head on the encoder,
character targets, per-utterance CMVN, He-initialised front-end, joint CTC/attention loss (CTC
weight 0.5), label smoothing 0.1, mild SpecAugment, 3,600 steps (~4 epochs).
Wall time measured: synthesis 14.8 min + features 6.5 min + training 40.6 min + test eval ~3 min.
Result on the test split (unseen voices and sentences): CTC best path WER 91.7 %, CER 42.8 %;
greedy attention WER 113.1 %, CER 66.3 % (old default: WER 106 %, CER 85 %). The model listens but
is short of epochs; docs/accuracy.md has the diagnosis and the measured bound.
"""

from echo_jax.config_defaults import default_config


def get_config():
  config = default_config()
  m = config.model
  m.d_model = 192
  m.num_heads = 4
  m.encoder_layers = 4
  m.decoder_layers = 2
  m.spectrogram_downsample = 4
  m.text_ctx = 192
  m.audio_ctx = 1024
  m.ctc_head = True
  m.conv_init = "fan_in"  # N(0, 0.02) convs leave the encoder deaf at the start (docs/accuracy.md)
  m.mel_normalization = "utterance"  # CMVN: gain and channel augmentation shift the log-mel

  d = config.data
  d.synth_num_utterances = 10000
  d.tokenizer = "char"  # CTC leaves its plateau sooner on characters than on word pieces
  d.bucket_frames = (384, 768, 1152)
  d.bucket_batch_sizes = (16, 8, 8)
  d.max_target_length = 160

  t = config.train
  t.num_steps = 3600
  t.learning_rate = 2e-3
  t.warmup_steps = 300
  t.ctc_weight = 0.5
  t.label_smoothing = 0.1
  sa = t.spec_augment
  sa.freq_masks, sa.freq_mask_bins = 2, 15
  sa.time_masks, sa.time_mask_frames, sa.time_mask_max_fraction = 2, 25, 0.05
  t.log_every = 50
  t.checkpoint_every = 500
  config.eval.every = 1000
  config.eval.max_examples = 200
  config.decode.max_length = 160
  return config
