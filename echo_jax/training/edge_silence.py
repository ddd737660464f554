"""Edge-silence augmentation inside the jitted train step: quiet frames before and after an
utterance, as recordings have and the synthetic corpus's utterances do not (a second of it on
each side costs an untrained-for model ~11 CTC CER points; docs/accuracy.md, section 8).

Per utterance, with probability `probability`, its frames move right by a lead of U{0..max}
frames and a trail of U{0..max} frames follows them, both bounded by the room its padded bucket
leaves (a full row gets none). The added frames repeat the utterance's own quietest frame (lowest
mean log-mel over its real frames: its noise floor or dither) with N(0, 0.05) jitter (~2 dB in
the seed's log-mel scale) and are unvoiced (F0 0); num_frames grows by lead + trail. Drawn from
the step's RNG; the eval step never calls it.
"""

from typing import Tuple

import jax
import jax.numpy as jnp

JITTER = 0.05  # log-mel units of the seed scale ((log10 + 4) / 4): 0.05 is ~2 dB


def apply(rng: jax.Array, mel: jax.Array, f0: jax.Array, num_frames: jax.Array, max_frames: int,
          probability: float) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """(mel [B, T, M], f0 [B, T], num_frames [B]) with the quiet lead and trail added."""
  batch, size, _ = mel.shape
  num_frames = jnp.asarray(num_frames, jnp.int32)
  on_key, lead_key, trail_key, jitter_key = jax.random.split(rng, 4)
  on = jax.random.uniform(on_key, (batch,)) < probability
  room = size - num_frames
  lead_max = jnp.minimum(max_frames, room)
  lead = jnp.floor(jax.random.uniform(lead_key, (batch,)) * (lead_max + 1)).astype(jnp.int32)
  lead = jnp.where(on, lead, 0)
  trail_max = jnp.minimum(max_frames, room - lead)
  trail = jnp.floor(jax.random.uniform(trail_key, (batch,)) * (trail_max + 1)).astype(jnp.int32)
  trail = jnp.where(on, trail, 0)

  positions = jnp.arange(size)[None, :]
  source = positions - lead[:, None]
  speech = (source >= 0) & (source < num_frames[:, None])
  index = jnp.clip(source, 0, size - 1)
  moved_mel = jnp.take_along_axis(mel, index[:, :, None], axis=1)
  moved_f0 = jnp.take_along_axis(f0, index, axis=1)

  real = positions < num_frames[:, None]
  loudness = jnp.where(real, jnp.mean(mel, axis=-1), jnp.inf)
  quietest = jnp.argmin(loudness, axis=1)
  floor = jnp.take_along_axis(mel, quietest[:, None, None], axis=1)  # [B, 1, M]
  fill = floor + JITTER * jax.random.normal(jitter_key, mel.shape, mel.dtype)

  new_frames = num_frames + lead + trail
  added = (positions < new_frames[:, None]) & ~speech
  mel_out = jnp.where(speech[..., None], moved_mel, jnp.where(added[..., None], fill, mel))
  f0_out = jnp.where(speech, moved_f0, jnp.where(added, 0.0, f0)).astype(f0.dtype)
  return mel_out, f0_out, new_frames
