"""Optimizer: AdamW with linear warm-up + cosine decay, global-norm clipping, masked weight decay.

Everything comes from `config.train`: learning_rate, warmup_steps, num_steps, end_lr_fraction,
b1, b2, eps, weight_decay, grad_clip_norm.
"""

from typing import Any

import jax
import ml_collections
import optax

# Parameters never decayed, by leaf name: norm scales, biases, gated-blend logits; also anything
# inside a norm module (RMSNorm modules are called ln*, *norm*).
_NO_DECAY_LEAF_NAMES = frozenset({"bias", "scale", "blend"})


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
  """0 -> peak linearly over warmup_steps, then cosine to peak * end_lr_fraction at num_steps."""
  peak = float(train.learning_rate)
  warmup = int(train.warmup_steps)
  total = max(int(train.num_steps), warmup + 1)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup, decay_steps=total,
      end_value=peak * float(train.end_lr_fraction))


def _path_names(path) -> list:
  names = []
  for entry in path:
    name = getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry)))
    names.append(str(name))
  return names


def _is_no_decay_module(name: str) -> bool:
  lowered = name.lower()
  return "norm" in lowered or lowered.startswith("ln")


def decays(path, leaf) -> bool:
  """True when the leaf at `path` gets weight decay: matrices/kernels/embeddings only."""
  names = _path_names(path)
  if getattr(leaf, "ndim", 0) < 2:
    return False  # scalars (blends, learned scales) and vectors (biases, norm scales)
  if names and names[-1] in _NO_DECAY_LEAF_NAMES:
    return False
  return not any(_is_no_decay_module(n) for n in names[:-1])


def weight_decay_mask(params: Any) -> Any:
  """Pytree of bools shaped like `params`: which leaves are decayed."""
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """clip_by_global_norm(grad_clip_norm) then AdamW(schedule) with the decay mask."""
  parts = []
  if float(train.grad_clip_norm) > 0:
    parts.append(optax.clip_by_global_norm(float(train.grad_clip_norm)))
  parts.append(optax.adamw(
      learning_rate=learning_rate_schedule(train), b1=float(train.b1), b2=float(train.b2),
      eps=float(train.eps), weight_decay=float(train.weight_decay), mask=weight_decay_mask))
  return optax.chain(*parts)
