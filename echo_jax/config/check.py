"""Start-up validation of a whole config: every error names the field and the fix.

`validate_config(config)` runs the model's validator and checks the data, train, eval, decode and
distributed fields and their cross-constraints (e.g. model.n_mels == data.n_mels).
`validate_batch_sizes(config, num_devices)` checks the batch sizes against the device mesh.
The field checkers and ConfigError are the model schema's (echo_jax.models.config), so the whole
config is checked one way; validation only reads the config (it registers nothing).
"""

import os

import ml_collections

from echo_jax.data.f0_source import F0_SOURCES
from echo_jax.data.pipeline import BATCH_SIZE_UNITS, global_batch_sizes
# One set of field checkers and one error type for the whole config: the model's schema module
# defines them (the model package sits below this one and imports nothing from it).
from echo_jax.models.config import ConfigError  # noqa: F401  re-exported: callers catch it here
from echo_jax.models.config import MIN_VOCAB, validate_model_config
from echo_jax.models.config import check_choice as _choice
from echo_jax.models.config import check_int as _int_at_least
from echo_jax.models.config import check_int_sequence as _int_sequence
from echo_jax.models.config import check_number_in as _number_in
from echo_jax.models.config import fail as _fail
from echo_jax.models.config import is_int as _is_int
from echo_jax.parallel import param_sharding
from echo_jax.parallel import sharding as sharding_lib

# The eval error rates every evaluated checkpoint records, any of which train.best_metric may
# select by (checkpointing and the trainer read them here).
BEST_METRICS = ("wer", "cer", "ctc_wer", "ctc_cer")

TOKENIZERS = ("sentencepiece", "char")
SPM_MODEL_TYPES = ("bpe", "unigram")


def _validate_model(config: ml_collections.ConfigDict) -> None:
  model = config.model
  if model.vocab_size == -1:
    # Not known until the tokenizer exists; check everything else with a stand-in.
    model = ml_collections.ConfigDict(model.to_dict())
    model.vocab_size = max(int(config.data.vocab_size), MIN_VOCAB)
  validate_model_config(model)


def _validate_data(config: ml_collections.ConfigDict) -> None:
  d, m = config.data, config.model
  _choice("data.tokenizer", d.tokenizer, TOKENIZERS)
  if d.tokenizer == "sentencepiece":
    _choice("data.spm_model_type", d.spm_model_type, SPM_MODEL_TYPES)
    _int_at_least("data.vocab_size", d.vocab_size, 5)
  _int_at_least("data.sample_rate", d.sample_rate, 1000)
  _int_at_least("data.n_fft", d.n_fft, 16)
  _int_at_least("data.hop_length", d.hop_length, 1)
  _int_at_least("data.n_mels", d.n_mels, 1)
  _number_in("data.fmax", d.fmax, 0.0, d.sample_rate / 2, low_open=True)
  _number_in("data.fmin", d.fmin, 0.0, float(d.fmax), high_open=True)
  _number_in("data.max_audio_seconds", d.max_audio_seconds, 0.0, float("inf"), low_open=True)
  _int_sequence("data.bucket_frames", d.bucket_frames)
  _int_sequence("data.bucket_batch_sizes", d.bucket_batch_sizes)
  if list(d.bucket_frames) != sorted(set(d.bucket_frames)):
    _fail("data.bucket_frames", d.bucket_frames, "use strictly increasing bucket edges")
  unit = d.get("batch_size_unit", "global")
  _choice("data.batch_size_unit", unit, BATCH_SIZE_UNITS)
  if len(d.bucket_batch_sizes) != len(d.bucket_frames):
    kind = "global" if unit == "global" else "per-device"
    _fail("data.bucket_batch_sizes", d.bucket_batch_sizes,
          f"give one {kind} batch size per bucket edge ({len(d.bucket_frames)} edges in "
          "data.bucket_frames)")
  _int_at_least("data.max_target_length", d.max_target_length, 3)
  lengths = d.get("bucket_target_lengths", ())
  if isinstance(lengths, str) or not isinstance(lengths, (tuple, list)):
    _fail("data.bucket_target_lengths", lengths,
          "use a tuple with one token length per bucket edge, or () for max_target_length")
  if lengths:
    _int_sequence("data.bucket_target_lengths", lengths)
    if len(lengths) != len(d.bucket_frames):
      _fail("data.bucket_target_lengths", lengths,
            f"give one token length per bucket edge ({len(d.bucket_frames)} edges in "
            "data.bucket_frames), or () for max_target_length in every bucket")
    if list(lengths) != sorted(lengths) or min(lengths) < 3:
      _fail("data.bucket_target_lengths", lengths,
            "use non-decreasing lengths of at least 3 (BOS/EOS plus one token)")
    if lengths[-1] != d.max_target_length:
      _fail("data.bucket_target_lengths", lengths,
            f"the last bucket's length must equal data.max_target_length={d.max_target_length} "
            "(the cut-off for long transcripts); set both")
  _int_at_least("data.eval_batch_size", d.eval_batch_size, 1)
  _int_at_least("data.shuffle_buffer", d.shuffle_buffer, 1)
  _int_at_least("data.shortest_first_epochs", d.get("shortest_first_epochs", 0), 0)
  _choice("data.f0_source", d.get("f0_source", "own"), F0_SOURCES)
  _number_in("data.train_max_f0_hz", d.get("train_max_f0_hz", 0.0), 0.0, float("inf"))
  _number_in("data.eval_min_f0_hz", d.get("eval_min_f0_hz", 0.0), 0.0, float("inf"))
  # Cross-checks with the model.
  if m.n_mels != d.n_mels:
    _fail("model.n_mels", m.n_mels, f"it must equal config.data.n_mels={d.n_mels}; set both")
  if "waveform" in tuple(m.features) and m.hop_length != d.hop_length:
    _fail("model.hop_length", m.hop_length,
          f"it must equal config.data.hop_length={d.hop_length} (the mel frame rate); set both")
  if d.max_target_length > m.text_ctx:
    _fail("data.max_target_length", d.max_target_length,
          f"it must be <= config.model.text_ctx={m.text_ctx}; lower it or raise model.text_ctx")
  longest = max(d.bucket_frames)
  if _is_int(m.spectrogram_downsample) and m.spectrogram_downsample > 0:
    encoded = -(-longest // m.spectrogram_downsample)
    if encoded > m.audio_ctx:
      _fail("data.bucket_frames", d.bucket_frames,
            f"the longest bucket ({longest} frames, {encoded} after model.spectrogram_downsample="
            f"{m.spectrogram_downsample}) exceeds config.model.audio_ctx={m.audio_ctx}; lower the "
            "edges or raise model.audio_ctx")


def _validate_train(config: ml_collections.ConfigDict) -> None:
  t = config.train
  _int_at_least("train.num_steps", t.num_steps, 1)
  _number_in("train.learning_rate", t.learning_rate, 0.0, float("inf"), low_open=True)
  _int_at_least("train.warmup_steps", t.warmup_steps, 0)
  _number_in("train.end_lr_fraction", t.end_lr_fraction, 0.0, 1.0)
  _number_in("train.weight_decay", t.weight_decay, 0.0, float("inf"))
  _number_in("train.b1", t.b1, 0.0, 1.0, high_open=True)
  _number_in("train.b2", t.b2, 0.0, 1.0, high_open=True)
  _number_in("train.eps", t.eps, 0.0, float("inf"), low_open=True)
  _number_in("train.grad_clip_norm", t.grad_clip_norm, 0.0, float("inf"))
  _int_at_least("train.log_every", t.log_every, 1)
  _int_at_least("train.checkpoint_every", t.checkpoint_every, 1)
  _int_at_least("train.keep_checkpoints", t.keep_checkpoints, 1)
  _int_at_least("train.keep_best", t.keep_best, 0)
  best_metric = t.get("best_metric", "wer")
  _choice("train.best_metric", best_metric, BEST_METRICS)
  if best_metric.startswith("ctc_") and not config.model.get("ctc_head", False):
    _fail("train.best_metric", best_metric, "the CTC error rates need a CTC head: set "
          "config.model.ctc_head=True, or use 'wer' or 'cer'")
  _number_in("train.ctc_weight", t.ctc_weight, 0.0, 1.0)
  if t.ctc_weight > 0 and not config.model.get("ctc_head", False):
    _fail("train.ctc_weight", t.ctc_weight,
          "the CTC loss needs a CTC head: set config.model.ctc_head=True (or ctc_weight=0)")
  inter = t.get("intermediate_ctc_weight", 0.0)
  _number_in("train.intermediate_ctc_weight", inter, 0.0, 1.0)
  if inter > 0 and not (t.ctc_weight > 0 and config.model.get("intermediate_ctc_layers", ())):
    _fail("train.intermediate_ctc_weight", inter,
          "it weighs intermediate CTC losses: set config.train.ctc_weight > 0 and "
          "config.model.intermediate_ctc_layers (e.g. (2,)), or use 0")
  _number_in("train.label_smoothing", t.label_smoothing, 0.0, 1.0, high_open=True)
  sa = t.spec_augment
  for name in ("freq_masks", "time_masks", "freq_mask_bins", "time_mask_frames"):
    _int_at_least(f"train.spec_augment.{name}", sa[name], 0)
  if sa.freq_mask_bins > config.data.n_mels:
    _fail("train.spec_augment.freq_mask_bins", sa.freq_mask_bins,
          f"use at most config.data.n_mels={config.data.n_mels}")
  _number_in("train.spec_augment.time_mask_max_fraction", sa.time_mask_max_fraction, 0.0, 1.0)
  edges = t.get("edge_silence")
  if edges is not None:
    _number_in("train.edge_silence.probability", edges.probability, 0.0, 1.0)
    _int_at_least("train.edge_silence.max_frames", edges.max_frames, 0)
    if edges.probability > 0 and "waveform" in tuple(config.model.features):
      _fail("train.edge_silence.probability", edges.probability,
            "edge silence pads the log-mel and F0 frames, not a waveform input: use 0 with "
            "model.features containing 'waveform'")
  warping = t.get("frequency_warp")
  if warping is not None:
    _number_in("train.frequency_warp.probability", warping.probability, 0.0, 1.0)
    _number_in("train.frequency_warp.max_factor", warping.max_factor, 0.0, 0.5, high_open=True)
    if warping.probability > 0 and "spectrogram" not in tuple(config.model.features):
      _fail("train.frequency_warp.probability", warping.probability,
            "the warp rescales the log-mel, which this model does not read: use 0 or add "
            "'spectrogram' to model.features")
  _int_at_least("train.fsdp_min_size", t.get("fsdp_min_size", param_sharding.DEFAULT_MIN_SIZE), 0)
  _choice("train.param_sharding", t.param_sharding, sharding_lib.available_param_shardings())


def _validate_eval(config: ml_collections.ConfigDict) -> None:
  _number_in("decode.ctc_weight", config.decode.ctc_weight, 0.0, 1.0)
  if config.decode.ctc_weight > 0 and not config.model.get("ctc_head", False):
    _fail("decode.ctc_weight", config.decode.ctc_weight,
          "joint CTC/attention decoding needs a model trained with config.model.ctc_head=True")
  e = config.eval
  _int_at_least("eval.every", e.every, 0)
  if not isinstance(e.split, str) or e.split not in config.data.tfds_splits:
    _fail("eval.split", e.split,
          f"use one of the splits in config.data.tfds_splits: {list(config.data.tfds_splits)}")
  if not _is_int(e.max_examples) or (e.max_examples != -1 and e.max_examples < 1):
    _fail("eval.max_examples", e.max_examples, "use -1 (whole split) or a positive integer")
  dec = config.decode
  _int_at_least("decode.max_length", dec.max_length, 2)
  if dec.max_length > config.model.text_ctx:
    _fail("decode.max_length", dec.max_length,
          f"it must be <= config.model.text_ctx={config.model.text_ctx}")
  _int_at_least("decode.beam_size", dec.beam_size, 1)
  _number_in("decode.trim_silence_db", dec.trim_silence_db, 0.0, 120.0)
  _validate_lm(config)


def _validate_lm(config: ml_collections.ConfigDict) -> None:
  dec = config.decode
  if not isinstance(dec.lm_path, str):
    _fail("decode.lm_path", dec.lm_path, "use '' (no LM), 'auto' or the path of an ARPA file")
  if dec.lm_path:
    if not config.model.get("ctc_head", False):
      _fail("decode.lm_path", dec.lm_path, "the LM search decodes the CTC head's output: set "
            "config.model.ctc_head=True, or decode.lm_path=''")
    if config.data.tokenizer != "char":
      _fail("decode.lm_path", dec.lm_path, "the LM search spells words with characters: set "
            "config.data.tokenizer='char', or decode.lm_path=''")
  _number_in("decode.lm_weight", dec.lm_weight, 0.0, 100.0)
  _number_in("decode.lm_word_score", dec.lm_word_score, -100.0, 100.0)
  _int_at_least("decode.lm_beam_size", dec.lm_beam_size, 1)
  _number_in("decode.lm_blank_penalty", dec.get("lm_blank_penalty", 0.0), -100.0, 100.0)


def _validate_distributed(config: ml_collections.ConfigDict) -> None:
  dist = config.distributed
  _int_at_least("distributed.num_processes", dist.num_processes, 1)
  if not _is_int(dist.process_id) or not 0 <= dist.process_id < dist.num_processes:
    _fail("distributed.process_id", dist.process_id,
          f"use an integer in [0, distributed.num_processes={dist.num_processes})")
  if dist.coordinator_address and ":" not in dist.coordinator_address:
    _fail("distributed.coordinator_address", dist.coordinator_address,
          "use host:port of process 0, e.g. 10.0.0.1:8476")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first bad field and the fix; returns None when all is well."""
  for part in ("model", "data", "train", "eval", "decode", "distributed"):
    if part not in config:
      raise ConfigError(f"config.{part} is missing; start from "
                        "echo_jax.config.defaults.default_config()")
  _validate_model(config)
  _validate_data(config)
  _validate_train(config)
  _validate_eval(config)
  _validate_distributed(config)
  init_from = config.get("init_from", "")
  if not isinstance(init_from, str):
    _fail("init_from", init_from, "use a path (workdir, checkpoints dir or step dir) or ''")
  if init_from and not init_from.startswith("gs://") and not os.path.exists(init_from):
    _fail("init_from", init_from, "no such path; give another run's workdir, its checkpoints dir "
          "or one of its step dirs")


def validate_batch_sizes(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Each global batch (per bucket, and eval) must split evenly over the `num_devices` devices.

  Per-device sizes (data.batch_size_unit = "per_device") always do; global ones must be multiples.
  """
  data = config.data
  sizes = global_batch_sizes(data, num_devices)
  fix = (f"use multiples of {num_devices}, or per-device sizes with "
         "data.batch_size_unit='per_device'")
  for edge, size in zip(data.bucket_frames, sizes.buckets):
    if size % num_devices:
      raise ConfigError(
          f"config.data.bucket_batch_sizes={tuple(data.bucket_batch_sizes)}: the global "
          f"batch {size} of bucket {edge} is not divisible by the {num_devices} devices; {fix}.")
  if sizes.eval % num_devices:
    raise ConfigError(
        f"config.data.eval_batch_size={data.eval_batch_size} is not divisible by the "
        f"{num_devices} devices; {fix}.")
