"""The data side: feature precompute speed and the tf.data train iterator against the step, on a
synthetic speech-like manifest dataset."""

import json
import os
import time
from typing import Any, Dict, Optional

import ml_collections
import numpy as np
import soundfile

from echo_jax.data import features as features_lib
from echo_jax.data import pipeline
from echo_jax.data.prepare import ensure_prepared


def synthetic_wave(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
  """Voiced/unvoiced speech-like audio: harmonic tones with a gliding F0, noise bursts between."""
  n = int(seconds * sample_rate)
  t = np.arange(n) / sample_rate
  f0 = rng.uniform(90, 250) * (1.0 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
  phase = 2 * np.pi * np.cumsum(f0) / sample_rate
  voiced = np.sum([np.sin(k * phase) / k for k in range(1, 8)], axis=0)
  gate = (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > -0.3).astype(np.float64)
  wave = 0.3 * voiced * gate + 0.02 * rng.normal(size=n) * (1 - gate)
  return wave.astype(np.float32)


def bench_features(config, total_seconds: float = 30.0, utterance_seconds: float = 5.0
                   ) -> Dict[str, Any]:
  """F0 (DIO + StoneMask) and log-mel speed, audio seconds per CPU second of this process."""
  params = features_lib.FeatureParams.from_config(config.data)
  rng = np.random.default_rng(0)
  count = max(1, int(round(total_seconds / utterance_seconds)))
  waves = [synthetic_wave(utterance_seconds, params.sample_rate, rng) for _ in range(count)]
  audio = count * utterance_seconds
  features_lib.log_mel(waves[0][:params.sample_rate], params)  # imports and filter bank
  features_lib.f0_track(waves[0][:params.sample_rate], params)
  out = {"audio_seconds": audio, "utterance_seconds": utterance_seconds}
  for name, fn in (("log_mel", features_lib.log_mel), ("f0", features_lib.f0_track),
                   ("both", features_lib.compute_features)):
    cpu, wall = time.process_time(), time.perf_counter()
    for wave in waves:
      fn(wave, params)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out[name] = {"cpu_s": cpu, "wall_s": wall, "audio_s_per_cpu_s": audio / cpu,
                 "audio_s_per_wall_s": audio / wall}
  return out


def make_synthetic_dataset(config, workdir: str, num_utterances: int, seed: int = 0):
  """Writes wavs + manifest.jsonl (durations spread over the buckets) and prepares it (TFDS)."""
  d = config.data
  sample_rate, hop = int(d.sample_rate), int(d.hop_length)
  longest = min(float(d.max_audio_seconds), (int(d.bucket_frames[-1]) - 1) * hop / sample_rate)
  shortest = min(1.0, longest / 2)
  corpus = os.path.join(workdir, "synthetic_corpus")
  manifest = os.path.join(corpus, "manifest.jsonl")
  rng = np.random.default_rng(seed)
  words = ["pitch", "echo", "rotary", "speech", "model", "voice", "frame", "token", "signal",
           "sound"]
  if not os.path.exists(manifest):
    os.makedirs(corpus, exist_ok=True)
    lines = []
    for i in range(num_utterances):
      seconds = float(rng.uniform(shortest, longest))
      path = f"utt{i:04d}.wav"
      soundfile.write(os.path.join(corpus, path), synthetic_wave(seconds, sample_rate, rng),
                      sample_rate, subtype="PCM_16")
      text = " ".join(rng.choice(words, size=max(2, int(seconds * 2.5))))
      split = "train" if i % 10 else "validation"
      lines.append(json.dumps({"id": f"utt{i:04d}", "path": path, "text": text, "split": split,
                               "speaker": f"s{i % 4}"}))
    with open(manifest + ".tmp", "w") as f:
      f.write("\n".join(lines) + "\n")
    os.replace(manifest + ".tmp", manifest)
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.dataset = "manifest"
  config.data.manifest_path = manifest
  config.data.root = workdir
  config.data.corpus_dir = ""
  config.data.tfds_data_dir = ""
  config.data.tokenizer = "char"
  return config, ensure_prepared(config)


def bench_pipeline(config, workdir: str, batches: int, num_utterances: int,
                   consumed: Optional[Dict[str, Any]]) -> Dict[str, Any]:
  """Batches/s, examples/s and audio-seconds/s the tf.data train iterator delivers."""
  start = time.perf_counter()
  config, prepared = make_synthetic_dataset(config, workdir, num_utterances)
  prepare_s = time.perf_counter() - start
  iterator = pipeline.make_train_iterator(config, prepared)
  next(iterator)  # start-up (threads, data source) is not steady state
  hop, sr = int(config.data.hop_length), int(config.data.sample_rate)
  examples = frames = 0
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(iterator)
    examples += int(batch["num_frames"].shape[0])
    frames += int(np.sum(batch["num_frames"]))
  seconds = time.perf_counter() - start
  out = {"batches": batches, "seconds": seconds, "batches_per_s": batches / seconds,
         "examples_per_s": examples / seconds, "audio_seconds_per_s": frames * hop / sr / seconds,
         "mean_batch_examples": examples / batches, "prepare_s": prepare_s,
         "train_split_size": int(prepared.split_sizes.get("train", 0))}
  if consumed is not None:
    out["step_consumes"] = {"examples_per_s": consumed["examples_per_s"],
                            "audio_seconds_per_s": consumed["audio_seconds_per_s"]}
    out["delivered_over_consumed_audio"] = (out["audio_seconds_per_s"] /
                                            consumed["audio_seconds_per_s"])
    out["delivered_over_consumed_examples"] = out["examples_per_s"] / consumed["examples_per_s"]
  return out
