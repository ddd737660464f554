"""Training losses beyond the plain token cross-entropy: label smoothing and the CTC branch.

All return sums over the batch (float32) with their counts, so that the caller divides by the
*global* count, as metrics.token_sums does for the cross-entropy.
"""

from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from echo_jax.token_ids import BOS_ID, CTC_BLANK_ID, EOS_ID, PAD_ID


def smoothed_token_loss_sum(logits: jax.Array, targets: jax.Array,
                            label_smoothing: float) -> jax.Array:
  """Sum over real (non-pad) targets of the cross-entropy against smoothed labels:
  (1 - eps) * nll(target) + eps * mean over the vocabulary of -log p (optax.smooth_labels' target,
  written without the one-hot)."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  uniform = -jnp.mean(log_probs, axis=-1)
  loss = (1.0 - label_smoothing) * nll + label_smoothing * uniform
  return jnp.sum(jnp.where(targets != PAD_ID, loss, 0.0))


def ctc_labels(targets: jax.Array) -> jax.Array:
  """decoder_target_tokens [B, L] -> CTC labels: the same ids without BOS/EOS (pads after)."""
  return jnp.where((targets == EOS_ID) | (targets == BOS_ID), PAD_ID, targets)


def ctc_sums(ctc_logits: jax.Array, frame_valid: jax.Array, targets: jax.Array,
             row_weights: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
  """Summed CTC loss (optax.ctc_loss, blank = pad id 0) and the label count, both float32.

  ctc_logits [B, T, V], frame_valid [B, T] bool, targets = decoder_target_tokens [B, L].
  `row_weights` ([B] bool) drops whole rows (eval padding).
  """
  labels = ctc_labels(targets)
  label_valid = labels != PAD_ID
  per_row = optax.ctc_loss(ctc_logits.astype(jnp.float32),
                           1.0 - frame_valid.astype(jnp.float32), labels,
                           1.0 - label_valid.astype(jnp.float32), blank_id=CTC_BLANK_ID)
  counts = jnp.sum(label_valid.astype(jnp.float32), axis=-1)
  keep = counts > 0
  if row_weights is not None:
    keep = keep & row_weights.astype(bool)
  return {"ctc_loss_sum": jnp.sum(jnp.where(keep, per_row, 0.0)),
          "num_labels": jnp.sum(jnp.where(keep, counts, 0.0))}


def ctc_loss_per_label(ctc_logits: jax.Array, frame_valid: jax.Array,
                       targets: jax.Array) -> jax.Array:
  """The batch's summed CTC loss divided by its label count (the training CTC term)."""
  sums = ctc_sums(ctc_logits, frame_valid, targets)
  return sums["ctc_loss_sum"] / jnp.maximum(sums["num_labels"], 1.0)


def mean_ctc_loss(ctc_logits: Sequence[jax.Array], frame_valid: jax.Array,
                  targets: jax.Array) -> jax.Array:
  """The mean over `ctc_logits` (intermediate CTC heads) of each one's CTC loss per label."""
  per_head = [ctc_loss_per_label(logits, frame_valid, targets) for logits in ctc_logits]
  return sum(per_head) / len(per_head)
