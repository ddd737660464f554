"""The benchmark shapes and the random batches fed to the timed steps.

`--shape small` (d 256, 4 heads, 2+2 layers, 1000 frames, 64 tokens, batch 4) and `--shape seed`
(d 512, 4 heads, 4+4 layers, 1500 frames, 128 tokens, batch 2), both at vocab 4000, 128 mels and
no spectrogram downsampling, replace the config's model sizes and batch; without a shape the train
batch is the config's longest bucket (edge and global batch size) at data.max_target_length tokens.
"""

from typing import Dict, Optional, Sequence

import ml_collections
import numpy as np

from echo_jax.data.pipeline import global_batch_sizes
from echo_jax.data.tokenizer import expected_vocab_size
from echo_jax.models.testing import random_batch

# The fixed benchmark shapes (issue 7): model sizes, frames, tokens, global batch.
SHAPES = {
    "small": dict(d_model=256, num_heads=4, encoder_layers=2, decoder_layers=2, frames=1000,
                  tokens=64, batch=4, vocab_size=4000),
    "seed": dict(d_model=512, num_heads=4, encoder_layers=4, decoder_layers=4, frames=1500,
                 tokens=128, batch=2, vocab_size=4000),
}


def apply_shape(config, shape: Optional[str]):
  """(config copy with the benchmark shape applied, frames, tokens, batch) for the train step."""
  config = ml_collections.ConfigDict(config.to_dict())
  m, d = config.model, config.data
  if int(m.vocab_size) <= 0:
    m.vocab_size = expected_vocab_size(d)  # what the tokenizer would give; the benchmark has none
  if shape is None:
    frames, batch = int(d.bucket_frames[-1]), global_batch_sizes(d).buckets[-1]
    tokens = int(d.max_target_length)
  else:
    if shape not in SHAPES:
      raise ValueError(f"--shape {shape!r} is unknown; use one of {sorted(SHAPES)}")
    spec = SHAPES[shape]
    for name in ("d_model", "num_heads", "encoder_layers", "decoder_layers", "vocab_size"):
      setattr(m, name, spec[name])
    m.n_mels = d.n_mels = 128
    m.features = ("spectrogram",)
    m.spectrogram_downsample = 1
    frames, tokens, batch = spec["frames"], spec["tokens"], spec["batch"]
    d.bucket_frames = (frames,)
    d.bucket_batch_sizes = (batch,)
    d.batch_size_unit = "global"
    d.max_target_length = tokens
    d.vocab_size = spec["vocab_size"]
    config.decode.max_length = tokens
  m.text_ctx = max(int(m.text_ctx), tokens)
  m.audio_ctx = max(int(m.audio_ctx), frames)
  return config, frames, tokens, batch


def full_batch(model_cfg, batch: int, frames: int, tokens: int, seed: int = 0,
               num_frames: Optional[Sequence[int]] = None,
               num_tokens: Optional[Sequence[int]] = None) -> Dict[str, np.ndarray]:
  """A random batch in the contract format (every row full length unless given)."""
  num_frames = [frames] * batch if num_frames is None else list(num_frames)
  num_tokens = [tokens] * batch if num_tokens is None else list(num_tokens)
  out = random_batch(model_cfg, num_frames, num_tokens, frames, tokens, seed=seed)
  if "waveform" not in tuple(model_cfg.features):
    out.pop("waveform")
    out.pop("num_samples")
  return out
