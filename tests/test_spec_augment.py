"""SpecAugment: masks stay inside an utterance's real frames and within their bounds, are
deterministic from the RNG, take the utterance mean, and touch only the train step."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from echo_jax.training import spec_augment

FRAMES, BINS = 120, 32


def _config(**overrides):
  cfg = ml_collections.ConfigDict(dict(freq_masks=2, freq_mask_bins=6, time_masks=3,
                                       time_mask_frames=15, time_mask_max_fraction=0.1))
  cfg.update(overrides)
  return cfg


def _runs(mask_row):
  """Lengths of the runs of True in a 1-D bool array."""
  padded = np.concatenate([[False], mask_row, [False]]).astype(int)
  edges = np.flatnonzero(np.diff(padded))
  return edges[1::2] - edges[0::2]


def test_masks_only_real_frames_and_respect_bounds():
  cfg = _config()
  num_frames = jnp.array([120, 60, 7, 0])
  for seed in range(20):
    m = spec_augment.masks(jax.random.PRNGKey(seed), num_frames, FRAMES, BINS, cfg)
    time, freq = np.asarray(m["time"]), np.asarray(m["freq"])
    for row, n in enumerate(np.asarray(num_frames)):
      assert not time[row, n:].any()  # never over padding
      width_bound = min(15, int(0.1 * n))
      assert time[row].sum() <= 3 * width_bound
      assert all(run <= 3 * width_bound for run in _runs(time[row]))
      assert freq[row].sum() <= 2 * 6
  # With a large fraction the frame cap binds; each mask is at most time_mask_frames wide, so the
  # union is at most three of them.
  wide = _config(time_mask_max_fraction=1.0)
  m = spec_augment.masks(jax.random.PRNGKey(0), jnp.array([120]), FRAMES, BINS, wide)
  assert np.asarray(m["time"]).sum() <= 45


def test_masks_are_deterministic_from_the_rng_and_vary_with_it():
  cfg = _config()
  n = jnp.array([120, 90])
  a = spec_augment.masks(jax.random.PRNGKey(3), n, FRAMES, BINS, cfg)
  b = spec_augment.masks(jax.random.PRNGKey(3), n, FRAMES, BINS, cfg)
  c = spec_augment.masks(jax.random.PRNGKey(4), n, FRAMES, BINS, cfg)
  for key in ("time", "freq"):
    np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
  assert any(not np.array_equal(np.asarray(a[k]), np.asarray(c[k])) for k in ("time", "freq"))


def test_apply_fills_masked_cells_with_the_utterance_mean_and_keeps_padding():
  rng = np.random.default_rng(0)
  num_frames = np.array([120, 50])
  offsets = np.array([1.0, -2.0])[:, None, None]
  mel = (rng.normal(size=(2, FRAMES, BINS)) + offsets).astype(np.float32)
  mel[1, 50:] = 0.0
  cfg = _config()
  key = jax.random.PRNGKey(7)
  out = np.asarray(spec_augment.apply(key, jnp.asarray(mel), jnp.asarray(num_frames), cfg))
  m = spec_augment.masks(key, jnp.asarray(num_frames), FRAMES, BINS, cfg)
  covered = np.asarray(m["time"])[:, :, None] | np.asarray(m["freq"])[:, None, :]
  for row, n in enumerate(num_frames):
    real = np.zeros((FRAMES, BINS), bool)
    real[:n] = True
    cells = covered[row] & real
    assert cells.any()
    np.testing.assert_allclose(out[row][cells], mel[row, :n].mean(), rtol=1e-5)
    np.testing.assert_array_equal(out[row][~cells], mel[row][~cells])


def test_disabled_config_is_reported_off():
  assert not spec_augment.enabled(_config(freq_masks=0, time_masks=0))
  assert spec_augment.enabled(_config(freq_masks=0, time_masks=1))
