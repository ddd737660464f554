"""Decoding: KV-cached vs uncached equality, beam search, batching invariance, compile counts."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax.inference import decoding
from random_runs import tiny_config

MAX_LENGTH = 10
FRAMES = 64  # one bucket edge for every test batch (a multiple of the downsampling)




def tiny_model_config(vocab_size: int):
  import ml_collections
  config = tiny_config()
  config.model.vocab_size = vocab_size
  config.model.text_ctx = 16
  return ml_collections.FrozenConfigDict(config.model)


def make_batch(num_frames, seed: int, frames: int = FRAMES, n_mels: int = 32):
  """Random features padded (with zeros, as the pipeline does) to `frames`."""
  rng = np.random.default_rng(seed)
  num_frames = np.asarray(num_frames, np.int32)
  batch_size = len(num_frames)
  valid = np.arange(frames)[None, :] < num_frames[:, None]
  mel = rng.normal(size=(batch_size, frames, n_mels)).astype(np.float32) * valid[..., None]
  # Voiced stretches at different pitches (so each utterance gets its own rotary theta).
  base = rng.uniform(90.0, 260.0, size=(batch_size, 1))
  voiced = valid & (rng.random((batch_size, frames)) < 0.7)
  f0 = (base * (1.0 + 0.05 * rng.normal(size=(batch_size, frames))) * voiced).astype(np.float32)
  return {"mel": mel, "f0": f0, "num_frames": num_frames}


def take_rows(batch, rows, frames=None):
  out = {k: v[rows] for k, v in batch.items()}
  if frames is not None:
    out["mel"] = out["mel"][:, :frames]
    out["f0"] = out["f0"][:, :frames]
  return out


class Setup:
  """The sharpened tiny model, one batch, and jitted functions shared by the tests (compiles are
  the slow part: every function here is compiled once for [4, FRAMES] batches)."""

  def __init__(self):
    from echo_jax.models.echo import EchoModel
    self.model = model = EchoModel(config=tiny_model_config(vocab_size=24))
    self.batch = batch = make_batch([64, 37, 50, 21], seed=0)
    init_batch = dict(batch, decoder_input_tokens=np.ones((4, MAX_LENGTH), np.int32))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), init_batch)["params"]
    params = jax.tree_util.tree_map(lambda x: x, params)
    self.decoder = decoding.make_decode_fn(model, MAX_LENGTH)  # greedy, cached
    # Any parameters must decode identically with and without the cache, so the test sharpens the
    # random model: larger learned positions make the output vary along the sequence and between
    # utterances (at init it repeats one token), and EOS gets a slightly scaled copy of the
    # embedding of a token that only some rows produce, so rows end at different steps.
    params["decoder"]["positional_embedding"] = params["decoder"]["positional_embedding"] * 30.0
    tokens = np.asarray(self.decoder.fn({"params": params}, batch))
    rows_with = {t: {r for r in range(len(tokens)) if t in tokens[r, 1:]} for t in range(3, 24)}
    partial = [t for t, rows in rows_with.items() if 0 < len(rows) < len(tokens)]
    assert partial, f"the sharpened random model should vary between rows: {tokens}"
    emb = params["decoder"]["token_embedding"]["embedding"]
    params["decoder"]["token_embedding"]["embedding"] = emb.at[decoding.EOS_ID].set(
        1.05 * emb[partial[0]])
    self.variables = {"params": params}
    self.greedy = lambda variables, batch: self.decoder.fn(variables, batch)
    self.apply = jax.jit(model.apply)
    self._beams = {}

  def beam(self, beam_size, use_cache=True):
    key = (beam_size, use_cache)
    if key not in self._beams:
      self._beams[key] = jax.jit(functools.partial(
          decoding.beam_search, self.model, beam_size=beam_size, max_length=MAX_LENGTH,
          length_penalty=0.6, use_cache=use_cache))
    return self._beams[key]


@pytest.fixture(scope="session")
def setup():
  return Setup()


def sequence_scores(apply, variables, batch, tokens, length_penalty):
  """log p(tokens | audio) / length factor by one teacher-forced pass (PAD/BOS excluded as in
  decoding); tokens are output rows [N, L] ending with EOS or running to L."""
  tokens = np.asarray(tokens)
  inputs = np.concatenate([np.full((len(tokens), 1), decoding.BOS_ID), tokens[:, :-1]], axis=1)
  logits = apply(variables, dict(batch, decoder_input_tokens=inputs.astype(np.int32)))
  logits = logits.at[..., decoding.PAD_ID].set(-jnp.inf).at[..., decoding.BOS_ID].set(-jnp.inf)
  logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
  scores = []
  for row in range(len(tokens)):
    length = len(decoding.trim_tokens(tokens[row])) + int((tokens[row] == decoding.EOS_ID).any())
    total = sum(logp[row, i, tokens[row, i]] for i in range(length))
    scores.append(total / float(decoding.length_penalty_factor(length, length_penalty)))
  return np.asarray(scores)


def assert_zero_after_eos(tokens):
  for row in np.asarray(tokens):
    eos = np.nonzero(row == decoding.EOS_ID)[0]
    if len(eos):
      assert np.all(row[eos[0] + 1:] == 0)
    assert not np.any(row[:len(decoding.trim_tokens(row))] == 0)


def test_cached_greedy_equals_uncached_full_decoder(setup):
  cached = np.asarray(setup.greedy(setup.variables, setup.batch))
  uncached_fn = jax.jit(functools.partial(decoding.greedy_decode, setup.model,
                                          max_length=MAX_LENGTH, use_cache=False))
  uncached = np.asarray(uncached_fn(setup.variables, setup.batch))
  np.testing.assert_array_equal(cached, uncached)
  assert cached.shape == (4, MAX_LENGTH) and cached.dtype == np.int32
  lengths = [len(decoding.trim_tokens(row)) for row in cached]
  assert len(set(lengths)) > 1, f"rows should stop at different steps, got lengths {lengths}"
  assert (cached == decoding.EOS_ID).any(), "at least one row should reach EOS"
  assert_zero_after_eos(cached)


def test_greedy_tokens_are_the_argmax_of_a_full_teacher_forced_pass(setup):
  # Independent of the decoding loop: feeding the greedy output back through model.apply must give
  # the same tokens as argmax at every position up to EOS.
  tokens = np.asarray(setup.greedy(setup.variables, setup.batch))
  inputs = np.concatenate([np.full((4, 1), decoding.BOS_ID), tokens[:, :-1]], axis=1)
  logits = setup.apply(setup.variables,
                       dict(setup.batch, decoder_input_tokens=inputs.astype(np.int32)))
  logits = logits.at[..., decoding.PAD_ID].set(-jnp.inf).at[..., decoding.BOS_ID].set(-jnp.inf)
  argmax = np.asarray(jnp.argmax(logits, -1))
  for row in range(4):
    n = len(decoding.trim_tokens(tokens[row])) + int((tokens[row] == decoding.EOS_ID).any())
    np.testing.assert_array_equal(tokens[row, :n], argmax[row, :n])


def test_beam_size_one_is_greedy(setup):
  tokens, scores = setup.beam(1)(setup.variables, setup.batch)
  np.testing.assert_array_equal(np.asarray(tokens), np.asarray(setup.greedy(setup.variables,
                                                                            setup.batch)))
  np.testing.assert_allclose(np.asarray(scores), sequence_scores(
      setup.apply, setup.variables, setup.batch, tokens, 0.6), rtol=1e-4, atol=1e-4)


def test_beam_search_cached_equals_uncached_and_scores_are_consistent(setup):
  tokens, scores = setup.beam(3)(setup.variables, setup.batch)
  tokens_u, scores_u = setup.beam(3, use_cache=False)(setup.variables, setup.batch)
  np.testing.assert_array_equal(np.asarray(tokens), np.asarray(tokens_u))
  np.testing.assert_allclose(np.asarray(scores), np.asarray(scores_u), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(scores), sequence_scores(
      setup.apply, setup.variables, setup.batch, tokens, 0.6), rtol=1e-4, atol=1e-4)
  greedy_scores = sequence_scores(setup.apply, setup.variables, setup.batch,
                                  setup.greedy(setup.variables, setup.batch), 0.6)
  assert np.all(np.asarray(scores) >= greedy_scores - 1e-5)  # here beam 3 never loses to greedy
  assert_zero_after_eos(tokens)


def test_beam_cache_keeps_cross_attention_once_per_utterance(setup):
  """The cache beam search builds holds each utterance's cross-attention keys/values once (not
  per beam), and a decode step reading them gives the logits of a per-beam copy."""
  from flax.traverse_util import flatten_dict
  from echo_jax.models.attention import CROSS_CACHE_ENTRIES
  from echo_jax.models.echo import decode_step
  beams, utterances = 3, 4
  encoded = decoding.encode_batch(setup.model, setup.variables, setup.batch)
  repeated = decoding._repeat_rows(encoded, utterances, beams)
  rows = beams * utterances
  shared = decoding.init_cache(setup.model, setup.variables, repeated, rows, MAX_LENGTH, encoded)
  copied = decoding.init_cache(setup.model, setup.variables, repeated, rows, MAX_LENGTH)
  cross = [path for path in flatten_dict(shared) if path[-1] in CROSS_CACHE_ENTRIES]
  assert cross
  for path in cross:
    assert flatten_dict(shared)[path].shape[0] == utterances
    assert flatten_dict(copied)[path].shape[0] == rows
  tokens = jax.random.randint(jax.random.PRNGKey(5), (rows, 1), 3, 20)
  for _ in range(2):  # two steps: the second one reads the self-attention cache too
    logits_shared, shared = decode_step(setup.model, setup.variables, shared, repeated, tokens)
    logits_copied, copied = decode_step(setup.model, setup.variables, copied, repeated, tokens)
    np.testing.assert_allclose(logits_shared, logits_copied, atol=1e-5, rtol=1e-5)


def test_wide_beam_finds_the_exhaustive_best_sequence():
  # Vocabulary {PAD, BOS, EOS, 3, 4, 5} and max_length 3: at most 3 + 9 live prefixes, so a beam
  # of 16 keeps every hypothesis and must return the best of all sequences under the same score.
  from echo_jax.models.echo import EchoModel
  model = EchoModel(config=tiny_model_config(vocab_size=6))
  batch = make_batch([40], seed=3)
  init_batch = dict(batch, decoder_input_tokens=np.ones((1, 3), np.int32))
  params = jax.jit(model.init)(jax.random.PRNGKey(1), init_batch)["params"]
  params = jax.tree_util.tree_map(lambda x: x, params)
  params["decoder"]["positional_embedding"] = params["decoder"]["positional_embedding"] * 30.0
  variables = {"params": params}
  alpha, max_length = 0.6, 3
  candidates = []
  for length in (1, 2, 3):
    for body in itertools.product((3, 4, 5), repeat=length - 1):
      candidates.append(list(body) + [decoding.EOS_ID] + [0] * (max_length - length))
  candidates += [list(body) for body in itertools.product((3, 4, 5), repeat=max_length)]
  candidates = np.asarray(candidates, np.int32)
  tokens, scores = jax.jit(functools.partial(
      decoding.beam_search, model, beam_size=16, max_length=max_length,
      length_penalty=alpha))(variables, batch)
  copies = take_rows(batch, [0] * len(candidates))
  all_scores = sequence_scores(jax.jit(model.apply), variables, copies, candidates, alpha)
  best = int(np.argmax(all_scores))
  assert np.sort(all_scores)[-1] - np.sort(all_scores)[-2] > 1e-4  # a unique optimum
  np.testing.assert_array_equal(np.asarray(tokens)[0], candidates[best])
  np.testing.assert_allclose(float(scores[0]), all_scores[best], rtol=1e-4, atol=1e-5)


def test_batched_results_equal_one_by_one(setup):
  together = np.asarray(setup.greedy(setup.variables, setup.batch))
  beam_together = np.asarray(setup.beam(3)(setup.variables, setup.batch)[0])
  for row in range(4):
    # The row's utterance next to other utterances vs. next to copies of itself.
    alone = take_rows(setup.batch, [row] * 4)
    np.testing.assert_array_equal(np.asarray(setup.greedy(setup.variables, alone))[row],
                                  together[row])
    np.testing.assert_array_equal(np.asarray(setup.beam(3)(setup.variables, alone)[0])[0],
                                  beam_together[row])
  # Reordered rows give reordered results.
  order = [2, 0, 3, 1]
  np.testing.assert_array_equal(
      np.asarray(setup.greedy(setup.variables, take_rows(setup.batch, order))), together[order])
  # Batch size 1 with less padding (the next multiple of 8 frames) gives the same result.
  row = 3
  frames = int(np.ceil(setup.batch["num_frames"][row] / 8) * 8)
  assert frames < FRAMES
  short = take_rows(setup.batch, [row], frames=frames)
  np.testing.assert_array_equal(np.asarray(jax.jit(functools.partial(
      decoding.greedy_decode, setup.model, max_length=MAX_LENGTH))(setup.variables, short))[0],
      together[row])


def test_forced_prefix(setup):
  model, variables, batch = setup.model, setup.variables, setup.batch
  free = np.asarray(setup.greedy(variables, batch))
  forced_fn = jax.jit(functools.partial(decoding.greedy_decode, model, max_length=MAX_LENGTH))
  # Forcing the tokens greedy would choose anyway changes nothing.
  np.testing.assert_array_equal(np.asarray(forced_fn(variables, batch, prefix=free[:, :3])), free)
  # Forcing other tokens: they lead every row and cached == uncached; beam search keeps them.
  prefix = np.tile(np.asarray([7, 9, 11], np.int32), (4, 1))
  forced = np.asarray(forced_fn(variables, batch, prefix=prefix))
  np.testing.assert_array_equal(forced[:, :3], prefix)
  assert not np.array_equal(forced[:, 3:], free[:, 3:])  # the prefix conditions what follows
  uncached = jax.jit(functools.partial(decoding.greedy_decode, model, max_length=MAX_LENGTH,
                                       use_cache=False))(variables, batch, prefix=prefix)
  np.testing.assert_array_equal(forced, np.asarray(uncached))
  beam3, _ = jax.jit(functools.partial(decoding.beam_search, model, beam_size=3,
                                       max_length=MAX_LENGTH, length_penalty=0.6))(
                                           variables, batch, prefix=prefix)
  np.testing.assert_array_equal(np.asarray(beam3)[:, :3], prefix)
  with pytest.raises(ValueError, match="prefix"):
    decoding.greedy_decode(model, variables, batch, MAX_LENGTH, np.zeros((3, 2), np.int32))


def test_no_recompilation_across_batches_of_one_bucket(setup):
  decoder = setup.decoder
  before = decoder.traces()
  assert before == 1  # every earlier call used [4, FRAMES] batches
  first = decoder.fn(setup.variables, setup.batch)
  other = make_batch([12, 64, 30, 45], seed=7)  # same bucket and batch size, new content
  second = decoder.fn(setup.variables, other)
  assert decoder.traces() == 1
  assert decoder.fn._cache_size() == 1  # jax's own count of compiled executables
  assert not np.array_equal(np.asarray(first), np.asarray(second))
  decoder.fn(setup.variables, make_batch([100, 128, 90, 70], seed=8, frames=128))  # a new bucket
  assert decoder.traces() == 2 and decoder.fn._cache_size() == 2
  decoder.fn(setup.variables, other)
  assert decoder.traces() == 2


def test_max_length_beyond_text_ctx_is_rejected(setup):
  with pytest.raises(ValueError, match="text_ctx"):
    decoding.greedy_decode(setup.model, setup.variables, setup.batch, 17)


def test_decode_batch_text_cuts_at_eos_and_drops_specials():
  class Chars:  # the decode contract: ids -> text
    def decode(self, ids):
      return "".join(chr(ord("a") + i - 3) for i in ids)
  tokens = np.asarray([[3, 4, 2, 5, 0], [1, 5, 6, 7, 8], [2, 0, 0, 0, 0]], np.int32)
  assert decoding.decode_batch_text(tokens, Chars()) == ["ab", "cdef", ""]


def test_measure_decode_speed_reports_consistent_numbers(setup):
  stats = decoding.measure_decode_speed(setup.model, setup.variables, setup.batch, MAX_LENGTH,
                                        beam_size=1, use_cache=True, repeats=2)
  tokens = np.asarray(setup.greedy(setup.variables, setup.batch))
  assert stats["generated_tokens"] == int(np.sum(tokens != 0))
  assert stats["traces"] == 1
  assert stats["audio_seconds"] == pytest.approx(float(np.sum(setup.batch["num_frames"])) * 128
                                                 / 16000)
  assert stats["tokens_per_s"] == pytest.approx(stats["generated_tokens"] / stats["seconds"])
  assert stats["real_time_factor"] == pytest.approx(stats["seconds"] / stats["audio_seconds"])
