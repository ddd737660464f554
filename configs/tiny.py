"""A tiny model for tests and smoke runs: d64, 2 heads, 1+1 layers, 32 mels, character targets.

  .venv/bin/python -m echo_jax.train --config configs/tiny.py --workdir runs/tiny

Hardware: one CPU core (no accelerator); the test suite trains it on 8 fake CPU devices.
Recipe: 24 synthetic utterances, 20 steps (warm-up 5), evaluation and a checkpoint every 10.
Wall time and result: not measured as a run of their own; the test suite uses it to check the
machinery (seconds per step on one CPU core), not to reach an accuracy, and 24 utterances are
far too few to learn from.
"""

from echo_jax.config.defaults import default_config


def get_config():
  config = default_config()
  m = config.model
  m.d_model = 64
  m.num_heads = 2
  m.encoder_layers = 1
  m.decoder_layers = 1
  m.n_mels = 32
  m.spectrogram_downsample = 4
  m.text_ctx = 64
  m.audio_ctx = 512

  d = config.data
  d.n_mels = 32
  d.synth_num_utterances = 24
  d.tokenizer = "char"
  d.bucket_frames = (256, 512, 1024)
  d.bucket_batch_sizes = (8, 8, 8)
  d.max_target_length = 64
  d.eval_batch_size = 8

  t = config.train
  t.num_steps = 20
  t.warmup_steps = 5
  t.learning_rate = 3e-3
  t.log_every = 5
  t.checkpoint_every = 10
  config.eval.every = 10
  config.eval.max_examples = 8
  config.decode.max_length = 64
  return config
