"""Tiny model configs and random batches in the contract's batch format (tests, smoke runs)."""

from typing import Dict, Sequence

import ml_collections
import numpy as np

from echo_jax.models.config import default_model_config


def tiny_model_config(**overrides) -> ml_collections.ConfigDict:
  """d 32, 2 heads, 1 encoder + 1 decoder layer, 16 mels, vocab 24; fields overridable by name."""
  cfg = default_model_config()
  cfg.vocab_size = 24
  cfg.d_model = 32
  cfg.num_heads = 2
  cfg.encoder_layers = 1
  cfg.decoder_layers = 1
  cfg.mlp_ratio = 2
  cfg.n_mels = 16
  cfg.text_ctx = 32
  cfg.audio_ctx = 256
  cfg.hop_length = 16
  for name, value in overrides.items():
    setattr(cfg, name, value)
  return cfg


def random_batch(cfg, num_frames: Sequence[int], num_tokens: Sequence[int], frames: int,
                 tokens: int, seed: int = 0, voiced_fraction: float = 0.7) -> Dict[str, np.ndarray]:
  """A batch dict like the data pipeline's: padded mel/f0/waveform are 0, tokens padded with 0.

  num_tokens[b] counts BOS + ids (the valid decoder inputs); F0 is voiced on a random subset.
  """
  rng = np.random.default_rng(seed)
  batch_size = len(num_frames)
  valid = np.arange(frames)[None, :] < np.asarray(num_frames)[:, None]
  mel = rng.normal(size=(batch_size, frames, cfg.n_mels)).astype(np.float32) * valid[..., None]
  base = rng.uniform(90.0, 260.0, size=(batch_size, 1))
  f0 = base * (1.0 + 0.1 * rng.normal(size=(batch_size, frames)))
  voiced = (rng.random((batch_size, frames)) < voiced_fraction) & valid
  f0 = np.where(voiced, f0, 0.0).astype(np.float32)
  samples = frames * cfg.hop_length
  num_samples = np.asarray(num_frames, np.int32) * cfg.hop_length
  wave_valid = np.arange(samples)[None, :] < num_samples[:, None]
  waveform = (rng.normal(size=(batch_size, samples)) * 0.1 * wave_valid).astype(np.float32)
  inputs = np.zeros((batch_size, tokens), np.int32)
  targets = np.zeros((batch_size, tokens), np.int32)
  for b, n in enumerate(num_tokens):
    ids = rng.integers(4, cfg.vocab_size, size=n - 1)
    inputs[b, :n] = np.concatenate([[1], ids])
    targets[b, :n] = np.concatenate([ids, [2]])
  return {
      "mel": mel, "f0": f0, "num_frames": np.asarray(num_frames, np.int32),
      "waveform": waveform, "num_samples": num_samples,
      "decoder_input_tokens": inputs, "decoder_target_tokens": targets,
      "example_index": np.arange(batch_size, dtype=np.int64),
      "valid": np.ones((batch_size,), bool),
  }


def pad_batch(batch: Dict[str, np.ndarray], frames: int, tokens: int,
              hop_length: int) -> Dict[str, np.ndarray]:
  """The same examples with more trailing padding (frames >= T, tokens >= L)."""
  out = dict(batch)
  t = batch["mel"].shape[1]
  out["mel"] = np.pad(batch["mel"], ((0, 0), (0, frames - t), (0, 0)))
  out["f0"] = np.pad(batch["f0"], ((0, 0), (0, frames - t)))
  out["waveform"] = np.pad(batch["waveform"], ((0, 0), (0, (frames - t) * hop_length)))
  length = batch["decoder_input_tokens"].shape[1]
  for key in ("decoder_input_tokens", "decoder_target_tokens"):
    out[key] = np.pad(batch[key], ((0, 0), (0, tokens - length)))
  return out


def select(batch: Dict[str, np.ndarray], rows: Sequence[int]) -> Dict[str, np.ndarray]:
  return {k: np.asarray(v)[np.asarray(rows)] for k, v in batch.items()}
