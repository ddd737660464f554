"""Rotary with F0-conditioned theta: formulas, norms, relative positions, per-utterance thetas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax.models import pitch as pitch_lib
from echo_jax.models import rotary as rotary_lib

HEAD_DIM = 16


def _rotate(x, theta, positions, mode="fixed", radius=None):
  inv = rotary_lib.inverse_frequencies(jnp.asarray(theta), HEAD_DIM, mode)[:, None, :]
  return rotary_lib.apply_rotary(x, rotary_lib.make_rotary(positions, inv, radius))


def test_rotation_preserves_norms_with_radius_one():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 3, HEAD_DIM))
  y = _rotate(x, [10000.0, 15000.0], jnp.arange(7))
  np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
  # ...and position 0 is the identity.
  np.testing.assert_allclose(y[:, 0], x[:, 0], atol=1e-6)


def test_rotation_is_float32_for_bfloat16_inputs():
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 5, 1, HEAD_DIM)).astype(jnp.bfloat16)
  assert _rotate(x, [10000.0], jnp.arange(5)).dtype == jnp.float32


def test_interleaved_pairs_rotate_as_complex_numbers():
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 4, 1, HEAD_DIM))
  y = _rotate(x, [500.0], jnp.arange(4))
  z = np.asarray(x[..., 0::2]) + 1j * np.asarray(x[..., 1::2])
  k = np.arange(HEAD_DIM // 2)
  angles = np.arange(4)[:, None] * 500.0 ** (-2 * k / HEAD_DIM)
  expected = z * np.exp(1j * angles)[None, :, None, :]
  np.testing.assert_allclose(y[..., 0::2], expected.real, atol=1e-5)
  np.testing.assert_allclose(y[..., 1::2], expected.imag, atol=1e-5)


@pytest.mark.parametrize("mode", ["fixed", "mel"])
def test_dot_product_depends_only_on_relative_position(mode):
  q = jax.random.normal(jax.random.PRNGKey(2), (1, 1, 1, HEAD_DIM))
  k = jax.random.normal(jax.random.PRNGKey(3), (1, 1, 1, HEAD_DIM))
  positions = jnp.arange(12)
  qs = _rotate(jnp.broadcast_to(q, (1, 12, 1, HEAD_DIM)), [220.0 if mode == "mel" else 10000.0],
               positions, mode)
  ks = _rotate(jnp.broadcast_to(k, (1, 12, 1, HEAD_DIM)), [220.0 if mode == "mel" else 10000.0],
               positions, mode)
  scores = np.asarray(jnp.einsum("id,jd->ij", qs[0, :, 0], ks[0, :, 0]))
  for offset in range(-11, 12):
    diagonal = np.diagonal(scores, offset)
    np.testing.assert_allclose(diagonal, diagonal[0], atol=1e-4)


def test_per_frame_theta_breaks_relative_invariance():
  f0 = jnp.linspace(0.0, 300.0, 12)[None]
  inv = rotary_lib.frame_inverse_frequencies(f0, jnp.array([10000.0]), "per_frame", 10000.0,
                                             HEAD_DIM)
  np.testing.assert_allclose(inv[0, 5], rotary_lib.inverse_frequencies(10000.0 + f0[0, 5],
                                                                      HEAD_DIM, "fixed"), rtol=1e-6)
  rot = rotary_lib.make_rotary(jnp.arange(12), inv)
  v = jnp.ones((1, 12, 1, HEAD_DIM))
  y = rotary_lib.apply_rotary(v, rot)[0, :, 0]
  scores = np.asarray(y @ y.T)
  assert np.ptp(np.diagonal(scores, 1)) > 1e-3


@pytest.mark.parametrize("f0_mean,theta", [(0, 10000), (50, 11780), (100, 13444), (150, 15008),
                                           (200, 16482), (300, 19200)])
def test_seed_theta_table(f0_mean, theta):
  value = rotary_lib.utterance_theta(jnp.array([float(f0_mean)]), "seed", 10000.0)
  assert abs(float(value[0]) - theta) <= 1.0


def test_clamped_and_mel_and_per_frame_thetas():
  f0_mean = jnp.array([0.0, 50.0, 300.0, 1000.0])
  clamped = rotary_lib.utterance_theta(f0_mean, "clamped", 10000.0)
  pf = lambda f: math.log1p(f / 700) / math.log1p(300 / 700)  # noqa: E731
  np.testing.assert_allclose(clamped, [800 + 9200 * pf(80), 800 + 9200 * pf(80), 800 + 9200,
                                       800 + 9200 * pf(600)], rtol=1e-6)
  np.testing.assert_allclose(rotary_lib.utterance_theta(f0_mean, "mel", 1.0), [220, 50, 300, 1000])
  np.testing.assert_allclose(rotary_lib.utterance_theta(f0_mean, "per_frame", 10000.0),
                             10000 + np.asarray(f0_mean))
  np.testing.assert_allclose(rotary_lib.utterance_theta(f0_mean, "fixed", 5000.0), 5000.0)


def test_mel_bank_matches_spec():
  bank = rotary_lib.mel_bank(8)
  assert bank[0] == 0.0 and abs(bank[-1] - 8.0) < 1e-4 and np.all(np.diff(bank) > 0)
  # Scaled by theta / 220: 440 Hz doubles every frequency.
  np.testing.assert_allclose(rotary_lib.inverse_frequencies(jnp.array(440.0), 16, "mel"),
                             2 * bank, rtol=1e-6)


def test_inverse_frequencies_formula():
  np.testing.assert_allclose(rotary_lib.inverse_frequencies(jnp.array(10000.0), 8, "seed"),
                             [10000.0 ** (-k / 8) for k in (0, 2, 4, 6)], rtol=1e-6)


def _batch_f0(rows, length=10):
  f0 = np.zeros((len(rows), length), np.float32)
  for b, row in enumerate(rows):
    f0[b, :len(row)] = row
  return f0


def test_theta_per_utterance_independent_of_batch_unvoiced_and_padding():
  low = [100.0, 0.0, 100.0, 100.0, 0.0]
  high = [300.0, 300.0, 0.0, 300.0]
  f0 = _batch_f0([low, high])
  n = np.array([5, 4])
  theta = rotary_lib.utterance_theta(pitch_lib.f0_mean(f0, n, "utt_voiced"), "seed", 10000.0)
  assert abs(float(theta[0]) - 13444) <= 1 and abs(float(theta[1]) - 19200) <= 1
  # Alone, or next to another utterance, or with junk on padded frames: same theta.
  alone = rotary_lib.utterance_theta(pitch_lib.f0_mean(f0[:1], n[:1], "utt_voiced"), "seed",
                                     10000.0)
  junk = f0.copy()
  junk[0, 5:] = 500.0  # beyond num_frames: padding
  with_junk = rotary_lib.utterance_theta(pitch_lib.f0_mean(junk, n, "utt_voiced"), "seed", 10000.0)
  np.testing.assert_allclose(alone[0], theta[0])
  np.testing.assert_allclose(with_junk, theta)
  # No voiced frame: pf = 0 -> the base theta.
  silent = rotary_lib.utterance_theta(pitch_lib.f0_mean(_batch_f0([[0.0, 0.0]]), np.array([2]),
                                                        "utt_voiced"), "seed", 10000.0)
  np.testing.assert_allclose(silent, [10000.0])


def test_f0_mean_modes():
  f0 = _batch_f0([[100.0, 0.0, 200.0, 0.0], [300.0, 300.0]])
  n = np.array([4, 2])
  np.testing.assert_allclose(pitch_lib.f0_mean(f0, n, "utt_voiced"), [150.0, 300.0])
  np.testing.assert_allclose(pitch_lib.f0_mean(f0, n, "utt_all"), [75.0, 300.0])
  # The reference: one mean over the concatenated valid frames of the whole batch.
  np.testing.assert_allclose(pitch_lib.f0_mean(f0, n, "batch_all"), [150.0, 150.0])


def test_radius_from_f0_and_learned_radius_scale_norms():
  x = jax.random.normal(jax.random.PRNGKey(4), (1, 3, 1, HEAD_DIM))
  f0 = jnp.array([[0.0, 300.0, 900.0]])
  radius = rotary_lib.f0_radius(f0)
  np.testing.assert_allclose(radius[0, :, 0], [40 / 600, 0.5, 1.0], rtol=1e-6)
  y = _rotate(x, [10000.0], jnp.arange(3), radius=radius)
  np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1)[0, :, 0],
                             np.asarray(radius[0, :, 0]) * jnp.linalg.norm(x, axis=-1)[0, :, 0],
                             rtol=1e-5)
  inv = rotary_lib.inverse_frequencies(jnp.array([10000.0]), HEAD_DIM, "fixed")[:, None, :]
  doubled = rotary_lib.apply_rotary(x, rotary_lib.make_rotary(jnp.arange(3), inv),
                                    learned_radius=jnp.full((HEAD_DIM // 2,), 2.0))
  np.testing.assert_allclose(jnp.linalg.norm(doubled, axis=-1), 2 * jnp.linalg.norm(x, axis=-1),
                             rtol=1e-5)
