"""The pitch-conditioning variants of the ablation: each one a set of config overrides.

Every variant sets all four pitch options (rotary theta mode, pitch-similarity bias, rotor radius,
whose F0 is fed), so a variant means the same model whatever the base recipe sets, and any two
variants differ only in what their names say. Everything else (data, steps, seeds, schedule)
comes from the base recipe and is shared.
"""

from typing import Dict, Mapping, Sequence

import ml_collections

from echo_jax.errors import UserError

BASELINE = "fixed"

# Pitch options shared by every variant unless it overrides them: the baseline model, whose
# rotary theta is the constant config.model.theta and which ignores F0 entirely.
_PLAIN = {"model.theta_mode": "fixed", "model.pitch_bias": False, "model.radius_mode": "off",
          "data.f0_source": "own"}

VARIANTS: Dict[str, Dict[str, object]] = {
    # theta = config.model.theta: no pitch anywhere (the baseline).
    "fixed": {},
    # theta = theta + 9200 * pf(utterance mean F0), the reference's pitch-modulated rotary.
    "seed": {"model.theta_mode": "seed"},
    # theta per audio frame from that frame's F0.
    "per_frame": {"model.theta_mode": "per_frame"},
    # fixed theta + the F0-similarity bias on encoder self-attention.
    "pitch_bias": {"model.pitch_bias": True},
    "seed+pitch_bias": {"model.theta_mode": "seed", "model.pitch_bias": True},
    # fixed theta, rotor radius from the frame's F0.
    "radius_f0": {"model.radius_mode": "f0"},
    # the placebo: `seed` fed another utterance's F0 track (echo_jax.data.f0_source).
    "shuffled_f0": {"model.theta_mode": "seed", "data.f0_source": "shuffled"},
}

# Placebo -> the variant it controls: the report also compares these two directly.
PLACEBOS = {"shuffled_f0": "seed"}

DESCRIPTIONS = {
    "fixed": "fixed rotary theta, no pitch input (baseline)",
    "seed": "rotary theta from the utterance's mean F0 (reference)",
    "per_frame": "rotary theta per frame from that frame's F0",
    "pitch_bias": "fixed theta + F0-similarity attention bias",
    "seed+pitch_bias": "F0 theta + F0-similarity attention bias",
    "radius_f0": "fixed theta, rotor radius from the frame's F0",
    "shuffled_f0": "F0 theta from ANOTHER utterance's F0 (placebo)",
}


def overrides(variant: str) -> Dict[str, object]:
  """The config fields (dotted names) that make `variant`."""
  if variant not in VARIANTS:
    raise UserError(f"unknown ablation variant {variant!r} in config.ablation.variants; use "
                    f"some of {', '.join(VARIANTS)}")
  return {**_PLAIN, **VARIANTS[variant]}


def check_names(names: Sequence[str]) -> None:
  """Raises UserError naming the first unknown, repeated or missing variant."""
  if isinstance(names, str) or not names:
    raise UserError(f"config.ablation.variants={names!r} is invalid: give a non-empty tuple of "
                    f"names from {', '.join(VARIANTS)}, e.g. --config.ablation.variants="
                    "\"('fixed','seed')\"")
  for name in names:
    overrides(name)
  if len(set(names)) != len(names):
    raise UserError(f"config.ablation.variants={tuple(names)!r} names a variant twice; list each "
                    "once")
  if BASELINE not in names:
    raise UserError(f"config.ablation.variants={tuple(names)!r} lacks the baseline {BASELINE!r}: "
                    "every variant is compared with it; add it")


def apply(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """A copy of `config` with `variant`'s overrides set."""
  out = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in overrides(variant).items():
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return out


def describe(variant: str, fields: Mapping[str, object] = None) -> str:
  """`variant`: description (the overrides), for reports."""
  fields = overrides(variant) if fields is None else fields
  changed = ", ".join(f"`{k}={v!r}`" for k, v in fields.items() if _PLAIN.get(k) != v)
  text = DESCRIPTIONS.get(variant, variant)
  return f"{text}: {changed}" if changed else text
