"""Primitives: RMSNorm, initialisers (spec §5.10), sinusoids, activations, dtypes."""

import functools
import math
from typing import Callable, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from echo_jax.models.config import ModelSettings

RMS_EPS = 1e-8  # the reference's epsilon
CONV_INIT_STD = 0.02
POSITIONAL_INIT_STD = 0.02


def gelu_erf(x: jax.Array) -> jax.Array:
  """The exact (erf) GELU, like torch's nn.GELU(): x * (1 + erf(x / sqrt 2)) / 2.

  jax.nn.gelu(approximate=False) writes it with erfc, whose gradient XLA:CPU evaluates ~2x slower
  than erf's (fwd+bwd on the conv front-end's activations: 57 vs 26 ms); values agree to float32
  rounding (tests/test_fast_paths.py).
  """
  return 0.5 * x * (1.0 + jax.lax.erf(x * np.asarray(1.0 / np.sqrt(2.0), dtype=x.dtype)))


_ACTIVATIONS = {
    "gelu": gelu_erf,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "swish": jax.nn.silu,
    "silu": jax.nn.silu,
    "tanhshrink": lambda x: x - jnp.tanh(x),
    "softplus": jax.nn.softplus,
    "softshrink": lambda x: jnp.sign(x) * jnp.maximum(jnp.abs(x) - 0.5, 0.0),
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.01),
    "elu": jax.nn.elu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in _ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; use one of {', '.join(_ACTIVATIONS)}")
  return _ACTIVATIONS[name]


def outside_fusion(fn: Callable, operand):
  """fn(operand), materialised as its own computation: XLA:CPU drops optimization barriers, and a
  conditional is a boundary no fusion crosses. Both branches are fn, so the predicate (any runtime
  value, here whether the first element is finite) never changes the result."""
  first = jax.tree_util.tree_leaves(operand)[0].reshape(-1)[0]
  return jax.lax.cond(jnp.isfinite(first), fn, fn, operand)


def compute_dtype(settings: ModelSettings) -> jnp.dtype:
  return jnp.dtype(settings.dtype)


class RMSNorm(nn.Module):
  """x / sqrt(mean(x^2) + 1e-8) * w, w initialised to 1, no bias; computed in float32."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + RMS_EPS)
    return (y * scale).astype(self.dtype)


def dot_general_float32_accumulation(lhs, rhs, dimension_numbers, precision=None,
                                     preferred_element_type=None):
  """lax.dot_general accumulating in float32, the result cast back to the operands' dtype.

  With bfloat16 operands this is what a TPU's MXU does, and on a CPU with AVX512-BF16 it is what
  selects XLA's native bfloat16 matmul (about 2x the float32 rate); a bfloat16-accumulating dot
  is instead upcast to float32 there (docs/performance.md, "bfloat16 on this CPU").
  """
  del preferred_element_type  # always float32 here
  out = jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                            preferred_element_type=jnp.float32)
  return out.astype(jnp.result_type(lhs, rhs))


def dense(features: int, name: str, dtype: jnp.dtype, use_bias: bool = True) -> nn.Dense:
  """The reference's Linear wrapper: xavier-uniform weights, zero bias, float32 params.

  Below float32 the matmul accumulates in float32 (dot_general_float32_accumulation).
  """
  low_precision = jnp.dtype(dtype) != jnp.float32
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=nn.initializers.xavier_uniform(),
                  bias_init=nn.initializers.zeros, name=name,
                  dot_general=(dot_general_float32_accumulation if low_precision
                               else jax.lax.dot_general))


def _torch_conv_bias_init(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _padded(x: jax.Array, left: int, right: int) -> jax.Array:
  """x [B, T, C] zero-padded along T, materialised once (outside_fusion): otherwise XLA:CPU
  fuses the producer of x into each of the k shifted slices that read it."""
  return outside_fusion(lambda v: jnp.pad(v, ((0, 0), (left, right), (0, 0))), x)


def _shifted_sum(padded: jax.Array, taps: jax.Array) -> jax.Array:
  """sum_i padded[:, i:i + T] * taps[i], T = padded length - k + 1: a stride-1 depthwise
  correlation over axis 1."""
  length = padded.shape[1] - taps.shape[0] + 1
  out = padded[:, 0:length] * taps[0]
  for i in range(1, taps.shape[0]):
    out = out + padded[:, i:i + length] * taps[i]
  return out


@jax.custom_vjp
def depthwise_conv1d(x: jax.Array, taps: jax.Array) -> jax.Array:
  """'Same'-padded stride-1 depthwise conv of x [B, T, C] with taps [k, C] (cross-correlation,
  like nn.Conv). The gradient is written out because autodiff of the shifted sum keeps k shifted
  copies of x alive between the passes; this one keeps the padded x alone."""
  return _depthwise_conv1d_fwd(x, taps)[0]


def _depthwise_conv1d_fwd(x, taps):
  k = taps.shape[0]
  padded = _padded(x, k // 2, k - 1 - k // 2)
  return _shifted_sum(padded, taps), (padded, taps)


def _depthwise_conv1d_bwd(residuals, grad):
  padded, taps = residuals
  k, length = taps.shape[0], grad.shape[1]
  # The input gradient is the same correlation with the taps reversed and the padding swapped.
  grad_x = _shifted_sum(_padded(grad, k - 1 - k // 2, k // 2), taps[::-1])
  # The select (a no-op for finite values: the product is 0 where grad is) keeps XLA:CPU from
  # rewriting each multiply-reduce as a dot over a materialised copy of the shifted input.
  grad_taps = jnp.stack([
      jnp.sum(jnp.where(grad != 0, padded[:, i:i + length] * grad, 0), axis=(0, 1),
              dtype=jnp.float32) for i in range(k)])
  return grad_x, grad_taps.astype(taps.dtype)


depthwise_conv1d.defvjp(_depthwise_conv1d_fwd, _depthwise_conv1d_bwd)


class DepthwiseConv1D(nn.Module):
  """A stride-1 depthwise 1-D conv (one filter per channel) as `kernel` shifted multiply-adds.

  Same parameters ('kernel' [k, 1, C], 'bias' [C]) and values as nn.Conv with
  feature_group_count=C; XLA:CPU runs the grouped convolution ~20-60x slower than this
  (benchmark.operators.bench_depthwise).
  """
  features: int
  kernel_size: int
  dtype: jnp.dtype
  kernel_init: Callable
  bias_init: Callable

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (self.kernel_size, 1, self.features),
                        jnp.float32).astype(self.dtype)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32).astype(self.dtype)
    return depthwise_conv1d(x.astype(self.dtype), kernel[:, 0]) + bias


class PatchConv2D(nn.Module):
  """A 2-D convolution with 'same' padding as one matmul over its gathered input patches.

  Same parameters ('kernel' [kh, kw, C_in, C_out], 'bias' [C_out]) and values as nn.Conv with
  padding ((kh // 2,) * 2, (kw // 2,) * 2); the conv2d front-end's 3x3 convs with 32 channels ran
  at 5-30 GFLOP/s as XLA:CPU convolutions, a fifth of its matmul rate (docs/performance.md).
  """
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int]
  dtype: jnp.dtype
  kernel_init: Callable
  bias_init: Callable

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    (kh, kw), (sh, sw) = self.kernel_size, self.strides
    in_features = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (kh, kw, in_features, self.features),
                        jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    padded = jnp.pad(x.astype(self.dtype),
                     ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    rows = (padded.shape[1] - kh) // sh + 1
    cols = (padded.shape[2] - kw) // sw + 1
    # Patch features ordered (i, j, c), as the kernel's row-major [kh, kw, C_in] flattening.
    patches = jnp.concatenate(
        [padded[:, i:i + sh * (rows - 1) + 1:sh, j:j + sw * (cols - 1) + 1:sw, :]
         for i in range(kh) for j in range(kw)], axis=-1)
    flat_kernel = kernel.reshape(kh * kw * in_features, self.features).astype(self.dtype)
    out = jax.lax.dot_general(patches, flat_kernel, (((3,), (0,)), ((), ())),
                              preferred_element_type=jnp.float32)
    return (out + bias).astype(self.dtype)


def is_depthwise(features: int, kernel: int, stride: int, in_features: int, groups: int) -> bool:
  """Whether conv() builds a DepthwiseConv1D (shifted multiply-adds) rather than nn.Conv."""
  return groups == in_features == features and stride == 1 and kernel % 2 == 1


def conv_initializers(settings: ModelSettings, fan_in: int) -> Tuple[Callable, Callable]:
  """(kernel_init, bias_init) of a conv with this fan-in under settings.conv_init."""
  if settings.conv_init == "torch":  # U(+-1/sqrt(fan_in)) for weight and bias
    return (nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
            _torch_conv_bias_init(fan_in))
  if settings.conv_init == "fan_in":
    # He-normal: keeps each conv's output at the input's scale. With N(0, 0.02) the depthwise
    # conv (fan-in 3) shrinks the audio ~30x and the front-end output is ~1/500 of the sinusoids
    # added after it, so the encoder starts out seeing positions, not sound.
    return nn.initializers.variance_scaling(2.0, "fan_in", "normal"), nn.initializers.zeros
  return nn.initializers.normal(CONV_INIT_STD), nn.initializers.zeros


def conv(features: int, kernel: int, stride: int, name: str, settings: ModelSettings,
         in_features: int, groups: int = 1) -> nn.Module:
  """1-D conv with 'same'-style padding (k//2, or stride-1 for the waveform kernels 2s-1)."""
  pad = kernel // 2
  kernel_init, bias_init = conv_initializers(settings, in_features // groups * kernel)
  if is_depthwise(features, kernel, stride, in_features, groups):
    return DepthwiseConv1D(features, kernel, compute_dtype(settings), kernel_init, bias_init,
                           name=name)
  return nn.Conv(features, kernel_size=(kernel,), strides=(stride,), padding=((pad, pad),),
                 feature_group_count=groups, dtype=compute_dtype(settings),
                 param_dtype=jnp.float32, kernel_init=kernel_init, bias_init=bias_init, name=name)


def sinusoids(length: int, channels: int) -> np.ndarray:
  """[length, channels] float32: sin in the first half, cos in the second (reference formula)."""
  half = channels // 2
  inc = math.log(10000.0) / max(half - 1, 1)
  inv = np.exp(-inc * np.arange(half, dtype=np.float64))
  t = np.arange(length, dtype=np.float64)[:, None] * inv[None, :]
  return np.concatenate([np.sin(t), np.cos(t)], axis=1).astype(np.float32)


def embedding_init(settings: ModelSettings):
  """N(0, d^-1/2) (scaled, default) or N(0, 1) (reference); row 0 (pad) zeroed."""
  std = 1.0 if settings.embed_init == "normal" else settings.d_model ** -0.5
  base = nn.initializers.normal(std)

  def init(key, shape, dtype=jnp.float32):
    table = base(key, shape, dtype)
    return table.at[0].set(0.0)
  return init


def inverse_softplus(y: float) -> float:
  return float(np.log(np.expm1(y)))
