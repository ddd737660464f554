"""The model's schema: each `config.model` field declared once, one validator, a frozen copy.

`ModelSettings` declares every field with its type, default and a one-line doc;
`default_model_config()` is the ConfigDict config files override, built from those defaults, and
`validate_model_config` checks one (naming the field and the fix) and returns the frozen settings
the linen modules hold. The field checkers below (`fail`, `check_*`) also check the rest of the
config in echo_jax.config.check, so every config error reads the same; they live here because the
model package depends on nothing above it.
"""

import dataclasses
import numbers
from typing import Any, Mapping, Sequence, Tuple

import ml_collections

from echo_jax.errors import UserError

FEATURES = ("spectrogram", "waveform", "pitch")
THETA_MODES = ("fixed", "seed", "clamped", "mel", "per_frame")
F0_MEAN_MODES = ("utt_voiced", "utt_all", "batch_all")
RADIUS_MODES = ("off", "learned", "f0")
FZERO_MODES = ("off", "pad_scale")
EMBED_INITS = ("scaled", "normal")
CONV_INITS = ("normal", "torch", "fan_in")
ACTIVATION_NAMES = ("gelu", "relu", "sigmoid", "tanh", "swish", "silu", "tanhshrink", "softplus",
                    "softshrink", "leaky_relu", "elu")
DTYPES = ("float32", "bfloat16")
MEL_NORMALIZATIONS = ("none", "utterance")
SPECTROGRAM_FRONTENDS = ("conv1d", "conv2d")
DOWNSAMPLES = (1, 2, 4)
MIN_VOCAB = 4  # pad 0, bos 1, eos 2, unk 3


@dataclasses.dataclass(frozen=True)
class ModelSettings:
  """Each model field with its default; frozen so that linen modules can hold it as an attribute."""
  vocab_size: int = -1  # -1: set from the tokenizer before the model is built
  d_model: int = 512
  num_heads: int = 4
  encoder_layers: int = 4
  decoder_layers: int = 4  # decoder._blocks; each feature also gets this many cross blocks
  mlp_ratio: int = 4
  n_mels: int = 128
  features: Tuple[str, ...] = ("spectrogram",)  # any of spectrogram, waveform, pitch
  text_ctx: int = 448  # learned decoder positions (max decoder length)
  audio_ctx: int = 4096  # max encoder frames after the front-end (sinusoids table)
  spectrogram_downsample: int = 1  # 1 (reference), 2 or 4
  pitch_downsample: int = 2  # pitch-stream front-end stride: 1, 2 (reference) or 4
  hop_length: int = 128  # waveform front-end strides to this hop
  # Rotary.
  theta_mode: str = "seed"  # fixed | seed | clamped | mel | per_frame
  theta: float = 10000.0
  f0_mean_mode: str = "utt_voiced"  # utt_voiced | utt_all | batch_all (faithful)
  radius_mode: str = "off"  # off | learned | f0
  cross_attn_rotary: bool = True
  decoder_rotary: bool = True
  # Pitch-similarity bias.
  pitch_bias: bool = False
  pitch_bias_scale: float = 1.0
  pitch_bias_learned: bool = False
  # Reference behaviours kept behind options (off = the corrected model).
  fzero: str = "off"  # off | pad_scale
  causal_decoder: bool = True
  embed_init: str = "scaled"  # scaled: N(0, d^-1/2) | normal: N(0, 1) (reference)
  # normal: N(0, 0.02), zero bias | torch: PyTorch default uniform (reference) | fan_in: He normal
  conv_init: str = "normal"
  # Activations as in the reference.
  frontend_act: str = "gelu"
  encoder_act: str = "swish"
  decoder_act: str = "gelu"
  dropout_rate: float = 0.0
  dtype: str = "float32"  # compute dtype: float32 | bfloat16 (params always float32)
  ctc_head: bool = False  # a CTC projection on the encoder output (needed by train.ctc_weight > 0)
  # CTC outputs per encoder frame: k > 1 projects each encoder frame to k CTC frames (one d x kV
  # projection), so CTC has k times the frames to place characters and blanks in, at the
  # encoder's cost (measured: no gain; docs/accuracy.md, section 8).
  ctc_upsample: int = 1
  # Intermediate CTC: after each of these encoder layers (1 .. encoder_layers - 1) the shared CTC
  # head also reads the CTC stream, and train.intermediate_ctc_weight trains those predictions too.
  # With self_conditioning each intermediate prediction (its softmax, through one shared d x V
  # projection) is added back to the stream, so later layers condition on it (self-conditioned
  # CTC, Nozaki and Komatsu 2021).
  intermediate_ctc_layers: Tuple[int, ...] = ()
  self_conditioning: bool = False
  mel_normalization: str = "none"  # none | utterance: per-utterance, per-bin mean/variance (CMVN)
  # conv1d: the reference front-end (mel bins as channels); conv2d: two 3x3 convs over time and
  # frequency (stride 2 in frequency, the time strides of spectrogram_downsample) with
  # frontend_channels channels, flattened and projected to d_model.
  spectrogram_frontend: str = "conv1d"
  frontend_channels: int = 32
  encoder_conv_kernel: int = 0  # > 0: a conformer-style depthwise conv module in each encoder block
  # > 0: attention over blocks of this many queries, keeping no [Tq, Tk] tensor for the backward
  # pass (models/chunked_attention.py): less memory at long inputs, one more q.k per block.
  attention_query_chunk: int = 0
  # CPU only: attention one head and block of queries at a time (models/head_blocked_attention.py)
  # when a layer's float32 logits [B, H, Tq, Tk] exceed this many MiB, about the last-level cache;
  # 0: always the whole-tensor form. Same values; faster and smaller at long inputs.
  attention_block_above_mib: float = 32.0

  @property
  def ctc_feature(self) -> str:
    """The encoder stream the CTC head reads: the spectrogram when present, else the first."""
    return "spectrogram" if "spectrogram" in self.features else self.features[0]

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads

  @property
  def mlp_dim(self) -> int:
    return self.d_model * self.mlp_ratio


_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSettings))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelSettings)}
# Fields added after runs were saved: an older run's config lacks them and means their default.
_ADDED_LATER = ("ctc_head", "mel_normalization", "spectrogram_frontend", "frontend_channels",
                "encoder_conv_kernel", "attention_query_chunk", "ctc_upsample",
                "attention_block_above_mib",
                "intermediate_ctc_layers", "self_conditioning")


def default_model_config() -> ml_collections.ConfigDict:
  """`config.model`: every ModelSettings field at its default."""
  return ml_collections.ConfigDict(dict(_DEFAULTS))


# ----------------------------------------------------------------------------------------------
# Field checkers: each error names the field (its path under `config.`) and the fix.


class ConfigError(UserError):
  """A config field has a bad value; the message names it and says how to fix it."""


def fail(field: str, value: Any, fix: str) -> None:
  raise ConfigError(f"config.{field}={value!r} is invalid: {fix}")


def is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_choice(field: str, value: Any, choices: Sequence[Any]) -> None:
  if value not in choices:
    fail(field, value, f"use one of {', '.join(map(repr, choices))}")


def check_int(field: str, value: Any, minimum: int) -> None:
  if not is_int(value) or value < minimum:
    fail(field, value, f"use an integer >= {minimum}")


def check_bool(field: str, value: Any) -> None:
  if not isinstance(value, bool):
    fail(field, value, "use True or False")


def check_positive(field: str, value: Any) -> None:
  if not is_number(value) or not value > 0:
    fail(field, value, "use a number > 0")


def check_number_in(field: str, value: Any, low: float, high: float, low_open: bool = False,
                    high_open: bool = False) -> None:
  ok = is_number(value) and (value > low if low_open else value >= low) and (
      value < high if high_open else value <= high)
  if not ok:
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    fail(field, value, f"use a number in {lo}{low}, {high}{hi}")


def check_int_sequence(field: str, value: Any) -> None:
  if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value or not all(
      is_int(v) and v > 0 for v in value):
    fail(field, value, "use a non-empty tuple of positive integers")


# ----------------------------------------------------------------------------------------------
# The model validator.


def _get(cfg: Any, name: str) -> Any:
  present = name in cfg if isinstance(cfg, Mapping) else hasattr(cfg, name)
  if not present:
    if name in _ADDED_LATER:
      return _DEFAULTS[name]
    raise ConfigError(f"config.model.{name} is missing; start from "
                      "echo_jax.models.config.default_model_config()")
  return cfg[name] if isinstance(cfg, Mapping) else getattr(cfg, name)


def validate_model_config(cfg: Any) -> ModelSettings:
  """Checks `config.model`; raises ConfigError naming the field and the fix; returns settings."""
  values = {name: _get(cfg, name) for name in _FIELDS}
  v = values
  if not is_int(v["vocab_size"]) or v["vocab_size"] < MIN_VOCAB:
    fail("model.vocab_size", v["vocab_size"],
         f"set it from the tokenizer (echo_jax.data.tokenizer) before building the model; it must "
         f"be >= {MIN_VOCAB} (pad 0, bos 1, eos 2, unk 3)")
  check_int("model.d_model", v["d_model"], 2)
  check_int("model.num_heads", v["num_heads"], 1)
  if v["d_model"] % v["num_heads"]:
    fail("model.d_model", v["d_model"],
         f"d_model must be divisible by num_heads={v['num_heads']}; change either")
  if (v["d_model"] // v["num_heads"]) % 2:
    fail("model.num_heads", v["num_heads"],
         f"the head dim d_model/num_heads={v['d_model'] // v['num_heads']} must be even for the "
         "rotary pairs; change d_model or num_heads")
  for name, minimum in (("encoder_layers", 1), ("decoder_layers", 1), ("mlp_ratio", 1),
                        ("n_mels", 1)):
    check_int(f"model.{name}", v[name], minimum)
  feats = v["features"]
  if isinstance(feats, str) or not isinstance(feats, (tuple, list)) or not feats:
    fail("model.features", feats, f"use a non-empty tuple of {', '.join(FEATURES)}")
  for f in feats:
    if f not in FEATURES:
      fail("model.features", feats, f"unknown feature {f!r}; use any of {', '.join(FEATURES)}")
  if len(set(feats)) != len(feats):
    fail("model.features", feats, "list each feature once")
  check_int("model.text_ctx", v["text_ctx"], 2)
  check_int("model.audio_ctx", v["audio_ctx"], 1)
  check_choice("model.spectrogram_downsample", v["spectrogram_downsample"], DOWNSAMPLES)
  check_choice("model.pitch_downsample", v["pitch_downsample"], DOWNSAMPLES)
  check_int("model.hop_length", v["hop_length"], 1)
  check_choice("model.theta_mode", v["theta_mode"], THETA_MODES)
  check_positive("model.theta", v["theta"])
  check_choice("model.f0_mean_mode", v["f0_mean_mode"], F0_MEAN_MODES)
  check_choice("model.radius_mode", v["radius_mode"], RADIUS_MODES)
  for name in ("cross_attn_rotary", "decoder_rotary", "pitch_bias", "pitch_bias_learned",
               "causal_decoder", "ctc_head", "self_conditioning"):
    check_bool(f"model.{name}", v[name])
  check_positive("model.pitch_bias_scale", v["pitch_bias_scale"])
  check_choice("model.fzero", v["fzero"], FZERO_MODES)
  check_choice("model.embed_init", v["embed_init"], EMBED_INITS)
  check_choice("model.conv_init", v["conv_init"], CONV_INITS)
  for name in ("frontend_act", "encoder_act", "decoder_act"):
    check_choice(f"model.{name}", v[name], ACTIVATION_NAMES)
  rate = v["dropout_rate"]
  if not is_number(rate) or not 0.0 <= rate < 1.0:
    fail("model.dropout_rate", rate, "use a number in [0, 1)")
  check_choice("model.dtype", v["dtype"], DTYPES)
  check_choice("model.mel_normalization", v["mel_normalization"], MEL_NORMALIZATIONS)
  check_choice("model.spectrogram_frontend", v["spectrogram_frontend"], SPECTROGRAM_FRONTENDS)
  check_int("model.frontend_channels", v["frontend_channels"], 1)
  check_int("model.encoder_conv_kernel", v["encoder_conv_kernel"], 0)
  if v["encoder_conv_kernel"] and v["encoder_conv_kernel"] % 2 == 0:
    fail("model.encoder_conv_kernel", v["encoder_conv_kernel"],
         "use an odd kernel (centred, so valid frames never read padding) or 0 for none")
  check_int("model.attention_query_chunk", v["attention_query_chunk"], 0)
  if not is_number(v["attention_block_above_mib"]) or v["attention_block_above_mib"] < 0:
    fail("model.attention_block_above_mib", v["attention_block_above_mib"],
         "use a size in MiB >= 0 (0: never compute attention in blocks)")
  check_int("model.ctc_upsample", v["ctc_upsample"], 1)
  layers = v["intermediate_ctc_layers"]
  last = v["encoder_layers"] - 1
  if (isinstance(layers, str) or not isinstance(layers, (tuple, list))
      or not all(is_int(i) and 1 <= i <= last for i in layers)
      or list(layers) != sorted(set(layers))):
    fail("model.intermediate_ctc_layers", layers,
         f"use increasing encoder layer numbers from 1 to encoder_layers - 1 = {last}, or ()")
  if layers and not v["ctc_head"]:
    fail("model.intermediate_ctc_layers", layers, "intermediate CTC reads the CTC head: set "
         "model.ctc_head=True, or use ()")
  if layers and v["ctc_upsample"] != 1:
    fail("model.intermediate_ctc_layers", layers, "intermediate CTC needs model.ctc_upsample=1")
  if v["self_conditioning"] and not layers:
    fail("model.self_conditioning", True, "self-conditioning feeds back the intermediate CTC "
         "predictions: set model.intermediate_ctc_layers, e.g. (2,)")
  # Plain Python values: the settings are hashed as a static attribute of jitted modules.
  for f in dataclasses.fields(ModelSettings):
    if f.type is int:
      values[f.name] = int(values[f.name])
    elif f.type is float:
      values[f.name] = float(values[f.name])
  values["features"] = tuple(feats)
  values["intermediate_ctc_layers"] = tuple(int(i) for i in layers)
  return ModelSettings(**values)


def model_settings(cfg: Any) -> ModelSettings:
  """A validated ModelSettings from a ConfigDict / FrozenConfigDict / mapping / ModelSettings."""
  if isinstance(cfg, ModelSettings):
    return cfg
  return validate_model_config(cfg)
