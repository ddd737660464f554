"""The model's settings: validation of `config.model` and a frozen copy for the modules."""

import dataclasses
from typing import Any, Mapping, Tuple

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
  """Everything the modules read, frozen so that linen modules can hold it as an attribute."""
  vocab_size: int
  d_model: int
  num_heads: int
  encoder_layers: int
  decoder_layers: int
  mlp_ratio: int
  n_mels: int
  features: Tuple[str, ...]
  text_ctx: int
  audio_ctx: int
  spectrogram_downsample: int
  pitch_downsample: int
  hop_length: int
  theta_mode: str
  theta: float
  f0_mean_mode: str
  radius_mode: str
  cross_attn_rotary: bool
  decoder_rotary: bool
  pitch_bias: bool
  pitch_bias_scale: float
  pitch_bias_learned: bool
  fzero: str
  causal_decoder: bool
  embed_init: str
  conv_init: str
  frontend_act: str
  encoder_act: str
  decoder_act: str
  dropout_rate: float
  dtype: str
  ctc_head: bool = False
  mel_normalization: str = "none"
  spectrogram_frontend: str = "conv1d"
  frontend_channels: int = 32
  encoder_conv_kernel: int = 0

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
# Fields added after runs were saved: an older run's config lacks them and means their default.
_OPTIONAL = {f.name: f.default for f in dataclasses.fields(ModelSettings)
             if f.default is not dataclasses.MISSING}


def _get(cfg: Any, name: str) -> Any:
  if name in _OPTIONAL and not (name in cfg if isinstance(cfg, Mapping) else hasattr(cfg, name)):
    return _OPTIONAL[name]
  if isinstance(cfg, Mapping):
    if name not in cfg:
      raise UserError(f"config.model.{name} is missing; start from "
                       "echo_jax.config.defaults.default_model_config()")
    return cfg[name]
  if not hasattr(cfg, name):
    raise UserError(f"config.model.{name} is missing; start from "
                     "echo_jax.config.defaults.default_model_config()")
  return getattr(cfg, name)


def _fail(field: str, value: Any, fix: str) -> None:
  raise UserError(f"config.model.{field}={value!r} is invalid: {fix}")


def _check_choice(field: str, value: Any, choices) -> None:
  if value not in choices:
    _fail(field, value, f"use one of {', '.join(map(repr, choices))}")


def _check_int(field: str, value: Any, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    _fail(field, value, f"use an integer >= {minimum}")


def _check_bool(field: str, value: Any) -> None:
  if not isinstance(value, bool):
    _fail(field, value, "use True or False")


def _check_positive(field: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    _fail(field, value, "use a number > 0")


def validate_model_config(cfg: Any) -> ModelSettings:
  """Checks `config.model`; raises ValueError naming the field and the fix. Returns the settings."""
  values = {name: _get(cfg, name) for name in _FIELDS}
  v = values
  if isinstance(v["vocab_size"], bool) or not isinstance(v["vocab_size"], int) or (
      v["vocab_size"] < MIN_VOCAB):
    _fail("vocab_size", v["vocab_size"],
          f"set it from the tokenizer (echo_jax.data.tokenizer) before building the model; it must "
          f"be >= {MIN_VOCAB} (pad 0, bos 1, eos 2, unk 3)")
  _check_int("d_model", v["d_model"], 2)
  _check_int("num_heads", v["num_heads"], 1)
  if v["d_model"] % v["num_heads"]:
    _fail("d_model", v["d_model"],
          f"d_model must be divisible by num_heads={v['num_heads']}; change either")
  if (v["d_model"] // v["num_heads"]) % 2:
    _fail("num_heads", v["num_heads"],
          f"the head dim d_model/num_heads={v['d_model'] // v['num_heads']} must be even for the "
          "rotary pairs; change d_model or num_heads")
  _check_int("encoder_layers", v["encoder_layers"], 1)
  _check_int("decoder_layers", v["decoder_layers"], 1)
  _check_int("mlp_ratio", v["mlp_ratio"], 1)
  _check_int("n_mels", v["n_mels"], 1)
  feats = v["features"]
  if isinstance(feats, str) or not isinstance(feats, (tuple, list)) or not feats:
    _fail("features", feats, f"use a non-empty tuple of {', '.join(FEATURES)}")
  for f in feats:
    if f not in FEATURES:
      _fail("features", feats, f"unknown feature {f!r}; use any of {', '.join(FEATURES)}")
  if len(set(feats)) != len(feats):
    _fail("features", feats, "list each feature once")
  _check_int("text_ctx", v["text_ctx"], 2)
  _check_int("audio_ctx", v["audio_ctx"], 1)
  _check_choice("spectrogram_downsample", v["spectrogram_downsample"], DOWNSAMPLES)
  _check_choice("pitch_downsample", v["pitch_downsample"], DOWNSAMPLES)
  _check_int("hop_length", v["hop_length"], 1)
  _check_choice("theta_mode", v["theta_mode"], THETA_MODES)
  _check_positive("theta", v["theta"])
  _check_choice("f0_mean_mode", v["f0_mean_mode"], F0_MEAN_MODES)
  _check_choice("radius_mode", v["radius_mode"], RADIUS_MODES)
  for name in ("cross_attn_rotary", "decoder_rotary", "pitch_bias", "pitch_bias_learned",
               "causal_decoder", "ctc_head"):
    _check_bool(name, v[name])
  _check_positive("pitch_bias_scale", v["pitch_bias_scale"])
  _check_choice("fzero", v["fzero"], FZERO_MODES)
  _check_choice("embed_init", v["embed_init"], EMBED_INITS)
  _check_choice("conv_init", v["conv_init"], CONV_INITS)
  for name in ("frontend_act", "encoder_act", "decoder_act"):
    _check_choice(name, v[name], ACTIVATION_NAMES)
  rate = v["dropout_rate"]
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
    _fail("dropout_rate", rate, "use a number in [0, 1)")
  _check_choice("dtype", v["dtype"], DTYPES)
  _check_choice("mel_normalization", v["mel_normalization"], MEL_NORMALIZATIONS)
  _check_choice("spectrogram_frontend", v["spectrogram_frontend"], SPECTROGRAM_FRONTENDS)
  _check_int("frontend_channels", v["frontend_channels"], 1)
  _check_int("encoder_conv_kernel", v["encoder_conv_kernel"], 0)
  if v["encoder_conv_kernel"] and v["encoder_conv_kernel"] % 2 == 0:
    _fail("encoder_conv_kernel", v["encoder_conv_kernel"],
          "use an odd kernel (centred, so valid frames never read padding) or 0 for none")
  values["features"] = tuple(feats)
  values["theta"] = float(v["theta"])
  values["pitch_bias_scale"] = float(v["pitch_bias_scale"])
  values["dropout_rate"] = float(rate)
  return ModelSettings(**values)


def model_settings(cfg: Any) -> ModelSettings:
  """A validated ModelSettings from a ConfigDict / FrozenConfigDict / mapping / ModelSettings."""
  if isinstance(cfg, ModelSettings):
    return cfg
  return validate_model_config(cfg)
