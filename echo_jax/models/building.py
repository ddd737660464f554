"""The model of a config and a zero batch of its input format (for init and shape tracing)."""

from typing import Dict, Optional

import ml_collections
import numpy as np

from echo_jax.models.echo import EchoModel
from echo_jax.token_ids import BOS_ID


def build_model(config: ml_collections.ConfigDict) -> EchoModel:
  """The Echo model of `config.model` (vocab_size must be resolved, see data.tokenizer)."""
  return EchoModel(config=config.model)


def example_batch(config: ml_collections.ConfigDict, batch_size: int,
                  frames: Optional[int] = None) -> Dict[str, np.ndarray]:
  """A zero batch in the documented batch format (shapes only matter: used to init the model)."""
  frames = int(frames or config.data.bucket_frames[0])
  length = int(config.data.max_target_length)
  batch = {
      "mel": np.zeros([batch_size, frames, int(config.model.n_mels)], np.float32),
      "f0": np.zeros([batch_size, frames], np.float32),
      "num_frames": np.full([batch_size], frames, np.int32),
      "decoder_input_tokens": np.zeros([batch_size, length], np.int32),
      "decoder_target_tokens": np.zeros([batch_size, length], np.int32),
      "valid": np.ones([batch_size], bool),
  }
  batch["decoder_input_tokens"][:, 0] = BOS_ID
  if "waveform" in tuple(config.model.features):
    samples = frames * int(config.data.hop_length)
    batch["waveform"] = np.zeros([batch_size, samples], np.float32)
    batch["num_samples"] = np.full([batch_size], samples, np.int32)
  return batch
