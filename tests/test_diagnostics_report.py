"""The seed's report rebuilt from dumps: its formulas reproduce the seed README's own numbers and
its layout reproduces the README's text; the dump format round-trips; the CLI selects steps."""

import contextlib
import io
import itertools
import json
import os
import pathlib
import re

import numpy as np
import pytest

from echo_jax.diagnostics import __main__ as cli
from echo_jax.diagnostics import report
from echo_jax.training import diagnostics_dump as dump
from echo_jax.training import diagnostics_naming as naming

SEED_TEXT = (pathlib.Path(__file__).parent / "test_diagnostics_seed_report.txt").read_text()
SEED_STEPS = 15  # the seed kept 15 samples per tensor
HALF = 5e-5  # half a unit of the 4th decimal: the README's rounding of printed values
NUM = r"(-?\d+\.\d+)"


def _section(title: str) -> list:
  lines = SEED_TEXT.splitlines()
  start = next(i for i, l in enumerate(lines) if title in l) + 1
  out = []
  for line in lines[start:]:
    if not line.strip() or line[0] not in " 🟢🟡🔴":
      break
    out.append(line)
  return out


def _parse():
  seed = {"attention": {}, "ratios": {}, "ln": {}, "blend": {}, "act": {}, "gates": {},
          "stats": {}}
  for line in _section("COMPONENT STATISTICS"):
    m = re.match(rf"^  (\w+): avg={NUM}, min={NUM}, max={NUM}, samples=(\d+)$", line)
    if m:
      seed["stats"][m[1]] = {"avg": float(m[2]), "samples": int(m[5])}
  for line in _section("ENCODER ATTENTION GRADIENTS") + _section("DECODER ATTENTION GRADIENTS"):
    m = re.match(rf"^  (\S+): Q={NUM}, K={NUM}, V={NUM}, Sum={NUM}$", line)
    seed["attention"][m[1]] = tuple(float(m[i]) for i in range(2, 6))
  for line in _section("ATTENTION COMPONENT RATIOS"):
    m = re.match(rf"^  (\S+)\.(o_v_ratio|q_k_sim|qk_v_ratio|v_k_ratio|v_q_ratio) = {NUM}$", line)
    seed["ratios"].setdefault(m[1], {})[m[2]] = float(m[3])
  for line in _section("LAYER NORM GRADIENTS"):
    m = re.match(rf"^  (\S+): {NUM}$", line)
    seed["ln"][m[1]] = float(m[2])
  for line in _section("CROSS-ATTENTION BLEND"):
    m = re.match(rf"^  (\S+): {NUM}$", line)
    seed["blend"][m[1]] = float(m[2])
  for line in _section("ACTIVATION ANALYSIS"):
    m = re.match(rf"^  (\S+): activation mean={NUM}, sparsity={NUM}$", line)
    seed["act"][m[1]] = (float(m[2]), float(m[3]))
  colours = {v: k for k, v in report.STATUS_MARK.items()}
  for line in _section("GATE vs MLP"):
    m = re.match(rf"^(\S+) (\S+)\.: gate/mlp activation ratio={NUM}, sparsity difference={NUM}$",
                 line)
    seed["gates"][m[2]] = (colours[m[1]], float(m[3]), float(m[4]))
  return seed


SEED = _parse()


def _interval(fn, values, half=HALF):
  """(min, max) of fn over the box of inputs the printed (rounded) values stand for."""
  axes = [np.linspace(v - half, v + half, 5) for v in values]
  results = [fn(*point) for point in itertools.product(*axes)]
  return min(results), max(results)


def _assert_reproduces(printed, fn, values, what):
  lo, hi = _interval(fn, values)
  assert lo - HALF <= printed <= hi + HALF, f"{what}: seed {printed}, formula gives [{lo}, {hi}]"


def test_seed_text_parsed_completely():
  assert len(SEED["attention"]) == 10 and len(SEED["ratios"]) == 10
  assert len(SEED["ln"]) == 19 and len(SEED["act"]) == 53 and len(SEED["gates"]) == 12


def test_ratio_definitions_reproduce_the_seed_numbers():
  # The worked example of the spec: decoder._blocks.0.attna.
  ratios = report.attention_ratios(0.0911, 0.0924, 0.1968, None)
  assert round(ratios["q_k_sim"], 3) == 0.986
  assert round(ratios["qk_v_ratio"], 4) == 0.9324
  for module, (q, k, v, total) in SEED["attention"].items():
    printed = SEED["ratios"][module]
    for name in ("q_k_sim", "qk_v_ratio", "v_k_ratio", "v_q_ratio"):
      _assert_reproduces(printed[name], lambda q, k, v: report.attention_ratios(q, k, v, None)[name],
                         (q, k, v), f"{module}.{name}")
    assert abs((q + k + v) - total) <= 3 * HALF + HALF


def _seed_dumps():
  """Dumps of a run whose per-module means are the seed README's printed numbers."""
  flat = {}
  for module, (q, k, v, _) in SEED["attention"].items():
    o = SEED["ratios"][module]["o_v_ratio"] * v
    for comp, value in zip("QKVO", (q, k, v, o)):
      flat[f"seed/{comp}/{module}"] = value
  for i, block in enumerate(sorted({m.rsplit(".", 1)[0] for m in SEED["attention"]})):
    flat[f"seed/GATE/{block}.mlp_gate"] = 0.5 + 0.1 * i
    flat[f"seed/MLP/{block}.mlp"] = 0.02 + 0.001 * i
  for i in range(3):
    flat[f"seed/ENCODER/encoder.blocks.spectrogram.0.conv{i + 1}"] = 0.004 + 0.001 * i
  for name, value in SEED["ln"].items():
    flat[f"seed/LN/{name}"] = value
  for name, value in SEED["blend"].items():
    flat[f"seed/BLEND/{name}"] = value
  for name, (mean, sparsity) in SEED["act"].items():
    flat[f"activation_mean_abs/{name}"] = mean
    flat[f"activation_sparsity/{name}"] = sparsity
  return {step: {k: np.float64(v) for k, v in flat.items()} for step in range(SEED_STEPS)}


def test_component_statistics_reproduce_the_seed_averages():
  stats = report.summarize(_seed_dumps())["component_statistics"]
  assert list(stats) == list(naming.COMPONENTS)
  for comp in ("Q", "K", "V", "O", "LN", "BLEND"):
    # Averages of values printed to 4 (Q, K, V, ratios) or 6 (LN, BLEND) decimals.
    tolerance = 1e-6 if comp in ("LN", "BLEND") else 1e-4
    assert stats[comp]["avg"] == pytest.approx(SEED["stats"][comp]["avg"], abs=tolerance), comp
    assert stats[comp]["samples"] == SEED["stats"][comp]["samples"], comp
  for comp in ("GATE", "MLP", "ENCODER"):
    assert stats[comp]["samples"] == SEED["stats"][comp]["samples"], comp


def test_gate_vs_mlp_lines_and_colours_reproduce_the_seed():
  for block, (colour, ratio, difference) in SEED["gates"].items():
    gate_mean, gate_sparsity = SEED["act"][block + ".gate_activation"]
    mlp_mean, mlp_sparsity = SEED["act"][block + ".mlp_activation"]
    line = report.gate_vs_mlp(gate_mean, gate_sparsity, mlp_mean, mlp_sparsity)
    _assert_reproduces(ratio, lambda g, m: g / m, (gate_mean, mlp_mean), block)
    _assert_reproduces(difference, lambda g, m: g - m, (gate_sparsity, mlp_sparsity), block)
    assert line["status"] == colour, block


def test_red_rule():
  status = report.gate_mlp_status
  assert status(1.4918, -0.004) == "green" and status(1.9999, 0.0) == "green"
  assert status(2.0, 0.0) == "yellow" and status(4.99, 0.05) == "yellow"
  assert status(5.0, 0.0) == "red" and status(0.49, 0.0) == "red"
  assert status(1.2, 0.11) == "red"  # much sparser gate with a mean above the MLP's: a switch
  assert status(0.8, 0.11) == "green"  # sparser but small: no shortcut signal


def _mask_numbers(text: str) -> list:
  lines = []
  for line in text.splitlines():
    if not line.strip():
      continue
    line = re.sub(r"(?<==)-?\d+(\.\d+)?", "#", line)
    line = re.sub(r"(?<=[=:] )-?\d+\.\d+", "#", line)
    lines.append(line.rstrip())
  return lines


def test_report_layout_is_the_seeds():
  text = report.format_report(report.summarize(_seed_dumps()))
  assert _mask_numbers(text) == _mask_numbers(SEED_TEXT)
  # Values that pass through unchanged print exactly as in the README.
  ours = set(text.splitlines())
  for section in ("LAYER NORM GRADIENTS", "CROSS-ATTENTION BLEND", "ACTIVATION ANALYSIS",
                  "ENCODER ATTENTION GRADIENTS"):
    for line in _section(section):
      if "Sum=" in line:  # Sum of the unrounded values may differ in the last digit
        line = line.rsplit(", Sum=", 1)[0]
        assert any(l.startswith(line + ", Sum=") for l in ours), line
      else:
        assert line in ours, line


def test_tensors_without_gradients_are_left_out():
  dumps = {s: {"seed/Q/a.attna": np.float32(0.1), "seed/K/a.attna": np.float32(0.2),
               "seed/V/a.attna": np.float32(0.4), "seed/Q/b.attna": np.float32(0.0),
               "seed/K/b.attna": np.float32(0.0), "seed/V/b.attna": np.float32(0.0)}
           for s in range(3)}
  summary = report.summarize(dumps)
  assert list(summary["attention"]) == ["a.attna"]
  assert summary["component_statistics"]["Q"]["samples"] == 3


def test_natural_order_of_block_numbers():
  names = ["encoder.blocks.spectrogram.10.attna", "encoder.blocks.spectrogram.9.attna",
           "decoder.blocks.spectrogram.0.attna", "decoder._blocks.0.attna"]
  assert sorted(names, key=report.natural_key) == [
      "decoder._blocks.0.attna", "decoder.blocks.spectrogram.0.attna",
      "encoder.blocks.spectrogram.9.attna", "encoder.blocks.spectrogram.10.attna"]


def test_dotted_names_follow_the_reference():
  assert naming.dotted(["params", "encoder", "blocks_spectrogram_0", "attna", "q", "kernel"]) == \
      "encoder.blocks.spectrogram.1.attna.q.kernel"
  assert naming.dotted(["decoder", "blocks_spectrogram_3", "lnb", "scale"]) == \
      "decoder.blocks.spectrogram.3.ln_b.scale"
  assert naming.dotted(["decoder", "_blocks_2", "lna", "scale"]) == "decoder._blocks.2.ln_a.scale"
  assert naming.dotted(["encoder", "frontend_spectrogram", "conv2", "kernel"]) == \
      "encoder.blocks.spectrogram.0.conv2.kernel"
  assert naming.dotted(["decoder", "blend_spectrogram"]) == "decoder.blend.spectrogram"
  assert naming.component_of("decoder.blend.spectrogram") is None  # not a Residual's blend
  assert naming.component_of("decoder._blocks.0.attna.q.bias") is None
  assert naming.component_of("decoder._blocks.0.attna.k.kernel") == "K"
  assert naming.component_of("decoder.blocks.spectrogram.0.blend") == "BLEND"
  assert naming.component_of("decoder.ln_dec.scale") is None
  assert naming.component_of("encoder.blocks.spectrogram.0.conv3.kernel") == "ENCODER"


# ------------------------------------------------------------------------- dump format and CLI

MOD = "encoder.blocks.spectrogram.1.attna"


def _tree(step: int):
  return {"seed": {"Q": {MOD: np.float32(step + 1.0)}, "K": {MOD: np.float32(2.0)},
                   "V": {MOD: np.float32(4.0)}, "O": {MOD: np.float32(3.0)}},
          "rotary_theta": {"model": np.arange(4, dtype=np.float32) + step},
          "global_norm": {"grad": np.float32(step)}}


def test_writer_round_trip_and_index(tmp_path):
  writer = dump.DiagnosticsWriter(str(tmp_path), process_index=0)
  for step in (0, 10, 20):
    writer.write(step, _tree(step))
  writer.close()
  index = json.loads((tmp_path / "diagnostics" / "index.json").read_text())
  assert index["format"] == dump.FORMAT
  assert [s["step"] for s in index["steps"]] == [0, 10, 20]
  assert index["keys"]["rotary_theta/model"] == {"shape": [4], "dtype": "float32"}
  # Plain numpy reads a dump without any echo_jax code.
  with np.load(tmp_path / "diagnostics" / "step_000010.npz") as archive:
    np.testing.assert_array_equal(archive["rotary_theta/model"], np.arange(4) + 10)
    assert float(archive["seed/Q/" + MOD]) == 11.0
  # A resumed run appends to the same index.
  writer = dump.DiagnosticsWriter(str(tmp_path), process_index=0)
  writer.write(30, _tree(30))
  writer.close()
  assert sorted(dump.load_run(str(tmp_path))) == [0, 10, 20, 30]
  assert dump.unflatten(dump.flatten(_tree(5)))["seed"]["V"][MOD] == 4.0


def test_non_writer_process_writes_nothing(tmp_path):
  writer = dump.DiagnosticsWriter(str(tmp_path), process_index=1)
  writer.write(0, _tree(0))
  writer.close()
  assert not (tmp_path / "diagnostics").exists()


def test_bad_keys_and_failed_writes_are_reported(tmp_path):
  with pytest.raises(ValueError, match="contains '/'"):
    dump.flatten({"a/b": np.float32(1)})
  writer = dump.DiagnosticsWriter(str(tmp_path), process_index=0)
  writer.write(0, {"x": object()})  # not an array: fails in the writer thread
  with pytest.raises(TypeError, match="object"):
    writer.close()  # the writer thread's error surfaces in the training process
  assert not list(tmp_path.rglob("step_*.npz"))  # and no half-written step is left behind
  with pytest.raises(ValueError, match="A:B"):
    dump.parse_steps("ten:20")
  with pytest.raises(FileNotFoundError, match="diagnostics.every"):
    dump.load_run(str(tmp_path / "nowhere"))


def test_cli_report_json_selects_steps(tmp_path):
  writer = dump.DiagnosticsWriter(str(tmp_path), process_index=0)
  for step in (0, 10, 20):
    writer.write(step, _tree(step))
  writer.close()
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    cli.main(["report", str(tmp_path), "--steps", "10:20", "--json"])
  summary = json.loads(out.getvalue())
  assert summary["steps"] == [10, 20]
  q = summary["attention"][MOD]["Q"]
  assert q == pytest.approx((11.0 + 21.0) / 2)
  assert summary["attention"][MOD]["ratios"]["v_q_ratio"] == pytest.approx(4.0 / q)
  assert summary["rotary"]["theta"]["values"] == 8
  text = io.StringIO()
  with contextlib.redirect_stdout(text):
    cli.main(["report", os.path.join(str(tmp_path), "diagnostics"), "--steps", ":0"])
  assert MOD + ": Q=1.0000, K=2.0000, V=4.0000, Sum=7.0000" in text.getvalue()
  assert cli._finite_or_null({"r": [float("inf"), 1.0]}) == {"r": [None, 1.0]}
  with pytest.raises(ValueError, match="no diagnostics dumps"):
    dump.load_run(str(tmp_path), "100:200")
