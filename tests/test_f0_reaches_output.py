"""F0 reaches the output through each pitch-conditioning option, and only its own row's: raising
one utterance's voiced F0 (1x to 2x over time) changes that row's logits under seed / per_frame / pitch_bias / radius_f0
(encoder and decoder both see it), changes nothing under fixed RoPE, and with the reference's
batch-mixed mean (f0_mean_mode="batch_all") changes the other rows too."""

import jax
import numpy as np
import pytest

from echo_jax.models import EchoModel
from echo_jax.models.testing import random_batch, tiny_model_config

VARIANTS = {
    "fixed": dict(theta_mode="fixed"),
    "seed": dict(theta_mode="seed"),
    "per_frame": dict(theta_mode="per_frame"),
    "pitch_bias": dict(theta_mode="fixed", pitch_bias=True),
    "radius_f0": dict(theta_mode="fixed", radius_mode="f0"),
}
ROWS_TOKENS = [6, 5, 6]


def _logits_before_and_after(options):
  cfg = tiny_model_config(**options)
  model = EchoModel(cfg)
  batch = random_batch(cfg, [16, 14, 12], ROWS_TOKENS, 16, 6, seed=3)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
  apply = jax.jit(model.apply)
  before = np.asarray(apply(variables, batch))
  higher = dict(batch, f0=batch["f0"].copy())
  # Voiced frames rise by 1x..2x over time (unvoiced 0 stays 0): a new mean AND a new contour,
  # as the pitch bias works on per-utterance z-scores, which a plain scaling would not change.
  higher["f0"][1] *= np.linspace(1.0, 2.0, higher["f0"].shape[1], dtype=np.float32)
  after = np.asarray(apply(variables, higher))
  return before, after


def _changed(before, after, row):
  n = ROWS_TOKENS[row]
  return float(np.max(np.abs(after[row, :n] - before[row, :n])))


@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - {"fixed"}))
def test_a_row_s_f0_changes_that_row_only(variant):
  before, after = _logits_before_and_after(VARIANTS[variant])
  assert _changed(before, after, 1) > 1e-4, variant
  assert _changed(before, after, 0) < 1e-6 and _changed(before, after, 2) < 1e-6, variant


def test_fixed_rope_ignores_f0():
  before, after = _logits_before_and_after(VARIANTS["fixed"])
  np.testing.assert_array_equal(after, before)


def test_batch_mixed_mean_lets_rows_affect_each_other():
  before, after = _logits_before_and_after(dict(theta_mode="seed", f0_mean_mode="batch_all"))
  assert _changed(before, after, 0) > 1e-4 and _changed(before, after, 2) > 1e-4
