"""Learning, not just running: the tiny model trained through the real pipeline on the tiny
corpus's 16 training utterances transcribes them by greedy decoding with WER <= 10 %."""

import glob
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from echo_jax import checkpointing
from echo_jax.training import trainer

STEPS = 170


def test_tiny_model_memorises_its_training_utterances(tiny_data_config, tmp_path):
  config = tiny_data_config
  config.data.bucket_frames = (1024,)  # one shape: one compile
  config.data.bucket_batch_sizes = (8,)
  config.data.eval_batch_size = 8
  config.train.num_steps = STEPS
  config.train.warmup_steps = 20
  config.train.learning_rate = 3e-3
  config.train.log_every = 10
  config.train.checkpoint_every = STEPS // 2
  config.eval.every = STEPS // 2  # two evaluated checkpoints for keep-best-by-WER to choose from
  config.eval.split = "train"
  config.eval.max_examples = -1
  workdir = str(tmp_path / "run")

  summary = trainer.train_and_evaluate(config, workdir)

  assert summary["step"] == STEPS and not summary["preempted"]
  assert summary["compiles"]["train_step"] == 1
  assert summary["train_loss"] < 0.05
  result = summary["eval"]
  assert result["num_examples"] == 16.0  # every training utterance, each once
  assert result["wer"] <= 0.10, result
  assert result["cer"] <= 0.10, result
  assert result["token_accuracy"] > 0.98
  # The eval is in metrics.jsonl and attached to the checkpoint used for keep-best-by-WER.
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  assert any(r.get("eval/wer") == result["wer"] for r in records)
  evals = {r["step"]: r["eval/wer"] for r in records if "eval/wer" in r}
  assert sorted(evals) == [STEPS // 2, STEPS] and evals[STEPS // 2] != evals[STEPS]
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert losses[-1] < losses[0] / 20
  # ...and in the TensorBoard event files (float32 there).
  import tensorflow as tf
  tb_wer = [value.simple_value
            for path in glob.glob(os.path.join(workdir, "tensorboard", "events*"))
            for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value if value.tag == "eval/wer"]
  np.testing.assert_allclose(tb_wer, [evals[s] for s in sorted(evals)], atol=1e-7)
  ckpt = checkpointing.Checkpointer(checkpointing.checkpoint_dir(workdir), 3, 1)
  best = min(evals, key=evals.get)
  assert ckpt.best_step() == best
  assert {s: ckpt.metrics(s)["wer"] for s in evals} == evals
  ckpt.close()
  # The run keeps its tokenizer, so inference loads it from the workdir alone.
  from echo_jax.inference import loading
  from echo_jax.data.prepare import ensure_prepared
  copied = os.path.join(workdir, "tokenizer.json")
  with open(copied, "rb") as a, open(ensure_prepared(config).tokenizer_path, "rb") as b:
    assert a.read() == b.read()
  run = loading.load_run(workdir)
  assert run.tokenizer.path == copied and run.step == STEPS
  # --config.init_from starts a new run from this run's best parameters: with a negligible learning
  # rate its one-step checkpoint holds those parameters (a fresh init would differ everywhere).
  source = checkpointing.restore_params(workdir)
  follow = tiny_data_config
  follow.init_from = workdir
  follow.train.num_steps = 1
  follow.train.learning_rate = 1e-12
  follow.train.checkpoint_every = 1
  follow.eval.every = 0
  follow_dir = str(tmp_path / "follow")
  assert trainer.train_and_evaluate(follow, follow_dir)["step"] == 1
  started = checkpointing.restore_params(follow_dir)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-8),
                         source, started)
  # ...with a fresh optimizer: after one step Adam's count is 1 and every moment is one gradient's,
  # mu = (1 - b1) g and nu = (1 - b2) g^2, so mu^2 / nu = (1 - b1)^2 / (1 - b2) wherever g != 0
  # (the source run's moments, carried over, would hold 170 steps of history).
  train = ocp.StandardCheckpointer().restore(
      os.path.join(checkpointing.checkpoint_dir(follow_dir), "1", "train"))
  adam = [s for s in jax.tree_util.tree_leaves(train["opt_state"], is_leaf=lambda x: isinstance(
      x, dict) and "mu" in x)][0]
  assert int(adam["count"]) == 1
  b1, b2 = follow.train.b1, follow.train.b2
  mu = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(adam["mu"])])
  nu = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(adam["nu"])])
  moving = nu > 1e-20
  assert moving.mean() > 0.5
  np.testing.assert_allclose(mu[moving] ** 2 / nu[moving], (1 - b1) ** 2 / (1 - b2), rtol=1e-3)
