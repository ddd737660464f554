"""Joint CTC/attention decoding: the CTC prefix scorer against brute-force enumeration, joint beam
search against a plain-Python reference, CTC-only search against the exhaustive best, the length
guard, and compile counts."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from echo_jax.inference import ctc_prefix
from echo_jax.inference import decoding
from test_decoding import make_batch, tiny_model_config

MAX_LENGTH = 10
NEG_INF = -np.inf


# ------------------------------------------------------------------------------------------------
# Plain references: CTC by enumeration / forward algorithm (float64), beam search in Python.

def collapse(path):
  out, previous = [], None
  for label in path:
    if label != ctc_prefix.BLANK_ID and label != previous:
      out.append(int(label))
    previous = label
  return tuple(out)


def enumerate_ctc(log_probs: np.ndarray) -> dict:
  """{collapsed label sequence: probability} over every path of the frames of log_probs [T, V]."""
  probs = np.exp(log_probs.astype(np.float64))
  frames, vocab = probs.shape
  out = {}
  for path in itertools.product(range(vocab), repeat=frames):
    p = np.prod(probs[np.arange(frames), list(path)])
    out[collapse(path)] = out.get(collapse(path), 0.0) + p
  return out


def enumerated_prefix_probability(sequences: dict, prefix) -> float:
  """ESPnet's prefix probability: the mass of paths whose collapse starts with `prefix`."""
  prefix = tuple(prefix)
  return sum(p for seq, p in sequences.items() if seq[:len(prefix)] == prefix)


def ctc_alphas(probs: np.ndarray, labels):
  """The CTC forward variables over the blank-extended labels (probability domain, float64)."""
  extended = [ctc_prefix.BLANK_ID]
  for label in labels:
    extended += [label, ctc_prefix.BLANK_ID]
  frames, states = probs.shape[0], len(extended)
  alpha = np.zeros((frames, states))
  alpha[0, 0] = probs[0, extended[0]]
  if states > 1:
    alpha[0, 1] = probs[0, extended[1]]
  for t in range(1, frames):
    for s in range(states):
      total = alpha[t - 1, s] + (alpha[t - 1, s - 1] if s >= 1 else 0.0)
      if s >= 2 and extended[s] != ctc_prefix.BLANK_ID and extended[s] != extended[s - 2]:
        total += alpha[t - 1, s - 2]
      alpha[t, s] = total * probs[t, extended[s]]
  return alpha, extended


def forward_full_log_prob(probs: np.ndarray, labels) -> float:
  alpha, _ = ctc_alphas(probs, labels)
  total = alpha[-1, -1] + (alpha[-1, -2] if labels else 0.0)
  return float(np.log(total)) if total > 0 else NEG_INF


def forward_prefix_log_prob(probs: np.ndarray, labels) -> float:
  """Sum over frames t of the mass entering the last label's state at t (a new emission)."""
  if not labels:
    return 0.0
  alpha, extended = ctc_alphas(probs, labels)
  s = len(extended) - 2
  total = alpha[0, s] if s == 1 else 0.0
  for t in range(1, len(probs)):
    inflow = alpha[t - 1, s - 1]
    if s >= 2 and extended[s] != extended[s - 2]:
      inflow += alpha[t - 1, s - 2]
    total += inflow * probs[t, extended[s]]
  return float(np.log(total)) if total > 0 else NEG_INF


def reference_beam_search(attention_log_probs, ctc_probs, beam_size, max_length, length_penalty,
                          ctc_weight, prefix=(), ctc_candidates=None):
  """decoding.beam_search's rule written out per hypothesis.

  attention_log_probs(sequences [B][K] tuples, position) -> [B, K, V] (PAD/BOS at -inf);
  ctc_probs: per utterance, CTC posteriors [T_valid, V] (float64), or None at weight 0;
  prefix: tokens forced at the first positions (adding 0 to the score); ctc_candidates: CTC
  scores only for that many best tokens by attention. Returns (tokens [B, L] int32, scores [B]).
  """
  eos = decoding.EOS_ID
  batch_size = attention_log_probs.batch_size

  def lp(length):
    return ((5.0 + length) / 6.0) ** length_penalty

  live = [[((), 0.0)] + [((), NEG_INF)] * (beam_size - 1) for _ in range(batch_size)]
  finished = [[] for _ in range(batch_size)]
  done = [False] * batch_size
  for position in range(max_length):
    if all(done):
      break
    att = np.asarray(attention_log_probs([[seq for seq, _ in row] for row in live], position),
                     np.float64)
    vocab = att.shape[-1]
    for b in range(batch_size):
      candidates = []
      for k, (seq, score) in enumerate(live[b]):
        step = att[b, k]
        if position < len(prefix):
          step = np.where(np.arange(vocab) == prefix[position], 0.0, NEG_INF)
        elif ctc_weight > 0:
          probs = ctc_probs[b]
          before = forward_prefix_log_prob(probs, list(seq))
          after = np.full(vocab, NEG_INF)
          for c in range(vocab):
            if c == eos:
              after[c] = forward_full_log_prob(probs, list(seq))
            elif c != ctc_prefix.BLANK_ID:
              after[c] = forward_prefix_log_prob(probs, list(seq) + [c])
          gain = after - before if np.isfinite(before) else np.full(vocab, NEG_INF)
          if ctc_candidates is not None:
            order = sorted(range(vocab), key=lambda c: -step[c])  # ties: lower id first
            gain[order[ctc_candidates:]] = NEG_INF
          weighted = np.where(step == NEG_INF, NEG_INF, (1.0 - ctc_weight) * step)
          step = weighted + ctc_weight * gain
        for c in range(vocab):
          candidates.append((score + step[c], k * vocab + c, seq + (c,)))
      candidates.sort(key=lambda item: (-item[0], item[1]))
      top = candidates[:2 * beam_size]
      alive = [(seq, s) for s, _, seq in top if seq[-1] != eos][:beam_size]
      live[b] = alive + [((), NEG_INF)] * (beam_size - len(alive))
      for rank, (s, _, seq) in enumerate(top):
        if seq[-1] == eos and rank < beam_size and not done[b] and np.isfinite(s):
          finished[b].append((s / lp(position + 1), seq))
      finished[b] = sorted(finished[b], key=lambda item: -item[0])[:beam_size]
      done[b] = done[b] or len(finished[b]) >= beam_size
      if ctc_weight > 0:
        done[b] = done[b] or not any(np.isfinite(s) for _, s in live[b])
  results = []
  for b in range(batch_size):
    pool = list(finished[b])
    if not done[b]:
      pool += [(s / lp(max_length), seq) for seq, s in live[b]]
    score, seq = max(pool, key=lambda item: item[0])
    results.append((list(seq) + [0] * (max_length - len(seq)), score))
  return np.asarray([r[0] for r in results], np.int32), np.asarray([r[1] for r in results])


class TeacherForced:
  """Attention log-probs of the next token after each hypothesis, by one uncached pass."""

  def __init__(self, apply, variables, batch, max_length):
    self.apply, self.variables, self.batch = apply, variables, batch
    self.max_length = max_length
    self.batch_size = len(batch["num_frames"])

  def __call__(self, sequences, position):
    beam = len(sequences[0])
    inputs = np.zeros((self.batch_size * beam, self.max_length), np.int32)
    for row, seq in enumerate(s for utterance in sequences for s in utterance):
      inputs[row, 0] = decoding.BOS_ID
      inputs[row, 1:len(seq) + 1] = seq
    rows = np.repeat(np.arange(self.batch_size), beam)
    copies = {k: np.asarray(v)[rows] for k, v in self.batch.items()}
    logits = self.apply(self.variables, dict(copies, decoder_input_tokens=inputs))[:, position]
    logits = logits.at[..., decoding.PAD_ID].set(-jnp.inf).at[..., decoding.BOS_ID].set(-jnp.inf)
    return np.asarray(jax.nn.log_softmax(logits, axis=-1)).reshape(self.batch_size, beam, -1)


# ------------------------------------------------------------------------------------------------
# A sharpened tiny model with a CTC head.

def joint_model(vocab_size: int, seed: int, ctc_sharpness: float):
  import ml_collections
  from echo_jax.models.echo import EchoModel
  config = ml_collections.ConfigDict(tiny_model_config(vocab_size=vocab_size))
  config.ctc_head = True
  model = EchoModel(config=ml_collections.FrozenConfigDict(config))
  init_batch = dict(make_batch([64], seed=0), decoder_input_tokens=np.ones((1, 4), np.int32))
  params = jax.jit(model.init)(jax.random.PRNGKey(seed), init_batch)["params"]
  params = jax.tree_util.tree_map(lambda x: x, params)
  # As in test_decoding: larger positions make the attention output vary along the sequence; a
  # scaled CTC projection makes the CTC posteriors peaky, so that they disagree with attention.
  params["decoder"]["positional_embedding"] = params["decoder"]["positional_embedding"] * 30.0
  params["ctc_projection"]["kernel"] = params["ctc_projection"]["kernel"] * ctc_sharpness
  return model, {"params": params}


def valid_ctc_log_probs(model, variables, batch):
  """Per utterance, the CTC head's log posteriors over its valid frames only: [T_b, V]."""
  from echo_jax.models.echo import EchoModel

  def run(variables, batch):
    encoded = model.apply(variables, batch, method=EchoModel.encode)
    ctc = model.apply(variables, encoded, method=EchoModel.ctc)
    return jax.nn.log_softmax(ctc.logits, axis=-1), ctc.valid
  log_probs, valid = jax.jit(run)(variables, batch)
  return [np.asarray(lp)[np.asarray(v)] for lp, v in zip(log_probs, valid)]


class Setup:
  """The joint model, one batch of 4 utterances (16/10/13/6 CTC frames) and cached jitted
  searches shared by the tests (compiles are the slow part)."""

  def __init__(self):
    self.model, self.variables = joint_model(vocab_size=24, seed=0, ctc_sharpness=8.0)
    self.batch = make_batch([64, 37, 50, 21], seed=0)
    self.apply = jax.jit(self.model.apply)
    self.ctc_log_probs = valid_ctc_log_probs(self.model, self.variables, self.batch)
    self._beams = {}

  def beam(self, beam_size, ctc_weight, **kwargs):
    key = (beam_size, ctc_weight, tuple(sorted(kwargs.items())))
    if key not in self._beams:
      self._beams[key] = jax.jit(functools.partial(
          decoding.beam_search, self.model, beam_size=beam_size, max_length=MAX_LENGTH,
          length_penalty=0.6, ctc_weight=ctc_weight, **kwargs))
    return self._beams[key]

  def reference(self, beam_size, ctc_weight, batch=None, prefix=(), ctc_candidates=None):
    batch = self.batch if batch is None else batch
    ctc = valid_ctc_log_probs(self.model, self.variables, batch)
    return reference_beam_search(
        TeacherForced(self.apply, self.variables, batch, MAX_LENGTH),
        [np.exp(x.astype(np.float64)) for x in ctc], beam_size, MAX_LENGTH, 0.6, ctc_weight,
        prefix, ctc_candidates)


@pytest.fixture(scope="module")
def setup():
  return Setup()


# ------------------------------------------------------------------------------------------------
# The scorer.

def test_prefix_scorer_equals_brute_force_enumeration():
  # Two utterances of 5 and 3 valid frames (padded to 7), vocabulary {blank, 1, 2, eos=3}.
  rng = np.random.default_rng(0)
  vocab, eos, frames, lengths = 4, 3, 7, (5, 3)
  logits = (2.0 * rng.normal(size=(2, frames, vocab))).astype(np.float32)
  valid = np.arange(frames)[None, :] < np.asarray(lengths)[:, None]
  log_probs = ctc_prefix.frame_log_probs(jnp.asarray(logits), jnp.asarray(valid))
  assert log_probs.shape == (frames, 2, vocab)
  exact = np.asarray(jax.nn.log_softmax(logits, axis=-1))
  prefixes = [p for n in range(4) for p in itertools.product((1, 2), repeat=n)]
  extend = jax.jit(ctc_prefix.extend)
  ctc_loss = jax.jit(lambda logits, pad, labels, label_pad: optax.ctc_loss(
      logits, pad.astype(jnp.float32), labels, label_pad.astype(jnp.float32)))
  scores = jax.jit(functools.partial(ctc_prefix.extension_scores, eos_id=eos))
  candidates = jnp.asarray([[[1, eos]], [[eos, 1]]], jnp.int32)  # [B, K=1, M=2]
  for b, length in enumerate(lengths):
    sequences = enumerate_ctc(exact[b, :length])
    assert sum(sequences.values()) == pytest.approx(1.0)
    for prefix in prefixes:
      # Every utterance follows the same prefix; row b is checked against its own enumeration.
      state = ctc_prefix.initial_state(log_probs, 1)
      for label in prefix:
        state = extend(state, log_probs, jnp.full((2, 1), label, jnp.int32))
      expected = enumerated_prefix_probability(sequences, prefix)
      np.testing.assert_allclose(np.exp(float(state.score[b, 0])), expected, rtol=1e-5,
                                 atol=1e-12)
      log_psi = np.asarray(scores(state, log_probs))[b, 0]
      psi = np.exp(log_psi.astype(np.float64))
      for label in (1, 2):
        np.testing.assert_allclose(
            psi[label], enumerated_prefix_probability(sequences, prefix + (label,)), rtol=1e-5,
            atol=1e-12, err_msg=f"prefix {prefix} + {label}, utterance {b}")
      # EOS: the full-sequence probability, by enumeration and as exp(-optax.ctc_loss).
      full = sequences.get(prefix, 0.0)
      np.testing.assert_allclose(psi[eos], full, rtol=1e-5, atol=1e-12)
      if prefix:
        labels = np.zeros((1, 3), np.int32)
        labels[0, :len(prefix)] = prefix
        loss = ctc_loss(logits[b:b + 1], ~valid[b:b + 1], labels, labels == 0)
        np.testing.assert_allclose(psi[eos], np.exp(-float(loss[0])), rtol=1e-4, atol=1e-12)
      assert psi[ctc_prefix.BLANK_ID] == 0.0
      # Scoring only candidate labels gives the same values for them and nothing for the rest.
      pruned = np.asarray(scores(state, log_probs, candidates=candidates))[b, 0]
      np.testing.assert_array_equal(pruned[[1, eos]], log_psi[[1, eos]])
      assert np.all(pruned[[0, 2]] == -np.inf)
      # A prefix that cannot fit the valid frames (e.g. 1 1 1 in 3 frames) is exactly impossible.
      if expected == 0.0:
        assert float(state.score[b, 0]) == -np.inf


def test_forward_references_agree_with_enumeration():
  # The float64 forward-algorithm references used by the beam-search reference below.
  rng = np.random.default_rng(1)
  logits = 2.0 * rng.normal(size=(5, 4))
  log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
  sequences = enumerate_ctc(log_probs)
  probs = np.exp(log_probs.astype(np.float64))
  for prefix in [(), (1,), (1, 1), (2, 1, 2), (3, 3)]:
    assert np.exp(forward_prefix_log_prob(probs, list(prefix))) == pytest.approx(
        enumerated_prefix_probability(sequences, prefix), rel=1e-9, abs=1e-15)
    assert np.exp(forward_full_log_prob(probs, list(prefix))) == pytest.approx(
        sequences.get(prefix, 0.0), rel=1e-9, abs=1e-15)


# ------------------------------------------------------------------------------------------------
# Beam search.

def test_weight_zero_is_attention_only_search(setup):
  # Weight 0 follows the attention-only rule exactly and never runs the CTC head: a model
  # without one decodes the same tokens and scores, bit for bit.
  tokens, scores = setup.beam(3, 0.0)(setup.variables, setup.batch)
  ref_tokens, ref_scores = setup.reference(3, 0.0)
  np.testing.assert_array_equal(np.asarray(tokens), ref_tokens)
  np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=1e-5, atol=1e-5)
  import ml_collections
  from echo_jax.models.echo import EchoModel
  config = ml_collections.ConfigDict(setup.model.config)
  config.ctc_head = False
  headless = EchoModel(config=ml_collections.FrozenConfigDict(config))
  params = {k: v for k, v in setup.variables["params"].items() if not k.startswith("ctc_")}
  plain_tokens, plain_scores = jax.jit(functools.partial(
      decoding.beam_search, headless, beam_size=3, max_length=MAX_LENGTH, length_penalty=0.6,
      ctc_weight=0.0))({"params": params}, setup.batch)
  np.testing.assert_array_equal(np.asarray(plain_tokens), np.asarray(tokens))
  np.testing.assert_array_equal(np.asarray(plain_scores), np.asarray(scores))
  with pytest.raises(ValueError, match="CTC head"):
    decoding.beam_search(headless, {"params": params}, setup.batch, 3, MAX_LENGTH, 0.6,
                         ctc_weight=0.5)


def test_joint_beam_search_equals_reference(setup):
  tokens, scores = setup.beam(3, 0.4)(setup.variables, setup.batch)
  ref_tokens, ref_scores = setup.reference(3, 0.4)
  np.testing.assert_array_equal(np.asarray(tokens), ref_tokens)
  np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=1e-4, atol=1e-4)
  attention_only = np.asarray(setup.beam(3, 0.0)(setup.variables, setup.batch)[0])
  assert not np.array_equal(np.asarray(tokens), attention_only), "CTC should change the result"
  for row, valid in zip(np.asarray(tokens), setup.ctc_log_probs):
    assert len(decoding.trim_tokens(row)) <= len(valid)


def test_ctc_candidates_prune_like_the_reference(setup):
  # Pre-beam of 4 tokens per hypothesis; 22 = every token but PAD/BOS is the full search.
  tokens, scores = setup.beam(3, 0.4, ctc_candidates=4)(setup.variables, setup.batch)
  ref_tokens, ref_scores = setup.reference(3, 0.4, ctc_candidates=4)
  np.testing.assert_array_equal(np.asarray(tokens), ref_tokens)
  np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=1e-4, atol=1e-4)
  full_tokens, full_scores = setup.beam(3, 0.4)(setup.variables, setup.batch)
  every_tokens, every_scores = setup.beam(3, 0.4, ctc_candidates=22)(setup.variables, setup.batch)
  np.testing.assert_array_equal(np.asarray(every_tokens), np.asarray(full_tokens))
  np.testing.assert_allclose(np.asarray(every_scores), np.asarray(full_scores), rtol=1e-6)


def test_joint_forced_prefix_equals_reference(setup):
  # Forced tokens add 0 to both terms; the CTC state still follows them.
  prefix = [7, 9]
  tokens, scores = setup.beam(3, 0.4)(setup.variables, setup.batch,
                                      prefix=np.asarray(prefix, np.int32))
  np.testing.assert_array_equal(np.asarray(tokens)[:, :2], np.tile(prefix, (4, 1)))
  ref_tokens, ref_scores = setup.reference(3, 0.4, prefix=prefix)
  np.testing.assert_array_equal(np.asarray(tokens), ref_tokens)
  np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=1e-4, atol=1e-4)


def test_ctc_only_search_finds_the_exhaustive_best():
  # Weight 1 scores by CTC alone: with vocabulary {PAD, BOS, EOS, 3, 4, 5}, max_length 3 and a
  # beam of 16 every hypothesis stays, so the result is the best of all label sequences, by
  # full-sequence CTC probability for those ending in EOS, by prefix probability for the
  # 3-label ones that run to max_length (length penalty 0: scores are plain log probabilities).
  model, variables = joint_model(vocab_size=6, seed=1, ctc_sharpness=8.0)
  batch = make_batch([20], seed=3, frames=32)  # 5 valid CTC frames of 8 (downsampling 4)
  log_probs = valid_ctc_log_probs(model, variables, batch)[0]
  assert len(log_probs) == 5
  sequences = enumerate_ctc(log_probs)
  max_length = 3
  candidates, expected = [], []
  for length in range(max_length):
    for body in itertools.product((3, 4, 5), repeat=length):
      candidates.append(list(body) + [decoding.EOS_ID] + [0] * (max_length - length - 1))
      expected.append(sequences.get(body, 0.0))
  for body in itertools.product((3, 4, 5), repeat=max_length):
    candidates.append(list(body))
    expected.append(enumerated_prefix_probability(sequences, body))
  expected = np.log(np.asarray(expected))
  best = int(np.argmax(expected))
  assert np.sort(expected)[-1] - np.sort(expected)[-2] > 1e-3  # a unique optimum
  tokens, scores = jax.jit(functools.partial(
      decoding.beam_search, model, beam_size=16, max_length=max_length, length_penalty=0.0,
      ctc_weight=1.0))(variables, batch)
  np.testing.assert_array_equal(np.asarray(tokens)[0], candidates[best])
  np.testing.assert_allclose(float(scores[0]), expected[best], rtol=1e-4, atol=1e-4)


def test_joint_hypotheses_never_outgrow_the_ctc_frames(setup):
  # 8 input frames = 2 CTC frames: attention alone runs on, joint search must end within 2 labels
  # (a repeated label would need a blank between, hence 3 frames).
  batch = make_batch([8, 64, 8, 64], seed=5)
  attention = np.asarray(setup.beam(3, 0.0)(setup.variables, batch)[0])
  assert max(len(decoding.trim_tokens(attention[r])) for r in (0, 2)) > 2
  tokens = np.asarray(setup.beam(3, 0.4)(setup.variables, batch)[0])
  for row in (0, 2):
    assert len(decoding.trim_tokens(tokens[row])) <= 2
    assert decoding.EOS_ID in tokens[row]
  ref_tokens, _ = setup.reference(3, 0.4, batch=batch)
  np.testing.assert_array_equal(tokens, ref_tokens)


def test_opt_in_token_limit_at_weight_zero(setup):
  # max_tokens_per_frame ends every row within floor(ratio * input frames) tokens, greedy and
  # beam; rows already shorter than their limit decode as without it.
  batch = make_batch([8, 64, 16, 64], seed=5)
  limits = np.asarray([1, 8, 2, 8])
  free = np.asarray(setup.beam(3, 0.0)(setup.variables, batch)[0])
  capped = np.asarray(setup.beam(3, 0.0, max_tokens_per_frame=0.125)(setup.variables, batch)[0])
  greedy = decoding.make_decode_fn(setup.model, MAX_LENGTH, max_tokens_per_frame=0.125)
  greedy_capped = np.asarray(greedy.fn(setup.variables, batch))
  for outputs in (capped, greedy_capped):
    for row, limit in zip(outputs, limits):
      assert len(decoding.trim_tokens(row)) <= limit and decoding.EOS_ID in row
  for row in range(4):
    if len(decoding.trim_tokens(free[row])) < limits[row] and decoding.EOS_ID in free[row]:
      np.testing.assert_array_equal(capped[row], free[row])
  assert not np.array_equal(capped, free)


def test_joint_decode_fn_compiles_once_and_greedy_is_one_beam(setup):
  decoder = decoding.make_decode_fn(setup.model, MAX_LENGTH, beam_size=1, ctc_weight=0.4)
  first = np.asarray(decoder.fn(setup.variables, setup.batch))
  one_beam = np.asarray(setup.beam(1, 0.4)(setup.variables, setup.batch)[0])
  np.testing.assert_array_equal(first, one_beam)
  other = make_batch([12, 64, 30, 45], seed=7)  # same shapes, new content
  second = np.asarray(decoder.fn(setup.variables, other))
  decoder.fn(setup.variables, setup.batch)
  assert decoder.traces() == 1 and decoder.fn._cache_size() == 1
  assert not np.array_equal(first, second)
  with pytest.raises(ValueError, match="ctc_weight"):
    decoding.make_decode_fn(setup.model, MAX_LENGTH, ctc_weight=1.5)
