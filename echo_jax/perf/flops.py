"""Analytic FLOP counts of EchoModel (forward, train step, decode step) and XLA's own count.

Counted: every matmul, convolution and attention contraction, 2 FLOPs per multiply-add. Not
counted: elementwise work (norms, activations, rotary, softmax, masks, and the front-end's
depthwise k3 conv, which layers.DepthwiseConv1D computes as shifted multiply-adds, not as a
convolution; 6 x d FLOPs per frame, under 0.1 % of any step) and the optimizer, which
XLA's cost analysis does include; `xla_flops` reads that count from a compiled computation and
`dot_conv_flops_from_hlo` recounts only its dots and convolutions, so the analytic count can be
checked exactly against what XLA compiled.

A train step is forward + backward = 3x the forward contractions, minus the gradient of the
first front-end convolution with respect to its input (data, never differentiated).
"""

import math
import re
from typing import Any, Dict, Optional

from echo_jax.models.config import ModelSettings, model_settings
from echo_jax.models.layers import is_depthwise
from echo_jax.models.encoder import (PITCH_KERNEL, SPECTROGRAM_KERNEL, WAVEFORM_CHANNELS,
                                     WAVEFORM_GROUPS, stage_strides, stream_factor,
                                     waveform_strides)


def _ceil_div(a: int, b: int) -> int:
  return -(-int(a) // int(b))


def conv_flops(batch: int, out_length: int, in_features: int, out_features: int, kernel: int,
               groups: int = 1, stride: int = 1) -> int:
  """Contraction FLOPs of layers.conv(); 0 where it is a depthwise conv (elementwise work)."""
  if is_depthwise(out_features, kernel, stride, in_features, groups):
    return 0
  return 2 * batch * out_length * out_features * (in_features // groups) * kernel


def dense_flops(rows: int, in_features: int, out_features: int) -> int:
  """rows = every position the layer is applied to (batch * length)."""
  return 2 * rows * in_features * out_features


def attention_flops(batch: int, q_len: int, kv_len: int, d_model: int, project_q: bool = True,
                    project_kv: bool = True) -> int:
  """q/k/v/o projections plus the two contractions q.k and weights.v (all heads: h * hd = d)."""
  flops = 0
  if project_q:
    flops += 2 * dense_flops(batch * q_len, d_model, d_model)  # q and o
  if project_kv:
    flops += 2 * dense_flops(batch * kv_len, d_model, d_model)  # k and v
  return flops + 2 * (2 * batch * q_len * kv_len * d_model)


def residual_flops(s: ModelSettings, batch: int, length: int, self_kv_len: Optional[int] = None,
                   cross_len: Optional[int] = None, project_self_kv: bool = True) -> int:
  """One gated Residual block over `length` positions (self-attention over self_kv_len keys)."""
  kv = length if self_kv_len is None else self_kv_len
  flops = attention_flops(batch, length, kv, s.d_model, project_kv=False)
  if project_self_kv:
    flops += 2 * dense_flops(batch * length, s.d_model, s.d_model)
  if cross_len is not None:
    flops += attention_flops(batch, length, cross_len, s.d_model)
  flops += dense_flops(batch * length, s.d_model, s.mlp_dim)
  flops += dense_flops(batch * length, s.mlp_dim, s.d_model)
  flops += dense_flops(batch * length, s.d_model, 1)  # mlp_gate
  return flops


def frontend_flops(s: ModelSettings, feature: str, batch: int, mel_frames: int) -> Dict[str, int]:
  """{'first_conv', 'rest', 'length'}: the stream's front-end FLOPs and its output frame count."""
  d = s.d_model
  if feature == "waveform":
    length = mel_frames * s.hop_length
    channels = (1,) + WAVEFORM_CHANNELS + (d,)
    first = rest = 0
    for i, stride in enumerate(waveform_strides(s.hop_length)):
      length = _ceil_div(length, stride)
      f = conv_flops(batch, length, channels[i], channels[i + 1], 2 * stride - 1, stride=stride)
      first, rest = (f, rest) if i == 0 else (first, rest + f)
    rest += conv_flops(batch, length, d, d, 3, groups=math.gcd(d, WAVEFORM_GROUPS))
    rest += conv_flops(batch, length, d, d, 1)
    return {"first_conv": first, "rest": rest, "length": length}
  in_features, kernel = (s.n_mels, SPECTROGRAM_KERNEL) if feature == "spectrogram" else (
      1, PITCH_KERNEL)
  first_stride, second_stride = stage_strides(stream_factor(s, feature))
  length1 = _ceil_div(mel_frames, first_stride)
  length2 = _ceil_div(length1, second_stride)
  first = conv_flops(batch, length1, in_features, d, kernel, stride=first_stride)
  rest = conv_flops(batch, length2, d, d, 5, stride=second_stride)
  rest += conv_flops(batch, length2, d, d, 3, groups=d)  # depthwise: 0
  return {"first_conv": first, "rest": rest, "length": length2}


def encoder_lengths(s: ModelSettings, mel_frames: int) -> Dict[str, int]:
  return {f: frontend_flops(s, f, 1, mel_frames)["length"] for f in s.features}


def forward_flops(model_cfg: Any, batch: int, mel_frames: int, tokens: int) -> Dict[str, int]:
  """Forward FLOPs of model.apply on a [batch, mel_frames] x [batch, tokens] batch, by part."""
  s = model_settings(model_cfg)
  parts = {"frontend_first_conv": 0, "frontend": 0, "encoder_blocks": 0, "decoder_blocks": 0,
           "output_projection": dense_flops(batch * tokens, s.d_model, s.vocab_size)}
  for feature in s.features:
    front = frontend_flops(s, feature, batch, mel_frames)
    parts["frontend_first_conv"] += front["first_conv"]
    parts["frontend"] += front["rest"]
    parts["encoder_blocks"] += s.encoder_layers * residual_flops(s, batch, front["length"])
    parts["decoder_blocks"] += s.decoder_layers * residual_flops(
        s, batch, tokens, cross_len=front["length"])
  parts["decoder_blocks"] += s.decoder_layers * residual_flops(s, batch, tokens)
  parts["total"] = sum(parts.values())
  return parts


def train_step_flops(model_cfg: Any, batch: int, mel_frames: int, tokens: int) -> int:
  """Forward + backward contractions of one train step (the optimizer's elementwise work aside)."""
  fwd = forward_flops(model_cfg, batch, mel_frames, tokens)
  return 3 * fwd["total"] - fwd["frontend_first_conv"]


def decode_flops(model_cfg: Any, batch: int, mel_frames: int, max_length: int, steps: int,
                 use_cache: bool) -> Dict[str, int]:
  """Encoder once + `steps` decoder steps of decoding.py's loop for `batch` rows (beams included).

  Cached: creating the cache projects the encoder output to cross-attention keys/values
  (`cache_init`, once per sequence; the rest of that one-token decoder call is unused and
  compiled away); each step then feeds one token, self-attention reads max_length cached keys and
  cross-attention reads the stored keys/values. Uncached: each step re-runs the decoder on the whole max_length token
  buffer, cross-attention projections included.
  """
  s = model_settings(model_cfg)
  lengths = encoder_lengths(s, mel_frames)
  encoder = 0
  for feature, length in lengths.items():
    front = frontend_flops(s, feature, batch, mel_frames)
    encoder += front["first_conv"] + front["rest"]
    encoder += s.encoder_layers * residual_flops(s, batch, length)

  def decoder_call(q_len: int, self_kv_len: int) -> int:
    """One decoder call on q_len tokens, cross-attention keys/values projected."""
    flops = dense_flops(batch * q_len, s.d_model, s.vocab_size)
    flops += s.decoder_layers * residual_flops(s, batch, q_len, self_kv_len=self_kv_len)
    for length in lengths.values():
      flops += s.decoder_layers * residual_flops(s, batch, q_len, self_kv_len=self_kv_len,
                                                 cross_len=length)
    return flops

  cross_kv = sum(s.decoder_layers * 2 * dense_flops(batch * length, s.d_model, s.d_model)
                 for length in lengths.values())
  if use_cache:
    cache_init = cross_kv
    step = decoder_call(1, max_length) - cross_kv
  else:
    cache_init, step = 0, decoder_call(max_length, max_length)
  return {"encoder": encoder, "cache_init": cache_init, "per_step": step, "cross_kv": cross_kv,
          "total": encoder + cache_init + steps * step}


# ----------------------------------------------------------------------------------------------
# XLA's count.


def xla_cost(compiled) -> Dict[str, float]:
  """XLA's cost analysis of a compiled computation (`jax.jit(f).lower(...).compile()`)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per partition
    cost = cost[0] if cost else {}
  return dict(cost or {})


def xla_flops(compiled) -> float:
  """Total FLOPs XLA counts for the computation (contractions and elementwise work)."""
  return float(xla_cost(compiled).get("flops", float("nan")))


_DEFINITION = re.compile(r"^\s*(?:ROOT\s+)?(%?[\w.\-]+)\s*=\s*[a-z0-9]+\[([0-9,]*)\]")
_CALL = re.compile(r"\s(dot|convolution)\((.*?)\)(?:,\s*(.*))?$")
_OPERAND_NAME = re.compile(r"(%?[\w.\-]+)\s*$")


def _dims(text: str) -> list:
  return [int(x) for x in text.split(",") if x]


def _product(values) -> int:
  out = 1
  for v in values:
    out *= int(v)
  return out


def _operand_dims(operand: str, shapes: Dict[str, list]) -> list:
  """Dims of an operand printed as `f32[2,3]{1,0} %x` or just `%x` (looked up by name)."""
  inline = re.search(r"\[([0-9,]*)\]", operand)
  if inline:
    return _dims(inline.group(1))
  name = _OPERAND_NAME.search(operand.strip())
  if name is None or name.group(1) not in shapes:
    raise ValueError(f"HLO operand {operand.strip()!r} has no known shape")
  return shapes[name.group(1)]


def _shapes_and_calls(hlo_text: str):
  """({instruction name: dims}, [(line, output dims, (opcode, operands, attributes))])."""
  shapes: Dict[str, list] = {}
  calls = []
  for line in hlo_text.splitlines():
    definition = _DEFINITION.match(line)
    if definition is None:
      continue
    shapes[definition.group(1)] = _dims(definition.group(2))
    call = _CALL.search(line)
    if call is not None:
      calls.append((line, definition.group(2), call.groups()))
  return shapes, calls


def _call_flops(line: str, out_dims: str, call, shapes: Dict[str, list]) -> int:
  op, operands, attrs = call
  operand_list = [o for o in re.split(r",\s*(?![^\[]*\])(?![^{]*\})", operands) if o.strip()]
  if len(operand_list) < 2:
    raise ValueError(f"cannot read the {op} in HLO line: {line.strip()[:200]}")
  lhs = _operand_dims(operand_list[0], shapes)
  rhs = _operand_dims(operand_list[1], shapes)
  out = _product(_dims(out_dims))
  attrs = attrs or ""
  if op == "dot":
    contracting = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", attrs)
    if contracting is None:
      raise ValueError(f"dot without lhs_contracting_dims in HLO line: {line.strip()[:200]}")
    return 2 * out * _product(lhs[i] for i in _dims(contracting.group(1)))
  labels = re.search(r"dim_labels=\w+_(\w+)->", attrs)
  if labels is None:
    raise ValueError(f"convolution without dim_labels in HLO line: {line.strip()[:200]}")
  return 2 * out * _product(rhs) // rhs[labels.group(1).index("o")]


def dot_conv_flops_from_hlo(hlo_text: str) -> int:
  """2 x multiply-adds of every dot and convolution in HLO text (`compiled.as_text()`).

  A dot's FLOPs are 2 * |output| * prod(lhs contracting dims); a convolution's are
  2 * |output| * |kernel| / output features (kernel spatial x input features per group).
  Operand shapes are read inline or from the operand's definition (instruction names are unique
  within an HLO module).
  """
  shapes, calls = _shapes_and_calls(hlo_text)
  return sum(_call_flops(line, out, call, shapes) for line, out, call in calls)


def hlo_instructions(hlo_text: str) -> Dict[str, Dict[str, Any]]:
  """{instruction name: {flops, op_name, opcode}} of a compiled module's text.

  A fusion's flops are the dot/convolution FLOPs of the computation it calls, so the entries of
  the entry computation partition the module's contraction FLOPs. Names lose their leading '%'.
  """
  computations: Dict[str, list] = {}
  current = None
  for line in hlo_text.splitlines():
    header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
    if header and not line.startswith(" "):
      current = header.group(1)
      computations[current] = []
    elif current is not None and line.startswith(" "):
      computations[current].append(line)
  shapes, _ = _shapes_and_calls(hlo_text)

  def flops_in(lines) -> int:
    total = 0
    for line in lines:
      definition, call = _DEFINITION.match(line), _CALL.search(line)
      if definition is not None and call is not None:
        total += _call_flops(line, definition.group(2), call.groups(), shapes)
    return total
  flops_of = {name: flops_in(lines) for name, lines in computations.items()}
  out = {}
  for lines in computations.values():
    for line in lines:
      definition = re.match(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S+\s+([\w\-]+)\(", line)
      if definition is None:
        continue
      name, opcode = definition.groups()
      called = re.search(r"calls=%?([\w.\-]+)", line)
      op_name = re.search(r'op_name="([^"]*)"', line)
      count = flops_of.get(called.group(1), 0) if called and opcode == "fusion" else (
          flops_in([line]) if opcode in ("dot", "convolution") else 0)
      out[name] = {"flops": count, "opcode": opcode,
                   "op_name": op_name.group(1) if op_name else ""}
  return out
