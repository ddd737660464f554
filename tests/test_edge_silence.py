"""Edge-silence augmentation (echo_jax.training.edge_silence): the utterance's frames move intact,
the added frames are its own quietest frame (jittered) and unvoiced, the bucket's room bounds
them, and probability 0 changes nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax.training import edge_silence


def _batch(seed=0, size=300, bins=8, frames=(120, 300, 40, 200)):
  rng = np.random.default_rng(seed)
  mel = np.zeros((len(frames), size, bins), np.float32)
  f0 = np.zeros((len(frames), size), np.float32)
  for row, n in enumerate(frames):
    mel[row, :n] = rng.uniform(0.2, 1.0, (n, bins))
    mel[row, n // 2] = 0.05  # each row's quietest frame
    f0[row, :n] = rng.uniform(80, 300, n)
  return mel, f0, np.asarray(frames, np.int32)


def test_probability_zero_changes_nothing():
  mel, f0, frames = _batch()
  out = edge_silence.apply(jax.random.PRNGKey(3), jnp.asarray(mel), jnp.asarray(f0),
                           jnp.asarray(frames), 125, 0.0)
  for got, want in zip(out, (mel, f0, frames)):
    np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frames_move_intact_between_a_quiet_unvoiced_lead_and_trail(seed):
  mel, f0, frames = _batch()
  max_frames = 125
  out_mel, out_f0, out_frames = map(np.asarray, edge_silence.apply(
      jax.random.PRNGKey(seed), jnp.asarray(mel), jnp.asarray(f0), jnp.asarray(frames),
      max_frames, 1.0))
  size = mel.shape[1]
  for row, n in enumerate(frames):
    added = out_frames[row] - n
    assert 0 <= added <= 2 * max_frames and out_frames[row] <= size
    if n == size:
      assert added == 0  # a full row has no room
    # The utterance's frames sit intact after a lead: find it by its F0 (never 0 in speech).
    lead = int(np.flatnonzero(out_f0[row] > 0)[0])
    assert lead <= max_frames and out_frames[row] - n - lead <= max_frames
    np.testing.assert_array_equal(out_mel[row, lead:lead + n], mel[row, :n])
    np.testing.assert_array_equal(out_f0[row, lead:lead + n], f0[row, :n])
    quiet = np.r_[0:lead, lead + n:out_frames[row]]
    assert np.all(out_f0[row, quiet] == 0)
    if quiet.size:
      floor = mel[row, n // 2]
      assert np.all(np.abs(out_mel[row, quiet] - floor) < 0.3)
      assert abs(float(np.std(out_mel[row, quiet] - floor)) - edge_silence.JITTER) < 0.02
    # Beyond the new length: the batch's padding, untouched.
    np.testing.assert_array_equal(out_mel[row, out_frames[row]:], 0.0)


def test_leads_and_trails_vary_with_the_key_and_repeat_with_it():
  mel, f0, frames = _batch(frames=(50,) * 4)
  draw = lambda key: np.asarray(edge_silence.apply(jax.random.PRNGKey(key), jnp.asarray(mel),
                                                   jnp.asarray(f0), jnp.asarray(frames), 125,
                                                   1.0)[2])
  np.testing.assert_array_equal(draw(5), draw(5))
  lengths = np.concatenate([draw(k) for k in range(6)])
  assert len(set(lengths.tolist())) > 10  # U{0..125} per side: many distinct totals
