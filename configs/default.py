"""Small, CPU-friendly Echo trained on the offline synthetic corpus.

  python -m echo_jax.train --config configs/default.py --workdir runs/default
"""

from echo_jax.config_defaults import default_config


def get_config():
  config = default_config()
  m = config.model
  m.d_model = 192
  m.num_heads = 4
  m.encoder_layers = 2
  m.decoder_layers = 2
  m.spectrogram_downsample = 4
  m.text_ctx = 160
  m.audio_ctx = 1024

  d = config.data
  d.synth_num_utterances = 1200
  d.tokenizer = "sentencepiece"
  d.vocab_size = 256
  d.bucket_frames = (384, 768, 1152)
  d.bucket_batch_sizes = (16, 8, 8)
  d.max_target_length = 96

  t = config.train
  t.num_steps = 3000
  t.learning_rate = 1e-3
  t.warmup_steps = 200
  t.log_every = 50
  t.checkpoint_every = 500
  config.eval.every = 1000
  config.eval.max_examples = 120
  config.decode.max_length = 96
  return config
