"""The seed's diagnostic report, rebuilt from diagnostics dumps (spec §2 definitions).

A *sample* is one tensor's mean |grad| at one dumped step (the seed took 15 per tensor). Tensors
whose gradient is exactly zero at every selected step are left out, as the seed's hooks never fired
for modules without gradients. Per-module values are means over the selected steps.

Ratios per attention module (Q, K, V, O = the module's mean |grad| of each weight):
  o_v_ratio = O/V, q_k_sim = min(Q,K)/max(Q,K), qk_v_ratio = (Q+K)/V, v_k_ratio = V/K,
  v_q_ratio = V/Q.
GATE vs MLP per residual block: ratio = mean |gate logit| / mean |mlp output|, sparsity
difference = gate sparsity - mlp sparsity, status by `gate_mlp_status`.
"""

import math
import re
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from echo_jax.training import diagnostics_naming as naming

# Seed colours: every ratio <= 1.93 was green and every ratio >= 2.096 yellow, so 2.0 splits them.
YELLOW_RATIO = 2.0
# Red (no red appears in the seed; our rule): the gate logit is far from the MLP output's scale,
# either >= 5x (the sigmoid saturates: the gate is a hard on/off switch, a shortcut) or < 0.5x
# (sigma(logit) stays near 0.5: the gate does not select anything), or the gate is much sparser
# than the MLP (> +0.1) while its mean is at least the MLP's (a few large logits: a switch).
RED_RATIO_HIGH = 5.0
RED_RATIO_LOW = 0.5
RED_SPARSITY_DIFF = 0.1
STATUS_MARK = {"green": "🟢", "yellow": "🟡", "red": "🔴"}

RATIO_NAMES = ("o_v_ratio", "q_k_sim", "qk_v_ratio", "v_k_ratio", "v_q_ratio")

HEADINGS = {
    "component_statistics": "📊 COMPONENT STATISTICS:",
    "attention_ratios": "🔄 ATTENTION COMPONENT RATIOS:",
    "encoder_attention": "🎧 ENCODER ATTENTION GRADIENTS:",
    "decoder_attention": "📝 DECODER ATTENTION GRADIENTS:",
    "layer_norms": "📏 LAYER NORM GRADIENTS:",
    "blend": "🔀 CROSS-ATTENTION BLEND PARAMETERS:",
    "activations": "✨ ACTIVATION ANALYSIS (HIGH SPARSITY WITH HIGH MEAN MAY INDICATE SHORTCUTS):",
    "gate_vs_mlp": "🚨 GATE vs MLP ACTIVATION PATTERNS:",
    "rotary": "🎼 ROTARY THETA PER UTTERANCE:",
    "norms": "📐 GLOBAL NORMS (last selected step):",
}


def natural_key(name: str):
  """Sorts `blocks.spectrogram.10` after `.9`; otherwise plain string order (the seed's)."""
  return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


def attention_ratios(q: float, k: float, v: float, o: Optional[float]) -> Dict[str, float]:
  """The seed's five ratios of one attention module's mean |grad| (spec §2)."""
  out = {
      "q_k_sim": min(q, k) / max(q, k),
      "qk_v_ratio": (q + k) / v,
      "v_k_ratio": v / k,
      "v_q_ratio": v / q,
  }
  if o is not None:
    out["o_v_ratio"] = o / v
  return {name: out[name] for name in RATIO_NAMES if name in out}


def gate_mlp_status(ratio: float, sparsity_difference: float) -> str:
  """green / yellow / red for one block's GATE vs MLP line (module docstring, docs)."""
  if (ratio >= RED_RATIO_HIGH or ratio < RED_RATIO_LOW
      or (sparsity_difference > RED_SPARSITY_DIFF and ratio >= 1.0)):
    return "red"
  return "yellow" if ratio >= YELLOW_RATIO else "green"


def gate_vs_mlp(gate_mean, gate_sparsity, mlp_mean, mlp_sparsity) -> Dict[str, Any]:
  ratio = gate_mean / mlp_mean if mlp_mean > 0 else math.inf
  diff = gate_sparsity - mlp_sparsity
  return {"ratio": ratio, "sparsity_difference": diff, "status": gate_mlp_status(ratio, diff)}


def _by_category(dumps: Mapping[int, Mapping[str, np.ndarray]], category: str):
  """{rest of key: [value per step]} for keys `category/rest`."""
  out: Dict[str, List[np.ndarray]] = {}
  for step in sorted(dumps):
    for key, value in dumps[step].items():
      if key.startswith(category + "/"):
        out.setdefault(key[len(category) + 1:], []).append(np.asarray(value, np.float64))
  return out


def summarize(dumps: Mapping[int, Mapping[str, np.ndarray]]) -> Dict[str, Any]:
  """Every number of the report, as plain Python (the --json output)."""
  steps = sorted(dumps)
  seed = _by_category(dumps, "seed")
  samples: Dict[str, List[float]] = {}
  module_means: Dict[str, Dict[str, float]] = {}
  for key, values in seed.items():
    comp, module = key.split("/", 1)
    values = [float(v) for v in values]
    if not any(values):  # never received a gradient
      continue
    samples.setdefault(comp, []).extend(values)
    module_means.setdefault(comp, {})[module] = float(np.mean(values))
  stats = {comp: {"avg": float(np.mean(samples[comp])), "min": float(np.min(samples[comp])),
                  "max": float(np.max(samples[comp])), "samples": len(samples[comp])}
           for comp in naming.COMPONENTS if comp in samples}

  attention: Dict[str, Dict[str, float]] = {}
  q_mod = module_means.get("Q", {})
  for module in sorted(q_mod, key=natural_key):
    means = {c: module_means.get(c, {}).get(module) for c in "QKVO"}
    if None in (means["Q"], means["K"], means["V"]):
      continue
    entry = {"Q": means["Q"], "K": means["K"], "V": means["V"],
             "Sum": means["Q"] + means["K"] + means["V"]}
    if means["O"] is not None:
      entry["O"] = means["O"]
    entry["ratios"] = attention_ratios(means["Q"], means["K"], means["V"], means["O"])
    attention[module] = entry

  act_mean = {k: float(np.mean(v)) for k, v in _by_category(dumps, "activation_mean_abs").items()}
  act_sparsity = {k: float(np.mean(v))
                  for k, v in _by_category(dumps, "activation_sparsity").items()}
  activations = {k: {"mean": act_mean[k], "sparsity": act_sparsity.get(k, float("nan"))}
                 for k in sorted(act_mean, key=natural_key)}

  blocks = {k.rsplit(".", 1)[0] for k in activations if k.endswith(".gate_activation")}
  gates = {}
  for block in blocks:
    gate, mlp = activations.get(block + ".gate_activation"), activations.get(block + ".mlp_activation")
    if gate and mlp:
      gates[block] = gate_vs_mlp(gate["mean"], gate["sparsity"], mlp["mean"], mlp["sparsity"])
  order = sorted(gates, key=lambda b: (not b.startswith("encoder"), natural_key(b)))

  rotary = {}
  thetas = _by_category(dumps, "rotary_theta")
  if thetas:
    per_utt = np.concatenate([np.ravel(v) for vals in thetas.values() for v in vals])
    rotary["theta"] = {"min": float(per_utt.min()), "mean": float(per_utt.mean()),
                       "max": float(per_utt.max()), "values": int(per_utt.size),
                       "modules": len(thetas)}
  scales = _by_category(dumps, "pitch_bias_scale")
  if scales:
    per_utt = np.concatenate([np.ravel(v) for vals in scales.values() for v in vals])
    rotary["pitch_bias_scale"] = {"min": float(per_utt.min()), "mean": float(per_utt.mean()),
                                  "max": float(per_utt.max()), "values": int(per_utt.size)}
  last = dumps[steps[-1]]
  norms = {k.split("/", 1)[1]: float(v) for k, v in last.items() if k.startswith("global_norm/")}

  return {
      "steps": steps,
      "component_statistics": stats,
      "attention": attention,
      "layer_norms": {k: module_means["LN"][k]
                      for k in sorted(module_means.get("LN", {}), key=natural_key)},
      "blend": {k: module_means["BLEND"][k]
                for k in sorted(module_means.get("BLEND", {}), key=natural_key)},
      "activations": activations,
      "gate_vs_mlp": {b: gates[b] for b in order},
      "rotary": rotary,
      "global_norms": norms,
      "thresholds": {"sparsity": 0.01, "yellow_ratio": YELLOW_RATIO,
                     "red_ratio_high": RED_RATIO_HIGH, "red_ratio_low": RED_RATIO_LOW,
                     "red_sparsity_difference": RED_SPARSITY_DIFF},
  }


def format_report(summary: Mapping[str, Any], title: Optional[str] = None) -> str:
  """The seed's text layout (section names, order, number formats)."""
  lines: List[str] = []
  steps = summary["steps"]
  if title is not None:
    lines += [f"{title}: steps {steps[0]}..{steps[-1]} ({len(steps)} dumps)", ""]
  lines.append(HEADINGS["component_statistics"])
  for comp, s in summary["component_statistics"].items():
    lines.append(f"  {comp}: avg={s['avg']:.6f}, min={s['min']:.6f}, max={s['max']:.6f}, "
                 f"samples={s['samples']}")
  lines += ["", HEADINGS["attention_ratios"]]
  for module, entry in summary["attention"].items():
    for name, value in entry["ratios"].items():
      lines.append(f"  {module}.{name} = {value:.4f}")
  for side in ("encoder", "decoder"):
    lines += ["", HEADINGS[f"{side}_attention"]]
    for module, e in summary["attention"].items():
      if module.startswith(side):
        lines.append(f"  {module}: Q={e['Q']:.4f}, K={e['K']:.4f}, V={e['V']:.4f}, Sum={e['Sum']:.4f}")
  lines += ["", HEADINGS["layer_norms"]]
  lines += [f"  {k}: {v:.6f}" for k, v in summary["layer_norms"].items()]
  lines += ["", HEADINGS["blend"]]
  lines += [f"  {k}: {v:.6f}" for k, v in summary["blend"].items()]
  lines += ["", HEADINGS["activations"]]
  lines += [f"  {k}: activation mean={a['mean']:.4f}, sparsity={a['sparsity']:.4f}"
            for k, a in summary["activations"].items()]
  lines += ["", HEADINGS["gate_vs_mlp"]]
  for block, g in summary["gate_vs_mlp"].items():
    lines.append(f"{STATUS_MARK[g['status']]} {block}.: gate/mlp activation ratio={g['ratio']:.4f}, "
                 f"sparsity difference={g['sparsity_difference']:.4f}")
  rotary = summary.get("rotary") or {}
  if rotary:
    lines += ["", HEADINGS["rotary"]]
    for name, s in rotary.items():
      lines.append(f"  {name}: mean={s['mean']:.2f}, min={s['min']:.2f}, max={s['max']:.2f}, "
                   f"values={s['values']}")
  if summary.get("global_norms"):
    lines += ["", HEADINGS["norms"]]
    lines += [f"  {k}_norm: {v:.6f}" for k, v in sorted(summary["global_norms"].items())]
  return "\n".join(lines) + "\n"
