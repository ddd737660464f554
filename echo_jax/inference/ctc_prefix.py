"""Vectorised CTC prefix scoring for joint CTC/attention beam search (Watanabe et al. 2017).

Log domain throughout; blank = pad id 0; x_t(c) = log CTC posterior of label c at frame t. For a
label prefix g (ESPnet's CTCPrefixScore definitions):

  r_t^n(g)  probability that frames 0..t output exactly g, frame t emitting g's last label
  r_t^b(g)  the same with frame t emitting blank
  psi(g)    prefix probability: P(the collapsed path starts with g)

Extending g by a label c:

  phi_t      = r_t^b(g) if c == last(g) (a repeat needs a blank between) else r_t^b(g) + r_t^n(g)
  phi_{-1}   = 1 if g is empty else 0
  psi(g + c) = sum_t phi_{t-1} x_t(c)
  r_t^n(g + c) = (r_{t-1}^n(g + c) + phi_{t-1}) x_t(c)
  r_t^b(g + c) = (r_{t-1}^b(g + c) + r_{t-1}^n(g + c)) x_t(blank)
  psi(g + EOS) = r_{T-1}^n(g) + r_{T-1}^b(g) = P(the collapsed path is g)

psi(g + c) needs only g's r, so every label of the vocabulary is scored by one masked reduction
over frames ([T, rows, V]; optionally only M candidate labels per row); the r recursion (a
lax.scan over frames) runs only for the extensions a beam keeps. Padded frames emit blank with
probability 1, so they change nothing: r at the last frame is r at the last valid frame, and a
prefix that cannot fit the valid frames scores -inf.

Arrays are time-major: log_probs [T, B, V]; a state's r arrays are [T, B, K] and its other leaves
[B, K] (K hypotheses per utterance).
"""

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

BLANK_ID = 0  # the pad id, never a label
NO_LABEL = -1  # `last` of the empty prefix


class CtcPrefixState(NamedTuple):
  """CTC state of K label prefixes per utterance."""
  r_nonblank: jax.Array  # [T, B, K] log r_t^n(g)
  r_blank: jax.Array  # [T, B, K] log r_t^b(g)
  last: jax.Array  # [B, K] int32 last label of g, NO_LABEL when g is empty
  score: jax.Array  # [B, K] float32 log psi(g)


def frame_log_probs(ctc_logits: jax.Array, frame_valid: jax.Array) -> jax.Array:
  """CTC logits [B, T, V] and frame validity [B, T] -> time-major log posteriors [T, B, V] in
  which padded frames emit blank with probability 1."""
  log_probs = jax.nn.log_softmax(ctc_logits.astype(jnp.float32), axis=-1)
  pad_frame = jnp.where(jnp.arange(log_probs.shape[-1]) == BLANK_ID, 0.0, -jnp.inf)
  log_probs = jnp.where(frame_valid[..., None], log_probs, pad_frame)
  return jnp.transpose(log_probs, (1, 0, 2))


def initial_state(log_probs: jax.Array, num_hypotheses: int) -> CtcPrefixState:
  """The empty prefix for every one of K hypotheses of each utterance (log_probs [T, B, V])."""
  frames, batch_size, _ = log_probs.shape
  shape = (batch_size, num_hypotheses)
  r_blank = jnp.cumsum(log_probs[:, :, BLANK_ID], axis=0)  # all blanks so far
  r_blank = jnp.broadcast_to(r_blank[:, :, None], (frames,) + shape)
  return CtcPrefixState(
      r_nonblank=jnp.full((frames,) + shape, -jnp.inf, jnp.float32), r_blank=r_blank,
      last=jnp.full(shape, NO_LABEL, jnp.int32), score=jnp.zeros(shape, jnp.float32))


def _previous_phi(phi: jax.Array, empty: jax.Array) -> jax.Array:
  """phi [T, ...] -> phi_{t-1} [T, ...], with phi_{-1} = log 1 for the empty prefix, else -inf."""
  first = jnp.where(empty, 0.0, -jnp.inf).astype(phi.dtype)
  return jnp.concatenate([jnp.broadcast_to(first, phi.shape[1:])[None], phi[:-1]], axis=0)


def extension_scores(state: CtcPrefixState, log_probs: jax.Array, eos_id: int,
                     candidates: Optional[jax.Array] = None) -> jax.Array:
  """log psi(g + c) for every prefix g of `state` and every label c: [B, K, V].

  The EOS column holds log P(collapsed path = g); the blank column is -inf (not a label).
  `candidates` ([B, K, M] label ids) restricts the work to M labels per prefix (the others get
  -inf): the reduction is over [T, B, K, M] instead of [T, B, K, V].
  """
  frames, batch_size, vocab = log_probs.shape
  if candidates is None:
    labels = jnp.arange(vocab)
    label_log_probs = log_probs[:, :, None, :]  # [T, B, 1, V]
  else:
    labels = candidates
    label_log_probs = jnp.take_along_axis(
        log_probs[:, :, None, :],
        jnp.broadcast_to(candidates[None], (frames,) + candidates.shape), axis=3)  # [T, B, K, M]
  r_sum = jnp.logaddexp(state.r_nonblank, state.r_blank)  # [T, B, K]
  repeat = labels == state.last[..., None]  # [B, K, V or M]
  phi = jnp.where(repeat[None], state.r_blank[..., None], r_sum[..., None])
  phi = _previous_phi(phi, (state.last == NO_LABEL)[..., None])
  psi = logsumexp(phi + label_log_probs, axis=0)
  psi = jnp.where(labels == eos_id, r_sum[-1][..., None], psi)
  psi = jnp.where(labels == BLANK_ID, -jnp.inf, psi)
  if candidates is None:
    return psi
  rows = jnp.arange(batch_size)[:, None, None]
  hypotheses = jnp.arange(candidates.shape[1])[None, :, None]
  full = jnp.full(candidates.shape[:2] + (vocab,), -jnp.inf, psi.dtype)
  return full.at[rows, hypotheses, candidates].max(psi)  # max: a repeated candidate is harmless


def extend(state: CtcPrefixState, log_probs: jax.Array, labels: jax.Array) -> CtcPrefixState:
  """The state of g + labels for each prefix g of `state` (labels [B, K] int32, not blank/EOS)."""
  r_sum = jnp.logaddexp(state.r_nonblank, state.r_blank)
  phi = jnp.where(labels == state.last, state.r_blank, r_sum)  # [T, B, K]
  phi_before = _previous_phi(phi, state.last == NO_LABEL)
  label_log_probs = jnp.take_along_axis(log_probs, jnp.broadcast_to(
      labels[None], (log_probs.shape[0],) + labels.shape), axis=2)  # [T, B, K]
  blank_log_probs = log_probs[:, :, BLANK_ID][..., None]  # [T, B, 1]

  def frame(carry, inputs):
    r_nonblank, r_blank = carry
    phi_t, label_t, blank_t = inputs
    r_nonblank, r_blank = (jnp.logaddexp(r_nonblank, phi_t) + label_t,
                           jnp.logaddexp(r_blank, r_nonblank) + blank_t)
    return (r_nonblank, r_blank), (r_nonblank, r_blank)

  start = jnp.full(labels.shape, -jnp.inf, jnp.float32)
  _, (r_nonblank, r_blank) = jax.lax.scan(frame, (start, start),
                                          (phi_before, label_log_probs, blank_log_probs))
  score = logsumexp(phi_before + label_log_probs, axis=0)
  return CtcPrefixState(r_nonblank=r_nonblank, r_blank=r_blank, last=labels.astype(jnp.int32),
                        score=score)


def select(state: CtcPrefixState, hypotheses: jax.Array) -> CtcPrefixState:
  """Reorders each utterance's hypotheses: hypotheses [B, K] indexes the K axis."""
  return CtcPrefixState(
      r_nonblank=jnp.take_along_axis(state.r_nonblank, hypotheses[None], axis=2),
      r_blank=jnp.take_along_axis(state.r_blank, hypotheses[None], axis=2),
      last=jnp.take_along_axis(state.last, hypotheses, axis=1),
      score=jnp.take_along_axis(state.score, hypotheses, axis=1))
