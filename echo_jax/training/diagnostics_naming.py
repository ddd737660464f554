"""Module-path names as the seed printed them, and the seed's parameter groups.

Flax paths (`encoder/blocks_spectrogram_0/attna/q/kernel`) become the reference's dotted PyTorch
names (`encoder.blocks.spectrogram.1.attna.q.kernel`):

- `blocks_<feature>_<i>` -> `blocks.<feature>.<i+1>` in the encoder, because the reference keeps the
  front-end at index 0 of the same ModuleList; `blocks.<feature>.<i>` in the decoder.
- `_blocks_<i>` -> `_blocks.<i>`.
- `lna`/`lnb`/`lnc` -> `ln_a`/`ln_b`/`ln_c` (the names the seed's report printed).
- the decoder's per-feature `blend_<feature>` -> `blend.<feature>` (the reference's `blend[f]`).
- an encoder front-end module (`frontend_<feature>`, `<feature>_frontend`, `fencoder_<feature>` ...)
  -> `blocks.<feature>.0`.
Anything else keeps its name, so unknown modules still get a stable, readable key.
"""

import re
from typing import Iterable, Optional, Sequence, Tuple

FEATURES = ("spectrogram", "waveform", "pitch")
NORM_NAMES = {"lna": "ln_a", "lnb": "ln_b", "lnc": "ln_c"}

_BLOCK_RE = re.compile(r"^blocks_(%s)_(\d+)$" % "|".join(FEATURES))
_SHARED_BLOCK_RE = re.compile(r"^_blocks_(\d+)$")
_FEATURE_BLEND_RE = re.compile(r"^blend_(%s)$" % "|".join(FEATURES))
_FRONTEND_RE = re.compile(
    r"^(?:(?:frontend|front_end|fencoder|wencoder|pencoder|stem)_(%s)|(%s)_(?:frontend|front_end|stem))$"
    % ("|".join(FEATURES), "|".join(FEATURES)))

# The seed's component names, in the seed's print order.
COMPONENTS = ("GATE", "MLP", "Q", "K", "V", "O", "LN", "ENCODER", "BLEND")


def _key_name(key) -> str:
  """One path entry of jax.tree_util.tree_flatten_with_path as a string."""
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_names(path: Sequence) -> Tuple[str, ...]:
  return tuple(_key_name(k) for k in path)


def dotted(names: Iterable[str]) -> str:
  """Flax path components -> the seed's dotted module name."""
  names = list(names)
  if names and names[0] in ("params", "intermediates"):
    names = names[1:]
  top = names[0] if names else ""
  out = []
  for name in names:
    block = _BLOCK_RE.match(name)
    shared = _SHARED_BLOCK_RE.match(name)
    frontend = _FRONTEND_RE.match(name) if top == "encoder" else None
    feature_blend = _FEATURE_BLEND_RE.match(name) if top == "decoder" else None
    if feature_blend:
      out.append(f"blend.{feature_blend.group(1)}")
    elif block:
      offset = 1 if top == "encoder" else 0
      out.append(f"blocks.{block.group(1)}.{int(block.group(2)) + offset}")
    elif shared:
      out.append(f"_blocks.{int(shared.group(1))}")
    elif frontend:
      out.append(f"blocks.{frontend.group(1) or frontend.group(2)}.0")
    else:
      out.append(NORM_NAMES.get(name, name))
  return ".".join(out)


def _is_weight(leaf: str) -> bool:
  return leaf in ("kernel", "weight", "w", "scale", "embedding")


def component_of(leaf_path: str) -> Optional[str]:
  """The seed component (GATE, MLP, Q, K, V, O, LN, ENCODER, BLEND) of a dotted leaf, or None.

  Mirrors the tensors the seed hooked: the q/k/v/o weight matrices (not biases), the first MLP
  weights (every MLP kernel here; collect.classify_params keeps the first layer's, `mlp[0].weight`,
  by shape), the gate weight (`mlp_gate[0].weight`), every RMSNorm weight of a residual block,
  each block's blend scalar, and the encoder front-end weights (conv kernels).
  """
  parts = leaf_path.split(".")
  leaf = parts[-1]
  attn = re.search(r"\.attn[ab]\.([qkvo])\.(?:[^.]+\.)*(kernel|weight)$", "." + leaf_path)
  if attn:
    return attn.group(1).upper()
  if re.search(r"(^|\.)mlp_gate(\.|$)", leaf_path):
    return "GATE" if _is_weight(leaf) and leaf != "scale" else None
  if re.search(r"(^|\.)mlp\.", leaf_path):
    return "MLP" if leaf in ("kernel", "weight") else None
  if any(p in ("ln_a", "ln_b", "ln_c") for p in parts) and _is_weight(leaf):
    return "LN"
  if leaf == "blend" and re.search(r"(^|\.)(_blocks\.\d+|blocks\.[a-z]+\.\d+)\.blend$", leaf_path):
    return "BLEND"
  if re.match(r"^encoder\.blocks\.[a-z]+\.0\.", leaf_path) and leaf in ("kernel", "weight"):
    return "ENCODER"
  return None


# Lower-case group names of the in-step group means.
GROUP_OF_COMPONENT = {
    "GATE": "mlp_gate", "MLP": "mlp", "Q": "q", "K": "k", "V": "v", "O": "o", "LN": "norms",
    "BLEND": "blends", "ENCODER": "encoder_frontend",
}


def sample_key(leaf_path: str, component: str) -> str:
  """The module name one seed sample is reported under (`...attna` for Q/K/V/O, `...mlp`,
  `...mlp_gate`, `...ln_a`, `...blend`, the front-end layer for ENCODER)."""
  anchors = {"Q": r"\.attn[ab]", "K": r"\.attn[ab]", "V": r"\.attn[ab]", "O": r"\.attn[ab]",
             "MLP": r"\.mlp", "GATE": r"\.mlp_gate", "LN": r"\.ln_[abc]"}
  if component in anchors:
    m = re.match(r"^(.*?%s)(\.|$)" % anchors[component], leaf_path)
    if m:
      return m.group(1)
  if component == "BLEND":
    return leaf_path
  return leaf_path.rsplit(".", 1)[0]
