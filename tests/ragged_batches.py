"""Train batches in the documented format with ragged audio and text lengths (shared by tests)."""

import numpy as np

from echo_jax.models import building


def ragged_batch(config, batch_size: int, frames: int, vocab: int, seed: int = 0) -> dict:
  """Random mel/F0 zeroed beyond each row's length; BOS/EOS-framed token ids in [4, vocab)."""
  rng = np.random.default_rng(seed)
  batch = building.example_batch(config, batch_size, frames)
  num_frames = rng.integers(frames // 2, frames + 1, size=batch_size).astype(np.int32)
  batch["num_frames"] = num_frames
  valid = np.arange(frames)[None, :] < num_frames[:, None]
  batch["mel"] = (rng.normal(size=batch["mel"].shape) * valid[..., None]).astype(np.float32)
  batch["f0"] = (rng.uniform(80, 300, size=batch["f0"].shape) * valid).astype(np.float32)
  batch["decoder_input_tokens"][:] = 0
  batch["decoder_target_tokens"][:] = 0
  for row in range(batch_size):
    n = int(rng.integers(3, 12))
    ids = rng.integers(4, vocab, size=n)
    batch["decoder_target_tokens"][row, :n + 1] = np.append(ids, 2)
    batch["decoder_input_tokens"][row, :n + 1] = np.append(1, ids)
  return batch
