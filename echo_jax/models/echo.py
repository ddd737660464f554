"""EchoModel: encode(batch) -> EncoderOutput, decode(encoded, tokens) -> logits, __call__(batch).

  model = EchoModel(config.model)
  variables = model.init(rng, batch)
  logits = model.apply(variables, batch)                                     # [B, L, V] float32
  enc = model.apply(variables, batch, method=EchoModel.encode)
  logits = model.apply(variables, enc, tokens, method=EchoModel.decode)
With config.model.ctc_head the encoder also has a CTC projection (blank = pad id 0):
  logits, ctc = model.apply(variables, batch, method=EchoModel.forward)      # ctc: CtcOutput
Incremental decoding: cache = init_decode_cache(model, variables, enc, B, max_len), then
  logits, cache = decode_step(model, variables, cache, enc, tokens[:, t:t + 1]).
"""

import math
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from flax.traverse_util import flatten_dict, unflatten_dict

from echo_jax.models import pitch as pitch_lib
from echo_jax.models import rotary as rotary_lib
from echo_jax.models.attention import CROSS_CACHE_ENTRIES
from echo_jax.models.config import ModelSettings, model_settings
from echo_jax.models.decoder import TextDecoder
from echo_jax.models.encoder import AudioEncoder, waveform_strides
from echo_jax.models.layers import RMSNorm, dense


@flax.struct.dataclass
class EncoderOutput:
  """Everything the decoder needs; every leaf has the batch axis first (tile it for beams).

  encodings[f] [B, T_f, d]; key_masks[f] [B, T_f] bool (valid frames); key_rotary[f] the rotation
  of stream f's frames (cross-attention keys); theta [B] and f0_mean [B] per utterance;
  token_inv_freq [B, hd/2] rotary frequencies of text tokens; token_radius [B, 1, 1] or None;
  intermediate_ctc: the CTC head's logits [B, T, V] after each of intermediate_ctc_layers.
  """
  encodings: Dict[str, jax.Array]
  key_masks: Dict[str, jax.Array]
  key_rotary: Dict[str, rotary_lib.Rotary]
  theta: jax.Array
  f0_mean: jax.Array
  token_inv_freq: jax.Array
  token_radius: Optional[jax.Array] = None
  intermediate_ctc: Tuple[jax.Array, ...] = ()


@flax.struct.dataclass
class CtcOutput:
  """Per-frame CTC log-probabilities' logits [B, T, V] float32 and frame validity [B, T] bool;
  intermediate_logits: the same head after each of intermediate_ctc_layers (same validity)."""
  logits: jax.Array
  valid: jax.Array
  intermediate_logits: Tuple[jax.Array, ...] = ()


def _batch_f0(batch: Dict[str, jax.Array], settings: ModelSettings) -> jax.Array:
  if "f0" in batch:
    return jnp.asarray(batch["f0"], jnp.float32)
  if "mel" in batch:
    shape = batch["mel"].shape[:2]
  else:
    shape = (batch["waveform"].shape[0], batch["waveform"].shape[1] // settings.hop_length)
  return jnp.zeros(shape, jnp.float32)  # no F0: everything unvoiced, theta at its base


class EchoModel(nn.Module):
  config: Any  # config.model: ConfigDict, FrozenConfigDict, mapping or ModelSettings

  def setup(self):
    self.settings = model_settings(self.config)
    self.encoder = AudioEncoder(self.settings)
    self.decoder = TextDecoder(self.settings)
    if self.settings.ctc_head:
      self.ctc_norm = RMSNorm(jnp.float32)
      self.ctc_projection = dense(self.settings.vocab_size * self.settings.ctc_upsample,
                                  "ctc_projection", jnp.float32)

  def encode(self, batch: Dict[str, jax.Array], train: bool = False) -> EncoderOutput:
    s = self.settings
    f0 = _batch_f0(batch, s)
    num_frames = jnp.asarray(batch["num_frames"], jnp.int32)
    mean = pitch_lib.f0_mean(f0, num_frames, s.f0_mean_mode)
    theta = rotary_lib.utterance_theta(mean, s.theta_mode, s.theta)
    self.sow("intermediates", "rotary_theta", theta)
    voiced_mean, voiced_std = pitch_lib.voiced_statistics(f0, num_frames)
    ctc_logits = self._ctc_logits if s.intermediate_ctc_layers else None
    encodings, key_masks, key_rotary, intermediate = self.encoder(
        batch, f0, theta, voiced_mean, voiced_std, deterministic=not train, ctc_logits=ctc_logits)
    token_radius = rotary_lib.f0_radius(mean)[:, None] if s.radius_mode == "f0" else None
    return EncoderOutput(
        encodings=encodings, key_masks=key_masks, key_rotary=key_rotary, theta=theta,
        f0_mean=mean,
        token_inv_freq=rotary_lib.inverse_frequencies(theta, s.head_dim, s.theta_mode),
        token_radius=token_radius, intermediate_ctc=intermediate)

  def decode(self, encoded: EncoderOutput, decoder_input_tokens: jax.Array, decode: bool = False,
             train: bool = False) -> jax.Array:
    """tokens [B, L] -> logits [B, L, V] float32; decode=True uses the "cache" collection."""
    return self.decoder(jnp.asarray(decoder_input_tokens, jnp.int32), encoded.encodings,
                        encoded.key_masks, encoded.key_rotary, encoded.token_inv_freq,
                        encoded.token_radius, decode=decode, deterministic=not train)

  def ctc(self, encoded: EncoderOutput) -> CtcOutput:
    """The CTC head on the encoder output of `settings.ctc_feature` (needs ctc_head=True)."""
    if not self.settings.ctc_head:
      raise ValueError("this model has no CTC head; set config.model.ctc_head=True (and retrain)")
    feature = self.settings.ctc_feature
    logits = self._ctc_logits(encoded.encodings[feature])
    valid = encoded.key_masks[feature]
    k = self.settings.ctc_upsample
    if k > 1:  # [B, T, k*V] -> [B, k*T, V]: encoder frame t owns CTC frames k*t .. k*t + k - 1
      batch, frames = logits.shape[:2]
      logits = logits.reshape(batch, frames * k, self.settings.vocab_size)
      valid = jnp.repeat(valid, k, axis=1)
    return CtcOutput(logits=logits, valid=valid, intermediate_logits=encoded.intermediate_ctc)

  def _ctc_logits(self, x: jax.Array) -> jax.Array:
    """The shared CTC head: [B, T, d] -> [B, T, ctc_upsample * V] float32."""
    return self.ctc_projection(self.ctc_norm(x))

  def forward(self, batch: Dict[str, jax.Array],
              train: bool = False) -> Tuple[jax.Array, Optional[CtcOutput]]:
    """(attention-decoder logits [B, L, V], CtcOutput or None without a CTC head)."""
    encoded = self.encode(batch, train=train)
    logits = self.decode(encoded, batch["decoder_input_tokens"], train=train)
    return logits, (self.ctc(encoded) if self.settings.ctc_head else None)

  def __call__(self, batch: Dict[str, jax.Array], train: bool = False) -> jax.Array:
    if self.is_initializing():  # create the CTC head's parameters too
      return self.forward(batch, train=train)[0]
    return self.decode(self.encode(batch, train=train), batch["decoder_input_tokens"], train=train)


def _params_only(variables) -> Dict[str, Any]:
  return {k: v for k, v in variables.items() if k not in ("cache", "intermediates")}


def init_decode_cache(model: EchoModel, variables, encoded: EncoderOutput, batch_size: int,
                      max_length: int, utterances: Optional[EncoderOutput] = None):
  """The KV cache for `max_length` tokens: self-attention entries zeroed (shapes traced
  abstractly), cross-attention keys/values projected from `encoded` (one decoder call on a single
  token, once per sequence), so that decode steps only read them.

  Beam search passes `utterances`, the encoder output before its rows were repeated per beam:
  the cross-attention entries are then projected once per utterance ([B, ...] rather than
  [B * beams, ...]), and each step's cross-attention reads them for all of an utterance's beams
  at once (models/attention.py)."""
  params = _params_only(variables)

  def cache_of(params, enc, toks):
    _, state = model.apply(params, enc, toks, decode=True, method=EchoModel.decode,
                           mutable=["cache"])
    return state["cache"]
  shapes = jax.eval_shape(cache_of, params, encoded,
                          jax.ShapeDtypeStruct((batch_size, max_length), jnp.int32))
  cache = flatten_dict(jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes))
  source = encoded if utterances is None else utterances
  rows = jax.tree.leaves(source.key_masks)[0].shape[0]
  projected = flatten_dict(cache_of(params, source, jnp.zeros((rows, 1), jnp.int32)))
  for path in cache:
    if path[-1] in CROSS_CACHE_ENTRIES:
      cache[path] = projected[path]
  return unflatten_dict(cache)


def decode_step(model: EchoModel, variables, cache, encoded: EncoderOutput,
                tokens: jax.Array) -> Tuple[jax.Array, Any]:
  """Feeds tokens [B, n] (usually n = 1) at the cache's position; returns (logits, new cache)."""
  logits, state = model.apply({**_params_only(variables), "cache": cache}, encoded, tokens,
                              decode=True, method=EchoModel.decode, mutable=["cache"])
  return logits, state["cache"]


def count_params(params) -> int:
  """Number of parameters in a params pytree (arrays or ShapeDtypeStructs)."""
  return int(sum(int(x.size) for x in jax.tree_util.tree_leaves(params)))


def expected_param_count(model_cfg) -> int:
  """The parameter count implied by config.model, counted analytically (independent of init)."""
  s = model_settings(model_cfg)
  d, hd, mlp = s.d_model, s.head_dim, s.mlp_dim
  norm = d
  rotary_radius = hd // 2 if s.radius_mode == "learned" else 0
  fzero = 1 if s.fzero == "pad_scale" else 0

  def attention(rotated: bool, pitch_biased: bool = False) -> int:
    count = 3 * (d * d + d) + d * d + fzero  # q, v, o with bias; k without
    count += rotary_radius if rotated else 0
    count += 1 if (pitch_biased and s.pitch_bias_learned) else 0
    return count

  def residual(cross: bool, self_rotated: bool, pitch_biased: bool = False) -> int:
    count = attention(self_rotated, pitch_biased) + 2 * norm  # attna, lna, lnc
    count += d * mlp + mlp + mlp * d + d  # mlp
    count += d + 1  # mlp_gate
    if cross:
      count += attention(s.cross_attn_rotary) + norm + 1  # attnb, lnb, blend
    return count

  def conv(cin: int, cout: int, kernel: int, groups: int = 1) -> int:
    return cin // groups * cout * kernel + cout

  def conv_frontend(cin: int, kernel: int) -> int:
    return conv(cin, d, kernel) + conv(d, d, 5) + conv(d, d, 3, groups=d) + norm

  def waveform_frontend() -> int:
    kernels = [2 * stride - 1 for stride in waveform_strides(s.hop_length)]
    total = conv(1, 64, kernels[0]) + conv(64, 128, kernels[1]) + conv(128, d, kernels[2])
    return total + conv(d, d, 3, groups=math.gcd(d, 64)) + conv(d, d, 1) + norm

  def conv2d_frontend() -> int:
    c, bins = s.frontend_channels, -(-(-(-s.n_mels // 2)) // 2)
    return (9 * c + c) + (9 * c * c + c) + (c * bins * d + d) + norm

  conv_module = (norm + d * 2 * d + 2 * d + s.encoder_conv_kernel * d + d + norm + d * d + d
                 if s.encoder_conv_kernel else 0)
  spectrogram = conv2d_frontend() if s.spectrogram_frontend == "conv2d" else conv_frontend(
      s.n_mels, 3)
  frontends = {"spectrogram": spectrogram, "pitch": conv_frontend(1, 9)}
  encoder = 0
  for feature in s.features:
    encoder += waveform_frontend() if feature == "waveform" else frontends[feature]
    encoder += s.encoder_layers * (residual(False, True, s.pitch_bias) + conv_module)
  decoder = s.vocab_size * d + s.text_ctx * d + norm
  decoder += s.decoder_layers * residual(False, s.decoder_rotary)
  decoder += len(s.features) * (s.decoder_layers * residual(True, s.decoder_rotary) + 1)
  ctc = (norm + (d + 1) * s.vocab_size * s.ctc_upsample) if s.ctc_head else 0
  ctc += (s.vocab_size + 1) * d if s.self_conditioning else 0
  return encoder + decoder + ctc
