"""Greedy and beam-search decoding of EchoModel, batched and jit-friendly.

The encoder runs once per batch. Each step feeds one token per sequence to the decoder, which keeps
its keys/values in the linen "cache" collection (fixed maximum length, `decode=True`). The uncached
variant re-runs the full decoder on the whole token buffer at every step; it exists as the reference
the cache is tested against and as the baseline of `measure_decode_speed`.

Output layout matches `decoder_target_tokens`: position i holds the token predicted after the
decoder saw BOS and output tokens 0..i-1, so a row reads `[prefix..., generated..., EOS, 0, ...]`.
Forced prefix tokens (after BOS) are part of the output. PAD and BOS are never generated.

Joint CTC/attention beam search (Watanabe et al. 2017; ESPnet's CTCPrefixScore): with
`ctc_weight` = w > 0 (the model needs a CTC head) a hypothesis scores
(1 - w) * attention log p + w * CTC prefix log p, the prefix probability computed by
`echo_jax.inference.ctc_prefix` for every vocabulary label at once over the encoder frames, and EOS scoring
the full-sequence CTC probability (`ctc_candidates` = M limits the CTC scoring to each
hypothesis's M best tokens by attention, ESPnet's pre-beam). A prefix that cannot fit the valid
CTC frames scores -inf, so a joint hypothesis never has more labels than the CTC head has frames:
runaway repetition ends without a separate guard. Greedy decoding with w > 0 is joint beam search
with one beam. With w = 0 the CTC head is never run and results are exactly those of
attention-only search. `max_tokens_per_frame` (opt-in, any weight) caps the tokens before EOS at
that ratio of each utterance's input frames.
"""

import functools
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from echo_jax.data.tokenizer import ids_to_text, trim_tokens  # noqa: F401 (re-exported)
from echo_jax.inference import ctc_prefix
from echo_jax.inference.ctc_best_path import ctc_greedy_tokens
from echo_jax.models.attention import CROSS_CACHE_ENTRIES
from echo_jax.models.config import model_settings

from echo_jax.token_ids import BOS_ID, EOS_ID, PAD_ID

# step(state, tokens [N, 1] int32, position scalar int32) -> (logits [N, V] float32, state)
StepFn = Callable[[Any, jax.Array, jax.Array], tuple]


def _decode_method(model):
  return type(model).decode


def _encode_method(model):
  return type(model).encode


def _ctc_method(model):
  method = getattr(type(model), "ctc", None)
  if method is None:
    raise ValueError(f"ctc_weight > 0 needs a model with a CTC head; {type(model).__name__} has "
                     "no ctc method")
  return method


def encode_batch(model, variables, batch):
  """Runs the encoder once; returns the model's EncoderOutput pytree."""
  return model.apply(variables, batch, method=_encode_method(model))


def _check_max_length(model, max_length: int):
  text_ctx = getattr(getattr(model, "config", None), "text_ctx", None)
  if text_ctx is not None and max_length > text_ctx:
    raise ValueError(f"decode max_length={max_length} exceeds model.text_ctx={text_ctx}; "
                     "lower config.decode.max_length or raise config.model.text_ctx")
  if max_length < 1:
    raise ValueError(f"decode max_length must be >= 1, got {max_length}")


def _batch_size(batch) -> int:
  for key in ("num_frames", "mel", "f0", "waveform"):
    if key in batch:
      return int(batch[key].shape[0])
  raise ValueError(f"batch has none of num_frames/mel/f0/waveform (keys: {sorted(batch)})")


def _repeat_rows(tree, batch_size: int, times: int):
  """Repeats every leaf with a leading batch axis `times` times (row b -> rows b*times ...)."""
  if times == 1:
    return tree

  def repeat(x):
    if hasattr(x, "shape") and x.ndim >= 1 and x.shape[0] == batch_size:
      return jnp.repeat(x, times, axis=0)
    return x
  return jax.tree_util.tree_map(repeat, tree)


def _gather_rows(tree, rows: jax.Array, num_rows: int):
  """Selects rows of every leaf with a leading axis of num_rows; scalars (cache index) stay.

  Cross-attention keys/values are skipped: beams are only reordered within their utterance, whose
  rows all hold the same encoder keys/values, so gathering them would copy them for nothing.
  """
  def gather(path, x):
    name = getattr(path[-1], "key", None) if path else None
    if name in CROSS_CACHE_ENTRIES:
      return x
    if hasattr(x, "shape") and x.ndim >= 1 and x.shape[0] == num_rows:
      return jnp.take(x, rows, axis=0)
    return x
  return jax.tree_util.tree_map_with_path(gather, tree)


def init_cache(model, variables, encoded, num_rows: int, max_length: int, utterances=None):
  """The decoder's zero "cache" collection for num_rows sequences of up to max_length tokens.

  Uses the model part's `init_decode_cache` when the model's module provides one (with
  `utterances`, the encoder output before beam repetition, its cross-attention entries are kept
  once per utterance); otherwise initialises the collection by tracing decode(decode=True) on a
  [num_rows, max_length] token array (the cache's max length is the token length of that first
  call).
  """
  import sys
  helper = getattr(sys.modules.get(type(model).__module__), "init_decode_cache", None)
  if helper is not None:
    return helper(model, variables, encoded, num_rows, max_length, utterances)
  tokens = jnp.zeros((num_rows, max_length), jnp.int32)
  _, mutated = jax.eval_shape(
      functools.partial(model.apply, method=_decode_method(model), decode=True, mutable=["cache"]),
      variables, encoded, tokens)
  return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), mutated["cache"])


def _cached_stepper(model, variables, encoded, num_rows: int, max_length: int, utterances=None):
  """State = the decoder's "cache" collection; one token per step."""
  params = {k: v for k, v in variables.items() if k != "cache"}
  decode = _decode_method(model)
  cache = init_cache(model, params, encoded, num_rows, max_length, utterances)

  def step(cache, tokens, position):
    del position  # the cache tracks its own index
    logits, mutated = model.apply({**params, "cache": cache}, encoded, tokens, decode=True,
                                  method=decode, mutable=["cache"])
    return logits[:, -1, :].astype(jnp.float32), mutated["cache"]
  return cache, step


def _uncached_stepper(model, variables, encoded, num_rows: int, max_length: int,
                      utterances=None):
  """State = the full input-token buffer [N, max_length]; the whole decoder re-runs every step.

  The decoder is causal, so positions after `position` (still 0) do not change the logits read at
  `position`.
  """
  del utterances  # the whole decoder re-runs on the repeated rows
  buffer = jnp.zeros((num_rows, max_length), jnp.int32)
  params = {k: v for k, v in variables.items() if k != "cache"}
  decode = _decode_method(model)

  def step(buffer, tokens, position):
    buffer = jax.lax.dynamic_update_slice(buffer, tokens.astype(jnp.int32), (0, position))
    logits = model.apply(params, encoded, buffer, method=decode)
    step_logits = jax.lax.dynamic_index_in_dim(logits, position, axis=1, keepdims=False)
    return step_logits.astype(jnp.float32), buffer
  return buffer, step


def _make_stepper(model, variables, encoded, num_rows, max_length, use_cache, utterances=None):
  maker = _cached_stepper if use_cache else _uncached_stepper
  return maker(model, variables, encoded, num_rows, max_length, utterances)


def _normalise_prefix(prefix, batch_size: int, max_length: int):
  """Returns (prefix [B, P] int32 or None, P)."""
  if prefix is None:
    return None, 0
  prefix = jnp.asarray(prefix, jnp.int32)
  if prefix.ndim == 1:
    prefix = jnp.broadcast_to(prefix[None, :], (batch_size, prefix.shape[0]))
  if prefix.ndim != 2 or prefix.shape[0] != batch_size:
    raise ValueError(f"prefix must be [P] or [batch={batch_size}, P], got shape {prefix.shape}")
  if prefix.shape[1] >= max_length:
    raise ValueError(f"prefix length {prefix.shape[1]} leaves no room within "
                     f"max_length={max_length}")
  if prefix.shape[1] == 0:
    return None, 0
  return prefix, int(prefix.shape[1])


def _mask_special(logits):
  """PAD and BOS are never generated (a generated PAD would also be masked as padding later)."""
  return logits.at[..., PAD_ID].set(-jnp.inf).at[..., BOS_ID].set(-jnp.inf)


def _previous_tokens(tokens, position):
  """Input at `position`: BOS at 0, else the output token at position-1. tokens: [..., L]."""
  prev = jax.lax.dynamic_index_in_dim(tokens, jnp.maximum(position - 1, 0), axis=-1,
                                      keepdims=False)
  return jnp.where(position == 0, jnp.int32(BOS_ID), prev)


def _check_ctc_weight(ctc_weight: float):
  if not 0.0 <= ctc_weight <= 1.0:
    raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")


def _token_limits(batch, max_tokens_per_frame: Optional[float]):
  """Most tokens before EOS per utterance ([B] int32, at least 1), or None when off."""
  if max_tokens_per_frame is None:
    return None
  if max_tokens_per_frame <= 0:
    raise ValueError(f"max_tokens_per_frame must be > 0, got {max_tokens_per_frame}")
  frames = jnp.asarray(batch["num_frames"], jnp.float32)
  return jnp.maximum(jnp.floor(max_tokens_per_frame * frames), 1.0).astype(jnp.int32)


def _end_when_over_limit(scores, position, limits):
  """scores [B, ..., V]: only EOS stays possible where `position` reached the row's limit."""
  over = (position >= limits).reshape(limits.shape + (1,) * (scores.ndim - 1))
  return jnp.where(over & (jnp.arange(scores.shape[-1]) != EOS_ID), -jnp.inf, scores)


def _weighted(logp, weight: float):
  """weight * logp with -inf kept -inf (a masked token stays impossible at weight 0)."""
  return jnp.where(logp == -jnp.inf, -jnp.inf, weight * logp)


def ctc_frame_log_probs(model, variables, encoded):
  """The CTC head on an EncoderOutput -> time-major log posteriors [T, B, V], padded frames
  emitting blank (the layout `echo_jax.inference.ctc_prefix` scores)."""
  params = {k: v for k, v in variables.items() if k != "cache"}
  ctc = model.apply(params, encoded, method=_ctc_method(model))
  return ctc_prefix.frame_log_probs(ctc.logits, ctc.valid)


def ctc_greedy_decode(model, variables, batch):
  """The CTC best path of the encoder alone: [B, T] token ids, repeats merged, blanks dropped,
  left-aligned and padded with 0 (needs a CTC head)."""
  params = {k: v for k, v in variables.items() if k != "cache"}
  encoded = model.apply(params, batch, method=_encode_method(model))
  ctc = model.apply(params, encoded, method=_ctc_method(model))
  return ctc_greedy_tokens(ctc.logits, ctc.valid)


def greedy_decode(model, variables, batch, max_length: int, prefix=None, *,
                  use_cache: bool = True,
                  max_tokens_per_frame: Optional[float] = None) -> jax.Array:
  """Greedy decoding to EOS. Returns int32 [B, max_length]; positions after EOS are 0.

  jit-friendly: wrap as `jax.jit(functools.partial(greedy_decode, model, max_length=L))`.
  `prefix` ([P] or [B, P] int32) forces the first P output tokens. `max_tokens_per_frame`: see
  the module docstring. (Greedy with a CTC weight: `beam_search` with beam_size 1.)
  """
  _check_max_length(model, max_length)
  batch_size = _batch_size(batch)
  prefix, prefix_len = _normalise_prefix(prefix, batch_size, max_length)
  limits = _token_limits(batch, max_tokens_per_frame)
  encoded = encode_batch(model, variables, batch)
  state, step = _make_stepper(model, variables, encoded, batch_size, max_length, use_cache)

  def cond(carry):
    position, _, finished, _ = carry
    return (position < max_length) & ~jnp.all(finished)

  def body(carry):
    position, tokens, finished, state = carry
    inputs = _previous_tokens(tokens, position)
    logits, state = step(state, inputs[:, None], position)
    logits = _mask_special(logits)
    if limits is not None:
      logits = _end_when_over_limit(logits, position, limits)
    next_token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if prefix is not None:
      forced = jax.lax.dynamic_index_in_dim(prefix, jnp.minimum(position, prefix_len - 1), axis=1,
                                            keepdims=False)
      next_token = jnp.where(position < prefix_len, forced, next_token)
    next_token = jnp.where(finished, jnp.int32(PAD_ID), next_token)
    tokens = jax.lax.dynamic_update_slice(tokens, next_token[:, None], (0, position))
    finished = finished | (next_token == EOS_ID)
    return position + 1, tokens, finished, state

  carry = (jnp.int32(0), jnp.zeros((batch_size, max_length), jnp.int32),
           jnp.zeros((batch_size,), bool), state)
  _, tokens, _, _ = jax.lax.while_loop(cond, body, carry)
  return tokens


def length_penalty_factor(length, alpha: float):
  """GNMT length normalisation ((5 + length) / 6) ** alpha; a score is log p / this factor."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def beam_search(model, variables, batch, beam_size: int, max_length: int, length_penalty: float,
                prefix=None, *, use_cache: bool = True, ctc_weight: float = 0.0,
                ctc_candidates: Optional[int] = None,
                max_tokens_per_frame: Optional[float] = None):
  """Beam search with length normalisation. Returns (tokens int32 [B, max_length], scores [B]).

  Rule (as HF `early_stopping=True`): a hypothesis ends when it emits EOS while ranked within the
  top `beam_size` candidates of its step; a batch row stops once `beam_size` hypotheses have ended,
  and the best of them by score / length_penalty_factor(length) is returned (length counts output
  tokens including EOS). Rows that never finish return their best live beam scored at max_length.
  With beam_size 1 this is exactly greedy decoding. Forced prefix tokens add 0 to the score.

  score = log p (attention), or with ctc_weight w > 0 (needs a CTC head)
  (1 - w) * log p + w * log p_ctc(prefix), p_ctc(prefix + EOS) being the full-sequence CTC
  probability; a row also stops once none of its live beams can still fit the CTC frames.
  `ctc_candidates` = M (ESPnet's pre-beam) CTC-scores only each hypothesis's M best tokens by
  attention (the rest cannot be chosen): faster for a large vocabulary, no longer exhaustive;
  None scores every token. `max_tokens_per_frame`: see the module docstring.
  """
  _check_max_length(model, max_length)
  _check_ctc_weight(ctc_weight)
  if ctc_candidates is not None and ctc_candidates < 1:
    raise ValueError(f"ctc_candidates must be >= 1 or None, got {ctc_candidates}")
  if beam_size < 1:
    raise ValueError(f"beam_size must be >= 1, got {beam_size}")
  batch_size = _batch_size(batch)
  prefix, prefix_len = _normalise_prefix(prefix, batch_size, max_length)
  limits = _token_limits(batch, max_tokens_per_frame)
  joint = ctc_weight > 0
  num_rows = batch_size * beam_size
  encoded = encode_batch(model, variables, batch)
  if joint:
    ctc_log_probs = ctc_frame_log_probs(model, variables, encoded)  # [T, B, V], once per utterance
    ctc_state = ctc_prefix.initial_state(ctc_log_probs, beam_size)
  else:
    ctc_state = None  # an empty pytree: the attention-only loop carries nothing more
  utterances = encoded
  encoded = _repeat_rows(encoded, batch_size, beam_size)
  state, step = _make_stepper(model, variables, encoded, num_rows, max_length, use_cache,
                              utterances)
  neg_inf = jnp.float32(-jnp.inf)
  beam_rank = jnp.arange(2 * beam_size)

  def cond(carry):
    position, done = carry[0], carry[-1]
    return (position < max_length) & ~jnp.all(done)

  def body(carry):
    position, live_seqs, live_logp, fin_seqs, fin_scores, state, ctc_state, done = carry
    inputs = _previous_tokens(live_seqs, position).reshape(num_rows, 1)
    logits, state = step(state, inputs, position)
    logp = jax.nn.log_softmax(_mask_special(logits), axis=-1)
    vocab = logp.shape[-1]
    logp = logp.reshape(batch_size, beam_size, vocab)
    if limits is not None:
      logp = _end_when_over_limit(logp, position, limits)
    if prefix is not None:
      forced = jax.lax.dynamic_index_in_dim(prefix, jnp.minimum(position, prefix_len - 1), axis=1,
                                            keepdims=False)
      is_forced = jnp.arange(vocab)[None, None, :] == forced[:, None, None]
      forced_logp = jnp.where(is_forced, 0.0, neg_inf)
      logp = jnp.where(position < prefix_len, forced_logp, logp)
    if joint:
      # The CTC term telescopes: each step adds log psi(g + c) - log psi(g). Dead beams
      # (psi(g) = 0) stay dead rather than turning NaN.
      candidates = None
      if ctc_candidates is not None and ctc_candidates < vocab:
        candidates = jax.lax.top_k(logp, ctc_candidates)[1]
      psi = ctc_prefix.extension_scores(ctc_state, ctc_log_probs, EOS_ID, candidates)
      gain = jnp.where(jnp.isfinite(ctc_state.score)[..., None],
                       psi - ctc_state.score[..., None], neg_inf)
      if prefix is not None:
        gain = jnp.where(position < prefix_len, 0.0, gain)
      logp = _weighted(logp, 1.0 - ctc_weight) + ctc_weight * gain
    candidates = (live_logp[:, :, None] + logp).reshape(batch_size, beam_size * vocab)
    top_logp, top_index = jax.lax.top_k(candidates, 2 * beam_size)
    parent = top_index // vocab
    token = (top_index % vocab).astype(jnp.int32)
    cand_seqs = jnp.take_along_axis(live_seqs, parent[:, :, None], axis=1)
    cand_seqs = jax.lax.dynamic_update_slice(cand_seqs, token[:, :, None], (0, 0, position))
    is_eos = token == EOS_ID

    # Live beams: the best beam_size candidates that did not end.
    live_logp, keep = jax.lax.top_k(jnp.where(is_eos, neg_inf, top_logp), beam_size)
    live_seqs = jnp.take_along_axis(cand_seqs, keep[:, :, None], axis=1)
    source_beam = jnp.take_along_axis(parent, keep, axis=1)
    rows = (jnp.arange(batch_size)[:, None] * beam_size + source_beam).reshape(-1)
    state = _gather_rows(state, rows, num_rows)
    if joint:
      ctc_state = ctc_prefix.extend(ctc_prefix.select(ctc_state, source_beam), ctc_log_probs,
                                    jnp.take_along_axis(token, keep, axis=1))

    # Finished hypotheses: EOS candidates ranked within the top beam_size, while the row is open.
    ends = is_eos & (beam_rank[None, :] < beam_size) & ~done[:, None] & jnp.isfinite(top_logp)
    end_scores = jnp.where(ends, top_logp / length_penalty_factor(position + 1, length_penalty),
                           neg_inf)
    all_scores = jnp.concatenate([fin_scores, end_scores], axis=1)
    all_seqs = jnp.concatenate([fin_seqs, cand_seqs], axis=1)
    fin_scores, best = jax.lax.top_k(all_scores, beam_size)
    fin_seqs = jnp.take_along_axis(all_seqs, best[:, :, None], axis=1)
    done = done | (jnp.sum(jnp.isfinite(fin_scores), axis=1) >= beam_size)
    if joint:  # every live prefix outgrew the CTC frames: only its EOS could ever end it
      done = done | ~jnp.any(jnp.isfinite(live_logp), axis=1)
    return position + 1, live_seqs, live_logp, fin_seqs, fin_scores, state, ctc_state, done

  live_logp = jnp.full((batch_size, beam_size), neg_inf).at[:, 0].set(0.0)
  seqs = jnp.zeros((batch_size, beam_size, max_length), jnp.int32)
  carry = (jnp.int32(0), seqs, live_logp, seqs, jnp.full((batch_size, beam_size), neg_inf), state,
           ctc_state, jnp.zeros((batch_size,), bool))
  _, live_seqs, live_logp, fin_seqs, fin_scores, _, _, done = jax.lax.while_loop(cond, body,
                                                                                 carry)

  # Rows still open at max_length also consider their live beams (which have length max_length).
  live_scores = jnp.where(done[:, None], neg_inf,
                          live_logp / length_penalty_factor(max_length, length_penalty))
  all_scores = jnp.concatenate([fin_scores, live_scores], axis=1)
  all_seqs = jnp.concatenate([fin_seqs, live_seqs], axis=1)
  best = jnp.argmax(all_scores, axis=1)
  tokens = jnp.take_along_axis(all_seqs, best[:, None, None], axis=1)[:, 0, :]
  scores = jnp.take_along_axis(all_scores, best[:, None], axis=1)[:, 0]
  return tokens, scores


def matrices_in_compute_dtype(model, variables):
  """The float matrices (kernels, embeddings) cast to the model's compute dtype, once per call.

  A cached decoding step reads every decoder matrix once per token and is memory-bound at small
  batch, so matrices stored in bfloat16 halve the bytes it reads where the backend keeps them in
  bfloat16 (XLA:CPU upcasts batch-1 products and hoists the converts out of the loop:
  docs/performance.md, "bfloat16 on this CPU"); the layers would cast them to that dtype anyway.
  Vectors and scalars (biases, norm scales, pitch parameters) stay float32. A float32 model is
  returned unchanged.
  """
  dtype = jnp.dtype(model_settings(model.config).dtype)
  if dtype == jnp.float32:
    return variables

  def cast(x):
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    return x.astype(dtype) if floating and x.ndim >= 2 else x
  return {**variables, "params": jax.tree_util.tree_map(cast, variables["params"])}


class DecodeFn(NamedTuple):
  """A jitted decoder: `fn(variables, batch, prefix=None) -> tokens [B, L]`; `traces()` counts
  how many times it was traced (one per compiled shape signature)."""
  fn: Callable
  traces: Callable[[], int]


def make_decode_fn(model, max_length: int, beam_size: int = 1, length_penalty: float = 0.0,
                   use_cache: bool = True, ctc_weight: float = 0.0,
                   ctc_candidates: Optional[int] = None,
                   max_tokens_per_frame: Optional[float] = None) -> DecodeFn:
  """One jitted decoder reused across batches; same shapes (bucket, batch size) -> no recompile.

  beam_size 1 without a CTC weight is greedy decoding; with ctc_weight > 0 it is joint beam
  search with one beam (the CTC prefix score needs the beam machinery).
  """
  _check_ctc_weight(ctc_weight)
  count = [0]

  def run(variables, batch, prefix=None):
    count[0] += 1  # Python side effect: runs only while tracing
    variables = matrices_in_compute_dtype(model, variables)
    if beam_size == 1 and ctc_weight == 0:
      return greedy_decode(model, variables, batch, max_length, prefix, use_cache=use_cache,
                           max_tokens_per_frame=max_tokens_per_frame)
    tokens, _ = beam_search(model, variables, batch, beam_size, max_length, length_penalty, prefix,
                            use_cache=use_cache, ctc_weight=ctc_weight,
                            ctc_candidates=ctc_candidates,
                            max_tokens_per_frame=max_tokens_per_frame)
    return tokens

  return DecodeFn(jax.jit(run), lambda: count[0])


def decode_batch_text(tokens, tokenizer) -> list:
  """[B, L] token ids -> list of B strings (cut at EOS, special ids dropped)."""
  return [ids_to_text(tokenizer, row) for row in np.asarray(tokens)]


def _generated_token_count(tokens) -> int:
  """Tokens the decoder produced: everything up to and including EOS (the loop's real work)."""
  tokens = np.asarray(tokens)
  return int(np.sum(tokens != PAD_ID))


def measure_decode_speed(model, variables, batch, max_length: int, beam_size: int = 1,
                         use_cache: bool = True, *, length_penalty: float = 0.6,
                         repeats: int = 3, sample_rate: int = 16000,
                         hop_length: int = 128, ctc_weight: float = 0.0,
                         ctc_candidates: Optional[int] = None) -> dict:
  """Times jitted decoding of one batch (encoder included), after one compile call, and the
  jitted encoder alone on the same batch, so the decoder's share is known.

  tokens_per_s counts output tokens up to and including EOS over all rows; real_time_factor is
  decode seconds / audio seconds (audio = sum(num_frames) * hop_length / sample_rate), < 1 is
  faster than real time. decoder_seconds = seconds - encoder_seconds (medians): the part the KV
  cache changes.
  """
  decoder = make_decode_fn(model, max_length, beam_size, length_penalty, use_cache, ctc_weight,
                           ctc_candidates)
  encoder = jax.jit(functools.partial(encode_batch, model))
  start = time.perf_counter()
  tokens = jax.block_until_ready(decoder.fn(variables, batch))
  compile_s = time.perf_counter() - start
  jax.block_until_ready(encoder(variables, batch))
  timings, encoder_timings = [], []
  for _ in range(max(1, repeats)):
    start = time.perf_counter()
    tokens = jax.block_until_ready(decoder.fn(variables, batch))
    timings.append(time.perf_counter() - start)
    start = time.perf_counter()
    jax.block_until_ready(encoder(variables, batch))
    encoder_timings.append(time.perf_counter() - start)
  seconds = float(np.median(timings))
  encoder_seconds = min(float(np.median(encoder_timings)), seconds)
  decoder_seconds = seconds - encoder_seconds
  num_tokens = _generated_token_count(tokens)
  audio_seconds = float(np.sum(np.asarray(batch["num_frames"]))) * hop_length / sample_rate
  return {
      "use_cache": bool(use_cache),
      "beam_size": int(beam_size),
      "ctc_weight": float(ctc_weight),
      "batch_size": _batch_size(batch),
      "max_length": int(max_length),
      "generated_tokens": num_tokens,
      "seconds": seconds,
      "encoder_seconds": encoder_seconds,
      "decoder_seconds": decoder_seconds,
      "first_call_seconds": compile_s,
      "tokens_per_s": num_tokens / seconds if seconds > 0 else float("inf"),
      "decoder_tokens_per_s": num_tokens / decoder_seconds if decoder_seconds > 0 else float("inf"),
      "audio_seconds": audio_seconds,
      "real_time_factor": seconds / audio_seconds if audio_seconds > 0 else float("inf"),
      "traces": decoder.traces(),
  }
