"""The audio encoder: one stream per feature, each a conv front-end + N residual blocks.

  spectrogram: conv(k3, stride 1 like the reference, or 2 / 2+2 for spectrogram_downsample 2 / 4)
               -> conv(k5) -> depthwise conv(k3), + sinusoids + RMSNorm (the reference FEncoder);
               or (spectrogram_frontend="conv2d") two 3x3 convs over time x mel -> linear
  pitch:       the same front-end on F0 as one channel ((f0 - 50)/550 on voiced frames, else 0),
               first kernel 9, stride pitch_downsample (reference 2)
  waveform:    strided convs (kernel 2s-1) whose strides multiply to hop_length (128 -> 8, 4, 4),
               a grouped conv and a 1x1 conv, so the stream runs at the mel frame rate
Padded positions are zeroed after every conv so that valid outputs do not depend on padding.
Each stream has its own frame count (ceil(n / stride)) and its own F0, resampled to its rate.
"""

import math
from typing import Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from echo_jax.models import pitch as pitch_lib
from echo_jax.models import rotary as rotary_lib
from echo_jax.models.blocks import Residual
from echo_jax.models.config import ModelSettings
from echo_jax.models.layers import (PatchConv2D, RMSNorm, activation, compute_dtype, conv,
                                    conv_initializers, dense, sinusoids)

SPECTROGRAM_KERNEL = 3
PITCH_KERNEL = 9
PITCH_OFFSET_HZ, PITCH_RANGE_HZ = 50.0, 550.0  # the reference's (p - 50) / 550
WAVEFORM_CHANNELS = (64, 128)
WAVEFORM_GROUPS = 64


def _zero_padding(x: jax.Array, num_valid: jax.Array) -> jax.Array:
  return jnp.where(pitch_lib.frame_validity(num_valid, x.shape[1])[:, :, None], x,
                   jnp.zeros((), x.dtype))


def normalise_per_utterance(mel: jax.Array, num_frames: jax.Array) -> jax.Array:
  """Per-utterance, per-bin mean and variance normalisation over the real frames (CMVN): removes
  the level and channel colouring that gain, noise and band-limits put on the log-mel; padding
  stays 0."""
  valid = pitch_lib.frame_validity(num_frames, mel.shape[1])[:, :, None]
  x = mel.astype(jnp.float32)
  count = jnp.maximum(jnp.sum(valid, axis=1, keepdims=True), 1).astype(jnp.float32)
  mean = jnp.sum(jnp.where(valid, x, 0.0), axis=1, keepdims=True) / count
  var = jnp.sum(jnp.where(valid, jnp.square(x - mean), 0.0), axis=1, keepdims=True) / count
  return jnp.where(valid, (x - mean) * jax.lax.rsqrt(var + 1e-5), 0.0).astype(mel.dtype)


def stage_strides(downsample: int) -> Tuple[int, int]:
  """Strides of the first two spectrogram/pitch convs for a total downsampling of 1, 2 or 4."""
  return {1: (1, 1), 2: (2, 1), 4: (2, 2)}[downsample]


def waveform_strides(hop_length: int) -> Tuple[int, int, int]:
  """Three strides whose product is hop_length, close to the reference's (8, 4, 5)."""
  first = math.gcd(hop_length, 8)
  rest = hop_length // first
  second = math.gcd(rest, 4)
  return first, second, rest // second


def stream_factor(settings: ModelSettings, feature: str) -> int:
  """Mel frames per encoder frame of a stream."""
  return {"spectrogram": settings.spectrogram_downsample, "pitch": settings.pitch_downsample,
          "waveform": 1}[feature]


def _finish(x: jax.Array, settings: ModelSettings, deterministic: bool, feature: str) -> jax.Array:
  length = x.shape[1]
  if length > settings.audio_ctx:
    raise ValueError(f"the {feature} stream has {length} frames after its front-end, more than "
                     f"config.model.audio_ctx={settings.audio_ctx}; raise audio_ctx, downsample "
                     "(spectrogram_downsample) or use shorter audio")
  x = x + jnp.asarray(sinusoids(length, settings.d_model), x.dtype)[None]
  if settings.dropout_rate > 0:
    x = nn.Dropout(settings.dropout_rate)(x, deterministic=deterministic)
  return RMSNorm(compute_dtype(settings), name="norm")(x)


class ConvFrontend(nn.Module):
  """The reference FEncoder: conv -> act -> conv(k5) -> act -> depthwise conv(k3) -> act."""
  settings: ModelSettings
  in_features: int
  kernel: int
  downsample: int
  feature: str

  @nn.compact
  def __call__(self, x: jax.Array, num_frames: jax.Array, deterministic: bool = True):
    s = self.settings
    act = activation(s.frontend_act)
    first, second = stage_strides(self.downsample)
    x = _zero_padding(x.astype(compute_dtype(s)), num_frames)
    x = conv(s.d_model, self.kernel, first, "conv1", s, self.in_features)(x)
    n = pitch_lib.downsampled_length(num_frames, first)
    x = _zero_padding(act(x), n)
    x = conv(s.d_model, 5, second, "conv2", s, s.d_model)(x)
    n = pitch_lib.downsampled_length(n, second)
    x = _zero_padding(act(x), n)
    x = conv(s.d_model, 3, 1, "conv3", s, s.d_model, groups=s.d_model)(x)
    x = _zero_padding(act(x), n)
    return _finish(x, s, deterministic, self.feature), n


class Conv2dFrontend(nn.Module):
  """Two 3x3 convs over (time, mel) with stride 2 in frequency (and the time strides of the
  downsampling), flattened over channels x bins and projected to d_model: frequency-shift
  equivariant where the reference front-end sees each mel bin as its own channel."""
  settings: ModelSettings
  downsample: int

  @nn.compact
  def __call__(self, mel: jax.Array, num_frames: jax.Array, deterministic: bool = True):
    s = self.settings
    dtype = compute_dtype(s)
    act = activation(s.frontend_act)
    x = _zero_padding(mel.astype(dtype), num_frames)[..., None]
    n = num_frames
    in_channels = 1
    for i, time_stride in enumerate(stage_strides(self.downsample)):
      kernel_init, bias_init = conv_initializers(s, in_channels * 9)
      x = PatchConv2D(s.frontend_channels, (3, 3), (time_stride, 2), dtype, kernel_init,
                      bias_init, name=f"conv{i + 1}")(x)
      n = pitch_lib.downsampled_length(n, time_stride)
      valid = pitch_lib.frame_validity(n, x.shape[1])[:, :, None, None]
      x = jnp.where(valid, act(x), jnp.zeros((), dtype))
      in_channels = s.frontend_channels
    x = x.reshape(x.shape[0], x.shape[1], -1)
    x = _zero_padding(dense(s.d_model, "projection", dtype)(x), n)
    return _finish(x, s, deterministic, "spectrogram"), n


class WaveformFrontend(nn.Module):
  """The reference WEncoder, generalised to any hop: strided convs to the mel frame rate."""
  settings: ModelSettings

  @nn.compact
  def __call__(self, wave: jax.Array, num_samples: jax.Array, deterministic: bool = True):
    s = self.settings
    act = activation(s.frontend_act)
    x = _zero_padding(wave.astype(compute_dtype(s))[:, :, None], num_samples)
    n = num_samples
    channels = WAVEFORM_CHANNELS + (s.d_model,)
    in_features = 1
    for i, (stride, out) in enumerate(zip(waveform_strides(s.hop_length), channels)):
      x = conv(out, 2 * stride - 1, stride, f"conv{i + 1}", s, in_features)(x)
      n = pitch_lib.downsampled_length(n, stride)
      x = _zero_padding(act(x), n)
      in_features = out
    groups = math.gcd(s.d_model, WAVEFORM_GROUPS)
    x = conv(s.d_model, 3, 1, "conv4", s, s.d_model, groups=groups)(x)
    x = _zero_padding(act(x), n)
    x = conv(s.d_model, 1, 1, "conv5", s, s.d_model)(x)
    x = _zero_padding(x, n)
    return _finish(x, s, deterministic, "waveform"), n


class AudioEncoder(nn.Module):
  """Returns, per feature: encodings [B, T_f, d], key validity [B, T_f], rotary of its frames;
  and the intermediate CTC logits of the CTC stream (one [B, T, V] per
  settings.intermediate_ctc_layers, from `ctc_logits`, the model's shared CTC head)."""
  settings: ModelSettings

  @nn.compact
  def __call__(self, batch: Dict[str, jax.Array], f0: jax.Array, theta_per_utt: jax.Array,
               voiced_mean: jax.Array, voiced_std: jax.Array, deterministic: bool = True,
               ctc_logits: Optional[Callable[[jax.Array], jax.Array]] = None):
    s = self.settings
    num_frames = jnp.asarray(batch["num_frames"], jnp.int32)
    encodings, valid, rotaries = {}, {}, {}
    intermediate_logits = []
    if s.intermediate_ctc_layers and ctc_logits is None:
      raise ValueError("intermediate_ctc_layers needs the model's CTC head (ctc_logits)")
    conditioning = (dense(s.d_model, "self_conditioning", compute_dtype(s))
                    if s.self_conditioning else None)
    for feature in s.features:
      factor = stream_factor(s, feature)
      if feature == "spectrogram":
        mel = batch["mel"]
        if mel.shape[-1] != s.n_mels:
          raise ValueError(f"batch['mel'] has {mel.shape[-1]} mel bins but config.model.n_mels="
                           f"{s.n_mels}; make config.model.n_mels equal config.data.n_mels")
        if s.mel_normalization == "utterance":
          mel = normalise_per_utterance(mel, num_frames)
        if s.spectrogram_frontend == "conv2d":
          x, n = Conv2dFrontend(s, factor, name=f"frontend_{feature}")(
              mel, num_frames, deterministic)
        else:
          x, n = ConvFrontend(s, s.n_mels, SPECTROGRAM_KERNEL, factor, feature,
                              name=f"frontend_{feature}")(mel, num_frames, deterministic)
      elif feature == "pitch":
        voiced = pitch_lib.voiced_frames(f0, num_frames)
        f0_input = jnp.where(voiced, (f0 - PITCH_OFFSET_HZ) / PITCH_RANGE_HZ, 0.0)[:, :, None]
        x, n = ConvFrontend(s, 1, PITCH_KERNEL, factor, feature,
                            name=f"frontend_{feature}")(f0_input, num_frames, deterministic)
      else:
        if "waveform" not in batch or "num_samples" not in batch:
          raise ValueError("features include 'waveform' but the batch has no 'waveform' / "
                           "'num_samples'; set config.data.store_waveform=True")
        x, n = WaveformFrontend(s, name=f"frontend_{feature}")(
            batch["waveform"], jnp.asarray(batch["num_samples"], jnp.int32), deterministic)
      length = x.shape[1]
      frame_valid = pitch_lib.frame_validity(n, length)
      stream_f0 = pitch_lib.resample_f0(f0, num_frames, factor, length)
      inv_freq = rotary_lib.frame_inverse_frequencies(stream_f0, theta_per_utt, s.theta_mode,
                                                      s.theta, s.head_dim)
      radius = rotary_lib.f0_radius(stream_f0) if s.radius_mode == "f0" else None
      rotary = rotary_lib.make_rotary(jnp.arange(length), inv_freq, radius)
      z = pitch_lib.pitch_z(stream_f0, voiced_mean, voiced_std) if s.pitch_bias else None
      for i in range(s.encoder_layers):
        x = Residual(s, s.encoder_act, cross_attention=False,
                     conv_module=s.encoder_conv_kernel > 0, name=f"blocks_{feature}_{i}")(
            x, key_valid=frame_valid, rotary=rotary, pitch_z=z)
        if feature == s.ctc_feature and i + 1 in s.intermediate_ctc_layers:
          logits = ctc_logits(x)
          intermediate_logits.append(logits)
          if conditioning is not None:  # padded frames stay as they were
            x = x + _zero_padding(conditioning(jax.nn.softmax(logits).astype(x.dtype)), n)
      encodings[feature], valid[feature], rotaries[feature] = x, frame_valid, rotary
    return encodings, valid, rotaries, tuple(intermediate_logits)
