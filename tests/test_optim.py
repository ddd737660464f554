"""Optimizer: schedule values, weight-decay mask, clipping and AdamW update against the formulas."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from echo_jax.training import optim


def _train_cfg(**overrides) -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict(dict(
      num_steps=100, learning_rate=1e-2, warmup_steps=10, end_lr_fraction=0.1, weight_decay=0.1,
      b1=0.9, b2=0.98, eps=1e-9, grad_clip_norm=1.0))
  cfg.update(overrides)
  return cfg


def test_schedule_warmup_then_cosine_to_end_fraction():
  cfg = _train_cfg()
  lr = optim.learning_rate_schedule(cfg)
  peak, end = 1e-2, 1e-3
  np.testing.assert_allclose(float(lr(0)), 0.0, atol=1e-12)
  np.testing.assert_allclose(float(lr(5)), peak * 5 / 10, rtol=1e-6)
  np.testing.assert_allclose(float(lr(10)), peak, rtol=1e-6)
  # Cosine half way between the end of warm-up (10) and num_steps (100).
  np.testing.assert_allclose(float(lr(55)), end + (peak - end) * 0.5, rtol=1e-5)
  np.testing.assert_allclose(float(lr(100)), end, rtol=1e-5)


def test_decay_mask_only_matrices_outside_norms():
  params = {
      "encoder": {
          "blocks_spectrogram_0": {
              "attna": {"q": {"kernel": jnp.ones([4, 4]), "bias": jnp.ones([4])}},
              "lna": {"scale": jnp.ones([4])},
              "blend": jnp.zeros([]),
              "mlp": {"layers_0": {"kernel": jnp.ones([4, 8])}},
          },
          "conv1": {"kernel": jnp.ones([3, 4, 4])},
          "ln_post": {"scale": jnp.ones([4, 1])},  # even a 2-D leaf inside a norm is not decayed
      },
      "decoder": {"token_embedding": {"embedding": jnp.ones([10, 4])},
                  "ln_dec": {"scale": jnp.ones([4])}},
  }
  mask = optim.weight_decay_mask(params)
  assert mask["encoder"]["blocks_spectrogram_0"]["attna"]["q"]["kernel"] is True
  assert mask["encoder"]["blocks_spectrogram_0"]["attna"]["q"]["bias"] is False
  assert mask["encoder"]["blocks_spectrogram_0"]["lna"]["scale"] is False
  assert mask["encoder"]["blocks_spectrogram_0"]["blend"] is False
  assert mask["encoder"]["blocks_spectrogram_0"]["mlp"]["layers_0"]["kernel"] is True
  assert mask["encoder"]["conv1"]["kernel"] is True
  assert mask["encoder"]["ln_post"]["scale"] is False
  assert mask["decoder"]["token_embedding"]["embedding"] is True
  assert mask["decoder"]["ln_dec"]["scale"] is False


@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_first_update_matches_clipped_adamw_formula(clip):
  # b1 = b2 = 0: m = g, v = g^2 and no bias correction, so update = -lr (g / (|g| + eps) + wd p)
  # with g the clipped gradient. eps = 1 keeps the clipping visible in the update.
  lr, wd, eps = 0.5, 0.1, 1.0
  cfg = _train_cfg(learning_rate=lr, warmup_steps=0, weight_decay=wd, b1=0.0, b2=0.0, eps=eps,
                   grad_clip_norm=clip, end_lr_fraction=1.0)
  tx = optim.make_optimizer(cfg)
  params = {"dense": {"kernel": jnp.full([1, 2], 2.0)}, "norm": {"scale": jnp.full([2], 2.0)}}
  grads = {"dense": {"kernel": jnp.asarray([[3.0, 4.0]])}, "norm": {"scale": jnp.zeros([2])}}
  updates, _ = tx.update(grads, tx.init(params), params)
  g = np.asarray([[3.0, 4.0]])
  if clip:
    g = g * clip / 5.0  # global norm 5 -> clip
  expected_kernel = -lr * (g / (np.abs(g) + eps) + wd * 2.0)
  np.testing.assert_allclose(np.asarray(updates["dense"]["kernel"]), expected_kernel, rtol=1e-6)
  # Norm scale: zero gradient and no decay -> no update.
  np.testing.assert_allclose(np.asarray(updates["norm"]["scale"]), 0.0, atol=1e-7)
