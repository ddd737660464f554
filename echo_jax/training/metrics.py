"""Loss and metric functions, and the metric writers (TensorBoard, metrics.jsonl, progress bar).

WER/CER live in echo_jax.inference.scoring (shared with `evaluate`).
"""

import json
import math
import os
import time
from typing import Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from echo_jax.token_ids import PAD_ID


def token_sums(logits: jax.Array, targets: jax.Array,
               row_weights: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
  """Summed token cross-entropy, real-token count and argmax hits, all float32.

  Pad targets (0) are ignored; EOS is an ordinary target. `row_weights` ([B] bool/float) drops whole
  rows (eval padding). Sums, not means: the caller divides by the *global* token count.
  """
  logits = logits.astype(jnp.float32)
  mask = (targets != PAD_ID).astype(jnp.float32)
  if row_weights is not None:
    mask = mask * row_weights.astype(jnp.float32)[:, None]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  hits = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return {
      "loss_sum": jnp.sum(nll * mask),
      "num_tokens": jnp.sum(mask),
      "num_correct": jnp.sum(hits * mask),
  }


def mean_token_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Cross-entropy averaged over the real target tokens of the whole (global) batch."""
  sums = token_sums(logits, targets)
  return sums["loss_sum"] / jnp.maximum(sums["num_tokens"], 1.0)


def is_remote(path: str) -> bool:
  return "://" in str(path)


def open_file(path: str, mode: str):
  """open() for local paths, tf.io.gfile for gs:// and other remote workdirs."""
  if is_remote(path):
    import tensorflow as tf  # the data pipeline's dependency; only needed for remote paths
    return tf.io.gfile.GFile(path, mode)
  return open(path, mode, encoding="utf-8")


def path_exists(path: str) -> bool:
  """os.path.exists for local paths, tf.io.gfile.exists for remote ones."""
  if is_remote(path):
    import tensorflow as tf  # heavy; only needed for remote paths
    return tf.io.gfile.exists(path)
  return os.path.exists(path)


def make_dirs(path: str) -> None:
  if is_remote(path):
    import tensorflow as tf  # heavy; only needed for remote paths
    tf.io.gfile.makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


class _TfSummaryWriter:
  """TensorBoard events through tf.summary, for remote (gs://) workdirs."""

  def __init__(self, logdir: str):
    import tensorflow as tf  # heavy; only remote workdirs write through tf.summary
    self._tf = tf
    self._writer = tf.summary.create_file_writer(logdir)

  def add_scalar(self, name: str, value: float, step: int) -> None:
    with self._writer.as_default():
      self._tf.summary.scalar(name, value, step=step)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class MetricsWriter:
  """Scalars to TensorBoard event files and one JSON object per line in metrics.jsonl.

  Only the writing process (process 0) touches the files; other processes get a no-op writer.
  Local workdirs use tensorboardX; gs:// workdirs tf.summary and tf.io.gfile.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    if enabled:
      make_dirs(workdir)
      self._jsonl = open_file(os.path.join(workdir, "metrics.jsonl"), "a")
      logdir = os.path.join(workdir, "tensorboard")
      if is_remote(workdir):
        self._tb = _TfSummaryWriter(logdir)
      else:
        from tensorboardX import SummaryWriter  # imported lazily: process 0 only
        self._tb = SummaryWriter(logdir)

  def write(self, step: int, scalars: Mapping[str, float], prefix: str = "") -> None:
    if not self.enabled:
      return
    record = {"step": int(step)}
    for key, value in scalars.items():
      name = f"{prefix}{key}"
      if isinstance(value, (list, tuple)):
        record[name] = [float(v) for v in value]
        continue
      record[name] = float(value)
      if math.isfinite(float(value)):
        self._tb.add_scalar(name, float(value), int(step))
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()
      self.enabled = False


class ProgressBar:
  """Console progress with step, loss, lr, frames/s and ETA (tqdm), on process 0 only."""

  def __init__(self, total_steps: int, start_step: int, enabled: bool = True):
    self.enabled = enabled
    self._bar = None
    self._last_time = time.perf_counter()
    self._frames = 0
    if enabled:
      self._bar = tqdm.tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                            dynamic_ncols=True, mininterval=1.0, smoothing=0.1)

  def add_frames(self, frames: int) -> None:
    self._frames += int(frames)

  def update(self, steps: int, loss: float, lr: float) -> float:
    """Advances by `steps`; returns frames/s since the previous update."""
    now = time.perf_counter()
    fps = self._frames / max(now - self._last_time, 1e-9)
    self._last_time, self._frames = now, 0
    if self._bar is not None:
      self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", frames_s=f"{fps:.0f}", refresh=False)
      self._bar.update(steps)
    return fps

  def write(self, message: str) -> None:
    if self._bar is not None:
      self._bar.write(message)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


def host_mean(values: Sequence[float]) -> float:
  return float(np.mean(np.asarray(values, np.float64))) if len(values) else float("nan")
