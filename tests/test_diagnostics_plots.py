"""Pictures: the rotary similarity is the spec's matrix from the model's own rotary code, the
attention capture records the model's own softmax weights without changing its output, and each
plot command writes a readable PNG."""

import json

import jax
import matplotlib.image
import numpy as np
import pytest

from echo_jax.diagnostics import __main__ as cli
from echo_jax.diagnostics import attention_maps, plots
from echo_jax.errors import UserError
from echo_jax.models import testing
from echo_jax.models.echo import EchoModel
from echo_jax.training import diagnostics_dump as dump


def test_rotary_similarity_is_the_spec_matrix():
  head_dim, positions = 64, 12
  sim = plots.rotary_similarity("seed", 150.0, 10000.0, positions, head_dim)
  # Spec §1.2: f0_mean 150 -> theta 15008; §3: sim[i, j] = mean_k cos((i - j) w_k).
  theta = 10000.0 + 9200.0 * np.log1p(150.0 / 700.0) / np.log1p(300.0 / 700.0)
  assert round(theta) == 15008
  omega = theta ** (-np.arange(0, head_dim, 2) / head_dim)
  offsets = np.arange(positions)[:, None] - np.arange(positions)[None, :]
  expected = np.cos(offsets[..., None] * omega).mean(-1)
  np.testing.assert_allclose(sim, expected, atol=2e-5)
  np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
  # A higher F0 gives a larger theta, lower frequencies, so a wider band (higher similarity).
  higher = plots.rotary_similarity("seed", 300.0, 10000.0, positions, head_dim)
  assert np.all(higher[0, 1:] > sim[0, 1:])


@pytest.fixture(scope="module")
def tiny():
  cfg = testing.tiny_model_config()
  batch = testing.random_batch(cfg, num_frames=[40, 23], num_tokens=[7, 4], frames=40, tokens=8)
  batch = {k: v for k, v in batch.items() if k not in ("waveform", "num_samples", "example_index")}
  model = EchoModel(cfg)
  variables = model.init(jax.random.PRNGKey(0), batch)
  return model, variables, batch


def test_attention_capture_records_the_models_softmax(tiny):
  model, variables, batch = tiny
  weights = attention_maps.attention_weights(model, variables, batch)
  assert sorted(weights) == ["decoder._blocks.0.attna", "decoder.blocks.spectrogram.0.attna",
                             "decoder.blocks.spectrogram.0.attnb",
                             "encoder.blocks.spectrogram.1.attna"]
  tokens = batch["decoder_input_tokens"] != 0
  frames = np.arange(40)[None, :] < batch["num_frames"][:, None]
  for name, w in weights.items():
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    keys = frames if (name.startswith("encoder") or name.endswith("attnb")) else tokens
    assert np.all(w[~np.broadcast_to(keys[:, None, None, :], w.shape)] == 0.0), name
    if name.startswith("decoder") and name.endswith("attna"):
      assert np.all(np.triu(w[0, 0], k=1) == 0.0), name  # causal decoder self-attention
  # Capture is transparent: the model's output is unchanged when weights are collected (the
  # capturing path runs the plain softmax instead of the fused one: equal to float32 rounding).
  recorded, _ = model.apply(variables, batch, mutable=["attention_weights"])
  np.testing.assert_allclose(recorded, model.apply(variables, batch), atol=1e-5, rtol=0)
  maps = attention_maps.select_maps(weights, batch, row=1, heads=[1])
  assert maps["encoder.blocks.spectrogram.1.attna head 1"].shape == (23, 23)
  assert maps["decoder.blocks.spectrogram.0.attnb head 1"].shape == (4, 23)
  with pytest.raises(ValueError, match="not found"):
    attention_maps.select_maps(weights, batch, layers=["decoder.nothing"])


def _png(path):
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
  return image


def test_plot_commands_write_pngs(tmp_path, capsys):
  cli.main(["plot", "rotary", "--out", str(tmp_path), "--f0", "0", "200", "--positions", "8",
            "--head_dim", "16", "--theta_modes", "seed", "mel"])
  _png(tmp_path / "rotary.png")

  records = [{"step": 10, "train/loss": 3.0, "train/learning_rate": 1e-3},
             {"step": 20, "train/loss": 2.0, "train/learning_rate": 2e-3},
             {"step": 20, "eval/loss": 2.5, "eval/wer": 0.9, "eval/cer": 0.5}]
  (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
  assert plots.curve_panels(records) == [
      ("loss", ["eval/loss", "train/loss"]), ("error rate", ["eval/cer", "eval/wer"]),
      ("learning rate", ["train/learning_rate"])]
  cli.main(["plot", "curves", str(tmp_path), "--out", str(tmp_path)])
  _png(tmp_path / "curves.png")

  f0 = np.array([0.0, 120.0, 240.0], np.float32)
  writer = dump.DiagnosticsWriter(str(tmp_path), process_index=0)
  writer.write(0, {"f0_mean_voiced": f0, "rotary_theta": {"model": 10000.0 + f0}})
  writer.close()
  cli.main(["plot", "theta", str(tmp_path), "--out", str(tmp_path), "--config",
            "configs/tiny.py"])
  _png(tmp_path / "theta.png")

  rng = np.random.default_rng(0)
  plots.plot_attention(str(tmp_path / "attention.png"),
                       {"a head 0": rng.random((5, 9)), "b head 1": rng.random((9, 9))})
  _png(tmp_path / "attention.png")
  assert capsys.readouterr().out.count(".png") == 3


def test_features_command_plots_a_recording(tmp_path, capsys):
  import soundfile
  sr = 16000
  t = np.arange(int(0.6 * sr)) / sr
  wave = sum(np.sin(2 * np.pi * 150.0 * h * t) / h for h in range(1, 6)) * 0.2
  soundfile.write(tmp_path / "tone.wav", wave.astype(np.float32), sr)
  cli.main(["plot", "features", "--wav", str(tmp_path / "tone.wav"), "--config",
            "configs/tiny.py", "--out", str(tmp_path / "pics" / "f.png")])
  assert capsys.readouterr().out.strip().endswith("f.png")
  _png(tmp_path / "pics" / "f.png")


def test_curves_plot_draws_the_logged_values(tmp_path, capsys):
  from echo_jax.training.metrics import MetricsWriter

  # Written by the trainer's own writer, so the plot reads the real metrics.jsonl format.
  run = tmp_path / "run"
  writer = MetricsWriter(str(run))
  train = {10: (3.0, 2.0, 1.0, 1e-3), 20: (2.5, 1.6, 0.9, 2e-3), 30: (2.0, 1.2, 0.8, 3e-3)}
  for step, (loss, ctc, ce, lr) in train.items():
    writer.write(step, {"loss": loss, "ctc_loss": ctc, "ce_loss": ce, "learning_rate": lr},
                 prefix="train/")
  evals = {20: (2.7, 0.9, 0.5, 0.95, 0.6), 30: (2.2, 0.8, 0.4, 0.85, 0.45)}
  for step, (loss, wer, cer, ctc_wer, ctc_cer) in evals.items():
    writer.write(step, {"loss": loss, "wer": wer, "cer": cer, "ctc_wer": ctc_wer,
                        "ctc_cer": ctc_cer, "best_wer": wer, "token_accuracy": 0.3},
                 prefix="eval/")
  writer.write(30, {"loss": float("nan")}, prefix="train/")  # non-finite: left out
  writer.close()

  records = plots.read_metrics(str(run / "metrics.jsonl"))
  fig = plots.curves_figure(records)
  lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
  panels = {ax.get_title(): sorted(line.get_label() for line in ax.get_lines())
            for ax in fig.axes}
  assert panels == {
      "loss": ["eval/loss", "train/ce_loss", "train/ctc_loss", "train/loss"],
      "error rate": ["eval/cer", "eval/ctc_cer", "eval/ctc_wer", "eval/wer"],
      "learning rate": ["train/learning_rate"]}
  expected = {f"train/{name}": {s: v[i] for s, v in train.items()}
              for i, name in enumerate(["loss", "ctc_loss", "ce_loss", "learning_rate"])}
  expected.update({f"eval/{name}": {s: v[i] for s, v in evals.items()}
                   for i, name in enumerate(["loss", "wer", "cer", "ctc_wer", "ctc_cer"])})
  assert sorted(lines) == sorted(expected)
  for label, points in expected.items():
    np.testing.assert_array_equal(lines[label].get_xdata(), list(points))
    np.testing.assert_allclose(lines[label].get_ydata(), list(points.values()), rtol=1e-12)
  plots.plt.close(fig)

  # A resumed run logs the steps after its checkpoint again: the later value is the one drawn.
  resumed = records + [{"step": 20, "train/loss": 2.4}]
  fig = plots.curves_figure(resumed)
  line = next(drawn for ax in fig.axes for drawn in ax.get_lines()
              if drawn.get_label() == "train/loss")
  np.testing.assert_allclose(line.get_ydata(), [3.0, 2.4, 2.0])
  plots.plt.close(fig)

  # The command: default output RUN/curves.png, or an explicit .png path.
  assert cli.main(["plot", "curves", str(run)]) == 0
  assert capsys.readouterr().out.strip() == str(run / "curves.png")
  _png(run / "curves.png")
  cli.main(["plot", "curves", str(run / "metrics.jsonl"), "--out", str(tmp_path / "c.png")])
  _png(tmp_path / "c.png")
  with pytest.raises(ValueError, match="no loss/wer/cer/lr keys"):
    (tmp_path / "empty.jsonl").write_text('{"step": 1, "train/grad_norm": 1.0}\n')
    plots.plot_curves(str(tmp_path / "x.png"), str(tmp_path / "empty.jsonl"))


def test_compare_plot_draws_each_run_and_lines_up_schedules(tmp_path, capsys):
  def run(name, evals):
    folder = tmp_path / name
    folder.mkdir()
    with open(folder / "metrics.jsonl", "w") as f:
      for step, (loss, cer) in evals.items():
        f.write(json.dumps({"step": step, "train/loss": loss + 0.1}) + "\n")
        f.write(json.dumps({"step": step, "eval/loss": loss, "eval/ctc_cer": cer}) + "\n")
    return folder

  short = run("short", {100: (2.0, 0.5), 200: (1.5, 0.4)})
  long_ = run("long", {200: (1.8, 0.45), 400: (1.4, 0.35)})  # twice the steps, same schedule
  runs = {name: plots.read_metrics(str(folder / "metrics.jsonl"))
          for name, folder in (("short", short), ("long", long_))}
  assert plots.compare_keys(runs) == ["eval/loss", "eval/ctc_cer"]  # eval only, losses first
  fig = plots.compare_figure(runs, ["eval/ctc_cer"], x_axis="fraction")
  lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
  np.testing.assert_allclose(lines["short"].get_xdata(), [0.5, 1.0])
  np.testing.assert_allclose(lines["long"].get_xdata(), [0.5, 1.0])
  np.testing.assert_allclose(lines["long"].get_ydata(), [0.45, 0.35])
  plots.plt.close(fig)
  fig = plots.compare_figure(runs, ["eval/loss"])
  np.testing.assert_array_equal(
      {ln.get_label(): ln for ln in fig.axes[0].get_lines()}["long"].get_xdata(), [200, 400])
  plots.plt.close(fig)
  with pytest.raises(ValueError, match="no run logged 'eval/wer'"):
    plots.compare_figure(runs, ["eval/wer"])

  assert cli.main(["plot", "compare", str(short), str(long_), "--x_axis", "fraction",
                   "--out", str(tmp_path / "cmp.png")]) == 0
  assert capsys.readouterr().out.strip() == str(tmp_path / "cmp.png")
  _png(tmp_path / "cmp.png")
  with pytest.raises(UserError, match="two or more RUNs"):
    cli.main(["plot", "compare", str(short), "--out", str(tmp_path / "one.png")])
  with pytest.raises(SystemExit):  # curves draws one run
    cli.main(["plot", "curves", str(short), str(long_)])
