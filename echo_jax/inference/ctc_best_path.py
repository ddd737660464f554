"""CTC best-path decoding: the most likely label per frame, repeats merged, blanks dropped."""

import jax
import jax.numpy as jnp

from echo_jax.token_ids import BOS_ID, CTC_BLANK_ID, EOS_ID


def ctc_greedy_tokens(ctc_logits: jax.Array, frame_valid: jax.Array) -> jax.Array:
  """Best path per frame, repeats merged, blanks dropped: [B, T] int32 token ids, left-aligned and
  padded with 0 (the layout of decoder_target_tokens without EOS)."""
  best = jnp.argmax(ctc_logits, axis=-1).astype(jnp.int32)
  previous = jnp.pad(best[:, :-1], ((0, 0), (1, 0)), constant_values=CTC_BLANK_ID)
  emit = frame_valid & (best != CTC_BLANK_ID) & (best != previous)
  emit = emit & (best != BOS_ID) & (best != EOS_ID)
  # Stable compaction: each emitted token goes to slot (number of emissions before it).
  slot = jnp.cumsum(emit, axis=-1) - 1
  slot = jnp.where(emit, slot, best.shape[1])  # non-emitted frames go to a dropped extra slot
  out = jnp.zeros((best.shape[0], best.shape[1] + 1), jnp.int32)
  out = out.at[jnp.arange(best.shape[0])[:, None], slot].set(jnp.where(emit, best, 0))
  return out[:, :-1]
