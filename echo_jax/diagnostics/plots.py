"""Pictures: rotary similarity grids, log-mel + F0, attention maps, training curves, theta vs F0.

Every function writes one PNG (matplotlib Agg) and returns its path. Inputs are plain arrays or a
run's files, so each picture can be regenerated from the command line (see __main__.py).
"""

import json
import os
from typing import Dict, List, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from echo_jax.models import rotary  # noqa: E402

DPI = 80


def _save(fig, out_path: str) -> str:
  """PNG with a 256-colour palette: a fraction of the RGBA size, visually the same."""
  import io
  from PIL import Image

  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
  plt.close(fig)
  buffer.seek(0)
  image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
  image.save(out_path, optimize=True)
  return out_path


save_png = _save  # for the other reports' pictures (echo_jax.experiments.report)


# ---------------------------------------------------------------- 1. rotary similarity (spec §3)

def rotary_similarity(theta_mode: str, f0_mean: float, base_theta: float, positions: int,
                      head_dim: int) -> np.ndarray:
  """[T, T] cosine similarity between positions of the model's own rotary encoding.

  A key of ones-and-zeros pairs (1, 0) rotated by `apply_rotary` at position t is
  [cos(t w_k), sin(t w_k)]_k, so its cosine similarity with position s is mean_k cos((t-s) w_k).
  """
  theta = rotary.utterance_theta(jnp.asarray([f0_mean], jnp.float32), theta_mode, base_theta)
  inv_freq = rotary.inverse_frequencies(theta, head_dim, theta_mode)[:, None, :]  # [1, 1, hd/2]
  rot = rotary.make_rotary(jnp.arange(positions), inv_freq)
  unit = jnp.tile(jnp.asarray([1.0, 0.0], jnp.float32), head_dim // 2)
  x = jnp.broadcast_to(unit, (1, positions, 1, head_dim))
  v = np.asarray(rotary.apply_rotary(x, rot))[0, :, 0, :]
  v = v / np.linalg.norm(v, axis=-1, keepdims=True)
  return v @ v.T


def plot_rotary(out_path: str, theta_modes: Sequence[str] = ("fixed", "seed", "clamped", "mel"),
                f0_values: Sequence[float] = (0.0, 100.0, 150.0, 220.0, 300.0),
                base_theta: float = 10000.0, positions: int = 32, head_dim: int = 128) -> str:
  """Rows: theta modes; columns: utterance mean F0, each panel the position-similarity matrix;
  the last column overlays each panel's first row (similarity against position offset)."""
  sims = {(m, f): rotary_similarity(m, f, base_theta, positions, head_dim)
          for m in theta_modes for f in f0_values}
  low = min(float(s.min()) for s in sims.values())
  fig, axes = plt.subplots(len(theta_modes), len(f0_values) + 1, squeeze=False,
                           figsize=(1.9 * len(f0_values) + 3.4, 1.95 * len(theta_modes) + 0.5),
                           gridspec_kw={"width_ratios": [1] * len(f0_values) + [1.7]})
  image = None
  colours = plt.cm.plasma(np.linspace(0.0, 0.85, len(f0_values)))
  for r, mode in enumerate(theta_modes):
    profile_ax = axes[r, -1]
    for c, f0 in enumerate(f0_values):
      sim = sims[(mode, f0)]
      theta = float(rotary.utterance_theta(jnp.asarray([f0], jnp.float32), mode, base_theta)[0])
      ax = axes[r, c]
      image = ax.imshow(sim, cmap="viridis", vmin=low, vmax=1.0, interpolation="nearest")
      label = (f"bank x{theta / rotary.MEL_REFERENCE_HZ:.2f}" if mode == "mel"
               else f"θ={theta:,.0f}")
      ax.set_title(f"F0={f0:g} Hz: {label}", fontsize=7)
      ax.set_xticks([])
      ax.set_yticks([])
      if c == 0:
        ax.set_ylabel(mode, fontsize=9)
      profile_ax.plot(np.arange(positions), sim[0], color=colours[c], lw=1.2, label=f"{f0:g} Hz")
    profile_ax.set_ylim(low, 1.02)
    profile_ax.tick_params(labelsize=7)
    profile_ax.grid(alpha=0.3)
    if r == 0:
      profile_ax.set_title("similarity vs offset", fontsize=8)
      profile_ax.legend(fontsize=6, ncol=2, title="F0", title_fontsize=6)
    if r == len(theta_modes) - 1:
      profile_ax.set_xlabel("offset (positions)", fontsize=8)
  fig.suptitle(f"Rotary cosine similarity between positions 0..{positions - 1} "
               f"(head dim {head_dim}); rows: theta_mode", fontsize=10)
  fig.colorbar(image, ax=axes[:, :-1], shrink=0.5, label="cos similarity", location="bottom", pad=0.03, aspect=40)
  return _save(fig, out_path)


# ---------------------------------------------------------------- 2. log-mel with F0 and voicing

def plot_features(out_path: str, mel: np.ndarray, f0: np.ndarray, data_cfg,
                  title: str = "") -> str:
  """Log-mel [T, n_mels] as an image on a mel-frequency axis, F0 (Hz) drawn on it, voicing shaded."""
  import librosa

  mel = np.asarray(mel, np.float32)
  f0 = np.asarray(f0, np.float32)
  hop, sr = int(data_cfg.hop_length), int(data_cfg.sample_rate)
  t = np.arange(mel.shape[0]) * hop / sr
  n_mels = mel.shape[1]
  # Band centres in Hz, so the F0 line sits on the same axis as the spectrogram.
  edges_hz = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=float(data_cfg.fmin),
                                     fmax=float(data_cfg.fmax), htk=True)
  centres = edges_hz[1:-1]
  fig, (ax, ax_v) = plt.subplots(2, 1, figsize=(8, 3.8), sharex=True,
                                 gridspec_kw={"height_ratios": [6, 1]})
  mesh = ax.pcolormesh(t, centres, mel.T, shading="nearest", cmap="magma")
  ax.set_yscale("symlog", linthresh=500.0)
  ax.set_ylim(centres[0], centres[-1])
  voiced = f0 > 0
  ax.plot(t, np.where(voiced, f0, np.nan), color="cyan", lw=1.6, label="F0 (DIO + StoneMask)")
  ax.set_ylabel("frequency (Hz)")
  ticks = [f for f in (100, 200, 500, 1000, 2000, 4000, 8000) if centres[0] <= f <= centres[-1]]
  ax.set_yticks(ticks, [f"{f:g}" for f in ticks])
  ax.legend(loc="upper right", fontsize=8)
  fig.colorbar(mesh, ax=[ax, ax_v], label="log-mel (seed scaling)", shrink=0.8)
  ax_v.fill_between(t, 0, voiced.astype(float), step="mid", color="tab:green", alpha=0.7)
  ax_v.set_yticks([0, 1], ["unvoiced", "voiced"], fontsize=7)
  ax_v.set_xlabel("time (s)")
  mean_f0 = float(f0[voiced].mean()) if voiced.any() else 0.0
  ax.set_title(f"{title} mean voiced F0 {mean_f0:.0f} Hz, {voiced.mean():.0%} voiced".strip())
  return _save(fig, out_path)


# ---------------------------------------------------------------- 3. attention maps

def plot_attention(out_path: str, maps: Mapping[str, np.ndarray], title: str = "") -> str:
  """One panel per (name -> [Tq, Tk] weights); queries down, keys across."""
  names = list(maps)
  cols = 2 if len(names) == 4 else min(len(names), 3)
  rows = (len(names) + cols - 1) // cols
  fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(3.6 * cols, 3.2 * rows))
  for ax in axes.ravel()[len(names):]:
    ax.axis("off")
  for ax, name in zip(axes.ravel(), names):
    w = np.asarray(maps[name], np.float32)
    im = ax.imshow(w, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_title(name, fontsize=8)
    decoder_queries = name.startswith("decoder")
    frame_keys = not decoder_queries or ".attnb" in name
    ax.set_xlabel("key (encoder frame)" if frame_keys else "key (token)", fontsize=8)
    ax.set_ylabel("query (token)" if decoder_queries else "query (encoder frame)", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return _save(fig, out_path)


# ---------------------------------------------------------------- 4. training curves

def read_metrics(path: str) -> List[Dict[str, float]]:
  """metrics.jsonl records ({"step": int, "train/loss": float, ...}), in file order."""
  records = []
  with open(path) as f:
    for line_no, line in enumerate(f, 1):
      if line.strip():
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise ValueError(f"{path}:{line_no} is not JSON ({e}); is this a metrics.jsonl?")
  return records


def metric_series(records, key):
  """[N, 2] (step, value) of `key`'s finite values, by step. A step logged twice (a resumed run
  repeats the steps after its checkpoint) keeps its last value, the one training went on from."""
  by_step = {}
  for r in records:
    value = r.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
      by_step[int(r["step"])] = float(value)
  return np.asarray(sorted(by_step.items()), np.float64).reshape(-1, 2)


def _metric_name(key: str) -> str:
  return key.rsplit("/", 1)[-1]


def _is_loss(key: str) -> bool:  # loss, nll and its parts (ctc_loss, ce_loss)
  name = _metric_name(key)
  return name in ("loss", "nll") or name.endswith("_loss")


def _is_error_rate(key: str) -> bool:  # wer, cer, ctc_wer, ...; not the running best_wer
  name = _metric_name(key)
  if name.startswith("best_"):
    return False
  return name in ("wer", "cer") or name.endswith(("_wer", "_cer"))


def curve_panels(records: Sequence[Mapping[str, float]]) -> List[tuple]:
  """[(panel title, [metric keys])] for loss (train/eval loss and its ctc/ce parts), error rate
  (WER/CER of decoding, incl. ctc_wer/ctc_cer) and learning rate, when present."""
  keys = sorted({k for r in records for k in r if k != "step"})
  panels = [
      ("loss", [k for k in keys if _is_loss(k)]),
      ("error rate", [k for k in keys if _is_error_rate(k)]),
      ("learning rate", [k for k in keys if _metric_name(k) in ("lr", "learning_rate")]),
  ]
  return [(name, ks) for name, ks in panels if ks]


def _curve_style(key: str) -> Dict:
  """Train solid, eval with markers; CER and the loss parts dashed, so WER/CER and total/part
  pairs read apart while sharing a colour cycle."""
  name = _metric_name(key)
  dashed = name.endswith("cer") or (name.endswith("_loss") and name != "loss")
  return {"ls": "--" if dashed else "-", "marker": "o" if key.startswith("eval/") else None}


def curves_figure(records: Sequence[Mapping[str, float]], title: str = ""):
  """The learning-curves figure: one panel per curve_panels entry, one line per metric key
  (label = the key; x = step, y = value, as read)."""
  panels = curve_panels(records)
  if not panels:
    keys = sorted({k for r in records for k in r})
    raise ValueError(f"no loss/wer/cer/lr keys among {keys}")
  fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(4.2 * len(panels), 3.2))
  for ax, (name, ks) in zip(axes[0], panels):
    for k in ks:
      pts = metric_series(records, k)
      style = _curve_style(k)
      marker = style["marker"] or ("o" if len(pts) < 30 else None)
      ax.plot(pts[:, 0], pts[:, 1], ls=style["ls"], marker=marker, ms=3, label=k)
    ax.set_xlabel("step")
    ax.set_title(name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


def plot_curves(out_path: str, metrics_path: str) -> str:
  """Loss (train and eval, CTC/CE parts), WER/CER and learning rate against step, from
  metrics.jsonl (metrics.MetricsWriter's format)."""
  records = read_metrics(metrics_path)
  try:
    fig = curves_figure(records)
  except ValueError as e:
    raise ValueError(f"{metrics_path}: {e}") from None
  return _save(fig, out_path)


def compare_keys(runs: Mapping[str, Sequence[Mapping[str, float]]]) -> List[str]:
  """The evaluation loss and error rates any of the runs logged: what runs are compared by."""
  keys = sorted({k for records in runs.values() for r in records for k in r
                 if k.startswith("eval/") and (_is_loss(k) or _is_error_rate(k))})
  return sorted(keys, key=lambda k: not _is_loss(k))  # losses first, as in curves_figure


def compare_figure(runs: Mapping[str, Sequence[Mapping[str, float]]], keys: Sequence[str],
                   x_axis: str = "step"):
  """Runs side by side: one panel per metric key, one line per run (label = the run's name).
  x_axis "fraction" draws each run against step / its last logged step, so runs of the same
  schedule in different step counts (other batch sizes) line up; "step" draws the steps."""
  if x_axis not in ("step", "fraction"):
    raise ValueError(f"x_axis={x_axis!r}: use 'step' or 'fraction'")
  if not keys:
    raise ValueError(f"the runs {sorted(runs)} logged no evaluation loss or error rate")
  last_step = {name: max(int(r["step"]) for r in records) for name, records in runs.items()}
  fig, axes = plt.subplots(1, len(keys), squeeze=False, figsize=(4.2 * len(keys), 3.2))
  for ax, key in zip(axes[0], keys):
    drawn = 0
    for name, records in runs.items():
      pts = metric_series(records, key)
      if not len(pts):
        continue  # e.g. a run without a CTC head has no eval/ctc_cer
      xs = pts[:, 0] / last_step[name] if x_axis == "fraction" else pts[:, 0]
      ax.plot(xs, pts[:, 1], marker="o" if len(pts) < 30 else None, ms=3, label=name)
      drawn += 1
    if not drawn:
      raise ValueError(f"no run logged {key!r} (runs: {sorted(runs)})")
    ax.set_xlabel("fraction of the run's steps" if x_axis == "fraction" else "step")
    ax.set_title(key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def plot_compare(out_path: str, metrics_paths: Mapping[str, str],
                 keys: Sequence[str] | None = None, x_axis: str = "step") -> str:
  """compare_figure of the runs' metrics.jsonl files ({name: path}); keys default to
  compare_keys."""
  runs = {name: read_metrics(path) for name, path in metrics_paths.items()}
  return _save(compare_figure(runs, list(keys) if keys else compare_keys(runs), x_axis), out_path)


# ---------------------------------------------------------------- 5. theta per utterance vs F0

def plot_theta(out_path: str, f0_means: np.ndarray, thetas: np.ndarray, theta_mode: str,
               base_theta: float, title: str = "") -> str:
  """Dots: the theta each utterance got (sown by the model) against its voiced mean F0;
  line: the rotary module's formula for `theta_mode`."""
  f0_means = np.ravel(np.asarray(f0_means, np.float64))
  thetas = np.ravel(np.asarray(thetas, np.float64))
  hi = max(450.0, float(f0_means.max()) * 1.1 if f0_means.size else 0.0)
  grid = np.linspace(0.0, hi, 200)
  curve = np.asarray(rotary.utterance_theta(jnp.asarray(grid, jnp.float32), theta_mode, base_theta))
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  ax.plot(grid, curve, color="gray", lw=1.2, label=f"formula ({theta_mode})")
  ax.scatter(f0_means, thetas, s=14, color="tab:red", zorder=3,
             label=f"utterances (n={f0_means.size})")
  ax.set_xlabel("voiced mean F0 (Hz)")
  ax.set_ylabel("rotary θ" if theta_mode != "mel" else "mel-bank scale (Hz)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(title or "rotary θ per utterance vs mean F0", fontsize=10)
  fig.tight_layout()
  return _save(fig, out_path)
