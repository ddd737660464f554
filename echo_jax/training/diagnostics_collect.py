"""The diagnostics pytree, computed inside the jitted train step (pure jnp, static structure).

`diagnostics_from(grads, params, updates, intermediates, batch=None)` returns a nested dict of
float32 arrays; every innermost key is a dotted module name as the seed printed it (see
diagnostics_naming.py):

  grad_mean_abs/<leaf>          mean |g| of every parameter leaf
  param_norm/<leaf>             ||p||_2 of every leaf
  update_norm/<leaf>            ||u||_2 of the optimizer update of every leaf
  global_norm/{grad,param,update}
  seed/<COMPONENT>/<module>     the seed's per-tensor sample, mean |g| of the hooked weight
                                (COMPONENT in GATE MLP Q K V O LN ENCODER BLEND)
  group_grad_mean_abs/<group>   mean over a group's tensors of their mean |g|
                                (q k v o mlp mlp_gate norms blends encoder_frontend)
  activation_mean_abs/<module>.<name>   mean |a| of a sown activation
  activation_sparsity/<module>.<name>   fraction of |a| < SPARSITY_THRESHOLD
  rotary_theta/<module>         the sown per-utterance theta ([B] or [B, T]); `model` when the
                                root module sowed it
  pitch_bias_scale/<module>     the sown pitch-bias scale
  f0_mean_voiced                per-utterance mean F0 over voiced frames (needs `batch`)

With `batch`, activation statistics pool only valid positions: encoder tensors the valid frames
(num_frames scaled to the tensor's length), decoder tensors the non-pad target positions, and
never rows with valid=False. Without it they pool every element, as the seed's hooks did.
"""

from typing import Any, Dict, Mapping, Optional

import jax
import jax.numpy as jnp

from echo_jax.training import diagnostics_naming as naming

SPARSITY_THRESHOLD = 0.01
ACTIVATION_NAMES = ("attention_output", "mlp_activation", "gate_activation", "residual_output",
                    "final_output")
PER_UTTERANCE_NAMES = ("rotary_theta", "pitch_bias_scale")


def _strip_collection(tree: Any, name: str) -> Any:
  if isinstance(tree, Mapping) and set(tree.keys()) == {name}:
    return tree[name]
  return tree


def _leaves(tree: Any) -> Dict[str, jax.Array]:
  """{dotted leaf path: array}, deterministic order."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    out[naming.dotted(naming.path_names(path))] = leaf
  return out


def _first_mlp_kernels(leaf_shapes: Mapping[str, tuple]) -> Dict[str, str]:
  """{mlp module: dotted leaf of its first (expanding) kernel}; the seed hooked mlp[0].weight."""
  by_module: Dict[str, list] = {}
  for leaf, shape in leaf_shapes.items():
    if leaf.rsplit(".", 1)[-1] in ("kernel", "weight") and ".mlp." in "." + leaf and len(shape) == 2:
      by_module.setdefault(naming.sample_key(leaf, "MLP"), []).append(leaf)
  first = {}
  for module, leaves in by_module.items():
    expanding = [l for l in leaves if leaf_shapes[l][0] < leaf_shapes[l][1]]
    first[module] = sorted(expanding or leaves)[0]
  return first


def classify_params(leaf_shapes: Mapping[str, tuple]) -> Dict[str, str]:
  """{dotted leaf: seed component} for the leaves the seed's hooks covered."""
  first = _first_mlp_kernels(leaf_shapes)
  out = {}
  for leaf in leaf_shapes:
    comp = naming.component_of(leaf)
    if comp == "MLP" and first.get(naming.sample_key(leaf, "MLP")) != leaf:
      comp = None
    if comp:
      out[leaf] = comp
  return out


def _f32(x):
  return jnp.asarray(x, jnp.float32)


def _mean_abs(x):
  return jnp.mean(jnp.abs(_f32(x)))


def _norm(x):
  return jnp.sqrt(jnp.sum(jnp.square(_f32(x))))


def _global_norm(leaves):
  return jnp.sqrt(sum(jnp.sum(jnp.square(_f32(x))) for x in leaves)) if leaves else jnp.float32(0)


def gradient_diagnostics(grads, params, updates=None) -> Dict[str, Any]:
  grads = _leaves(_strip_collection(grads, "params"))
  params = _leaves(_strip_collection(params, "params"))
  out: Dict[str, Any] = {
      "grad_mean_abs": {k: _mean_abs(g) for k, g in grads.items()},
      "param_norm": {k: _norm(p) for k, p in params.items()},
      "global_norm": {"grad": _global_norm(list(grads.values())),
                      "param": _global_norm(list(params.values()))},
  }
  if updates is not None:
    updates = _leaves(_strip_collection(updates, "params"))
    out["update_norm"] = {k: _norm(u) for k, u in updates.items()}
    out["global_norm"]["update"] = _global_norm(list(updates.values()))
  components = classify_params({k: tuple(g.shape) for k, g in grads.items()})
  seed: Dict[str, Dict[str, Any]] = {}
  groups: Dict[str, list] = {}
  for leaf, comp in components.items():
    value = out["grad_mean_abs"][leaf]
    seed.setdefault(comp, {})[naming.sample_key(leaf, comp)] = value
    groups.setdefault(naming.GROUP_OF_COMPONENT[comp], []).append(value)
  out["seed"] = seed
  out["group_grad_mean_abs"] = {g: jnp.mean(jnp.stack(v)) for g, v in groups.items()}
  return out


def _position_mask(module: str, array: jax.Array, batch: Mapping[str, Any]) -> Optional[jax.Array]:
  """[B, T_a] validity for an activation [B, T_a, ...], or None when its time axis is unknown."""
  if array.ndim < 2:
    return None
  b, t = array.shape[0], array.shape[1]
  rows = jnp.ones((b,), bool) if "valid" not in batch else jnp.asarray(batch["valid"], bool)
  if rows.shape[0] != b:
    return None
  if module.startswith("decoder") and "decoder_target_tokens" in batch:
    targets = batch["decoder_target_tokens"]
    if targets.shape[1] != t:
      return None
    return (targets != 0) & rows[:, None]
  frames = batch["mel"] if "mel" in batch else batch.get("f0")
  if module.startswith("encoder") and "num_frames" in batch and frames is not None:
    # A stream downsampled by `factor` has ceil(num_frames / factor) valid frames.
    factor = max(1, round(frames.shape[1] / t))
    valid_len = (jnp.asarray(batch["num_frames"], jnp.int32) + factor - 1) // factor
    return (jnp.arange(t)[None, :] < valid_len[:, None]) & rows[:, None]
  return None


def _activation_stats(module: str, arrays, batch) -> tuple:
  total = jnp.float32(0)
  small = jnp.float32(0)
  count = jnp.float32(0)
  for a in arrays:
    a = jnp.abs(_f32(a))
    mask = _position_mask(module, a, batch) if batch is not None else None
    if mask is None:
      weight = jnp.ones(a.shape, jnp.float32)
    else:
      weight = jnp.broadcast_to(
          mask.reshape(mask.shape + (1,) * (a.ndim - 2)).astype(jnp.float32), a.shape)
    total += jnp.sum(a * weight)
    small += jnp.sum((a < SPARSITY_THRESHOLD) * weight)
    count += jnp.sum(weight)
  count = jnp.maximum(count, 1.0)
  return total / count, small / count


def activation_diagnostics(intermediates, batch=None) -> Dict[str, Any]:
  intermediates = _strip_collection(intermediates, "intermediates")
  sown: Dict[str, list] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(intermediates)[0]:
    names = [n for n in naming.path_names(path)]
    # Drop the tuple index flax's sow appends under each name.
    while names and names[-1].isdigit():
      names = names[:-1]
    sown.setdefault(naming.dotted(names), []).append(leaf)
  out: Dict[str, Any] = {"activation_mean_abs": {}, "activation_sparsity": {}}
  for key, arrays in sown.items():
    module, _, name = key.rpartition(".")
    if name in ACTIVATION_NAMES:
      mean, sparsity = _activation_stats(module, arrays, batch)
      out["activation_mean_abs"][key] = mean
      out["activation_sparsity"][key] = sparsity
    elif name in PER_UTTERANCE_NAMES:
      # One call per module in a step; later calls of a shared module repeat the first.
      out.setdefault(name, {})[module or "model"] = _f32(arrays[0])
  return out


def f0_mean_voiced(batch: Mapping[str, Any]) -> jax.Array:
  """Per-utterance mean F0 over voiced (f0 > 0) valid frames; 0 when none is voiced."""
  f0 = _f32(batch["f0"])
  valid = jnp.arange(f0.shape[1])[None, :] < batch["num_frames"][:, None]
  voiced = (f0 > 0) & valid
  return jnp.sum(jnp.where(voiced, f0, 0.0), axis=1) / jnp.maximum(jnp.sum(voiced, axis=1), 1)


def diagnostics_from(grads, params, updates, intermediates, batch=None) -> Dict[str, Any]:
  """The diagnostics pytree for one train step (see the module docstring)."""
  out = gradient_diagnostics(grads, params, updates)
  if intermediates is not None:
    out.update(activation_diagnostics(intermediates, batch))
  if batch is not None and "f0" in batch and "num_frames" in batch:
    out["f0_mean_voiced"] = f0_mean_voiced(batch)
  return out
