"""Attention weights of every MultiheadA for one forward pass.

MultiheadA sows its softmax weights into the "attention_weights" collection, which is only
materialised when the caller makes it mutable, so the weights are the model's own.
"""

from typing import Any, Dict, Mapping, Optional, Sequence

import jax
import numpy as np

from echo_jax.data.features import compute_features
from echo_jax.diagnostics.report import natural_key
from echo_jax.inference import loading
from echo_jax.models.building import build_model, example_batch
from echo_jax.training import diagnostics_naming as naming


def attention_weights(model, variables, batch: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """{dotted attention module: weights [B, H, Tq, Tk] float32} of `model.apply(variables, batch)`."""
  _, state = model.apply(variables, batch, mutable=["attention_weights"])
  weights = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(state.get("attention_weights", {}))[0]:
    names = [getattr(k, "key", str(k)) for k in path]
    # Sown values are tuples: the path ends in ("weights", index 0).
    module = names[:names.index("weights")]
    weights.setdefault(naming.dotted(module), np.asarray(leaf, np.float32))
  if not weights:
    raise RuntimeError("no attention weights were sown: MultiheadA must sow 'attention_weights'")
  return weights


def default_layers(names: Sequence[str]) -> list:
  """First and last encoder self-attention and first and last decoder cross-attention."""
  enc = sorted([n for n in names if n.startswith("encoder") and n.endswith("attna")],
               key=natural_key)
  cross = sorted([n for n in names if n.startswith("decoder") and n.endswith("attnb")],
                 key=natural_key)
  picked = []
  for group in (enc, cross):
    for n in (group[:1] + group[-1:]):
      if n not in picked:
        picked.append(n)
  return picked


def select_maps(weights: Mapping[str, np.ndarray], batch: Mapping[str, Any],
                layers: Optional[Sequence[str]] = None, heads: Optional[Sequence[int]] = None,
                row: int = 0) -> Dict[str, np.ndarray]:
  """{"<module> head h": [Tq_valid, Tk_valid]} for utterance `row`, cut to its valid lengths."""
  layers = list(layers) if layers else default_layers(list(weights))
  missing = [l for l in layers if l not in weights]
  if missing:
    raise ValueError(f"--layers {missing} not found; attention modules: {sorted(weights)}")
  n_tokens = int(np.sum(np.asarray(batch["decoder_input_tokens"])[row] != 0))
  n_frames = int(np.asarray(batch["num_frames"])[row])
  maps = {}
  for layer in layers:
    w = weights[layer][row]  # [H, Tq, Tk]
    tq, tk = w.shape[1], w.shape[2]
    factor = max(1, round(np.asarray(batch["mel"]).shape[1] / tk))
    frames = -(-n_frames // factor)
    q_len = n_tokens if layer.startswith("decoder") else frames
    k_len = frames if layer.endswith("attnb") or layer.startswith("encoder") else n_tokens
    for h in (heads if heads is not None else range(w.shape[0])):
      maps[f"{layer} head {h}"] = w[h, :min(q_len, tq), :min(k_len, tk)]
  return maps


def load_trained(workdir: str):
  """(config, model, variables, tokenizer) of a run: its resolved config, its best (else latest)
  checkpoint and its tokenizer (echo_jax.inference.loading.load_run)."""
  run = loading.load_run(workdir)
  return run.config, run.model, run.variables, run.tokenizer


def from_wave(config, wave: np.ndarray, workdir: Optional[str] = None, text: Optional[str] = None,
              layers: Optional[str] = None, heads: Optional[str] = None) -> Dict[str, np.ndarray]:
  """Maps for one recording: a trained run's checkpoint (`workdir`) or fresh parameters from
  `config`; decoder queries are the teacher-forced `text` (run tokenizer) or BOS alone."""
  if workdir:
    config, model, variables, tokenizer = load_trained(workdir)
  else:
    config.model.vocab_size = max(int(config.model.vocab_size), 64)
    model = build_model(config)
    variables, tokenizer = None, None
  feats = compute_features(wave, config.data)
  frames = feats["mel"].shape[0]
  edge = -(-frames // 64) * 64
  batch = example_batch(config, 1, edge)
  batch["mel"][0, :frames] = feats["mel"]
  batch["f0"][0, :frames] = feats["f0"]
  batch["num_frames"][0] = frames
  if text is not None and tokenizer is None:
    raise ValueError("--text needs --workdir: the transcript is encoded with the run's tokenizer")
  ids = [] if text is None else list(tokenizer.encode(text))
  length = batch["decoder_input_tokens"].shape[1]
  ids = ids[:length - 1]
  batch["decoder_input_tokens"][0, :len(ids) + 1] = [1] + ids
  if variables is None:
    variables = model.init(jax.random.PRNGKey(0), batch)
  weights = attention_weights(model, variables, batch)
  return select_maps(weights, batch,
                     layers=layers.split(",") if layers else None,
                     heads=[int(h) for h in heads.split(",")] if heads else None)
