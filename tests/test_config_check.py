"""Config validation: shipped configs pass; bad fields fail at start naming the field and the fix."""

import importlib

import pytest

from echo_jax.config import check as config_check
from echo_jax.config.check import ConfigError


def _config(name="tiny"):
  return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name", ["tiny", "default", "base", "ablation"])
def test_shipped_configs_are_valid(name):
  config_check.validate_config(_config(name))


@pytest.mark.parametrize("field,value,expect", [
    ("model.n_mels", 40, "config.model.n_mels=40 is invalid: it must equal config.data.n_mels=32"),
    ("model.d_model", 63, "config.model.d_model=63"),
    ("model.theta_mode", "bogus", "config.model.theta_mode='bogus'"),
    ("data.bucket_batch_sizes", (8, 8), "one global batch size per bucket edge"),
    ("data.bucket_frames", (512, 256, 1024), "strictly increasing"),
    ("data.max_target_length", 100, "<= config.model.text_ctx=64"),
    ("data.bucket_target_lengths", (32, 64), "one token length per bucket edge (3 edges"),
    ("data.bucket_target_lengths", (48, 32, 64), "non-decreasing lengths of at least 3"),
    ("data.bucket_target_lengths", (16, 32, 48), "must equal data.max_target_length=64"),
    ("data.bucket_frames", (256, 512, 4096), "exceeds config.model.audio_ctx=512"),
    ("data.tokenizer", "bytes", "config.data.tokenizer='bytes'"),
    ("data.shortest_first_epochs", -1, "config.data.shortest_first_epochs=-1"),
    ("data.f0_source", "random", "config.data.f0_source='random' is invalid: use one of"),
    ("train.learning_rate", 0.0, "config.train.learning_rate=0.0"),
    ("train.param_sharding", "zero3", "config.train.param_sharding='zero3'"),
    ("train.b2", 1.0, "config.train.b2=1.0"),
    ("train.edge_silence.probability", 1.5, "config.train.edge_silence.probability=1.5"),
    ("train.edge_silence.max_frames", -1, "config.train.edge_silence.max_frames=-1"),
    ("train.best_metric", "loss", "config.train.best_metric='loss' is invalid: use one of"),
    ("train.best_metric", "ctc_cer", "the CTC error rates need a CTC head"),
    ("train.intermediate_ctc_weight", 0.5, "config.train.intermediate_ctc_weight=0.5"),
    ("train.frequency_warp.max_factor", 0.6, "config.train.frequency_warp.max_factor=0.6"),
    ("decode.lm_blank_penalty", 1000.0, "config.decode.lm_blank_penalty=1000.0"),
    ("eval.split", "dev", "config.eval.split='dev'"),
    ("decode.max_length", 65, "config.decode.max_length=65"),
    ("decode.lm_path", "auto", "the LM search decodes the CTC head's output"),
    ("decode.lm_path", None, "use '' (no LM), 'auto' or the path of an ARPA file"),
    ("decode.lm_beam_size", 0, "config.decode.lm_beam_size=0"),
    ("decode.lm_weight", -1.0, "config.decode.lm_weight=-1.0"),
    ("decode.trim_silence_db", -3.0, "config.decode.trim_silence_db=-3.0"),
    ("distributed.process_id", 2, "config.distributed.process_id=2"),
    ("init_from", "/nonexistent/run", "config.init_from='/nonexistent/run' is invalid: no such path"),
])
def test_bad_field_is_named(field, value, expect):
  config = _config()
  *parts, name = field.split(".")
  target = config
  for part in parts:
    target = target[part]
  setattr(target, name, value)
  with pytest.raises(ConfigError) as err:
    config_check.validate_config(config)
  assert expect in str(err.value)


def test_lm_search_needs_character_targets():
  config = _config()
  config.model.ctc_head = True
  config.decode.lm_path = "auto"
  config_check.validate_config(config)  # a CTC head and characters: fine
  config.data.tokenizer = "sentencepiece"
  with pytest.raises(ConfigError, match="spells words with characters"):
    config_check.validate_config(config)


def test_unresolved_vocab_is_accepted_but_a_tiny_one_is_not():
  config = _config()
  assert config.model.vocab_size == -1
  config_check.validate_config(config)
  config.model.vocab_size = 3
  with pytest.raises(ConfigError, match="config.model.vocab_size=3"):
    config_check.validate_config(config)


def test_indivisible_batch_names_bucket_and_device_count():
  config = _config()
  config.data.bucket_batch_sizes = (8, 6, 8)
  config_check.validate_batch_sizes(config, 2)
  with pytest.raises(ConfigError) as err:
    config_check.validate_batch_sizes(config, 4)
  message = str(err.value)
  assert "bucket 512" in message and "4 devices" in message and "multiples of 4" in message
  config.data.bucket_batch_sizes = (8, 8, 8)
  config.data.eval_batch_size = 6
  with pytest.raises(ConfigError, match="config.data.eval_batch_size=6 .* 4 devices"):
    config_check.validate_batch_sizes(config, 4)


def test_fsdp_rule_threshold_is_checked():
  config = _config()
  config.train.param_sharding = "fsdp"
  config_check.validate_config(config)
  config.train.fsdp_min_size = -1
  with pytest.raises(ConfigError, match="config.train.fsdp_min_size=-1"):
    config_check.validate_config(config)


def test_train_and_evaluate_rejects_indivisible_batch_before_any_work(tmp_path):
  from echo_jax.training import trainer
  config = _config()
  config.data.bucket_batch_sizes = (8, 8, 6)  # 8 fake devices in the tests
  config.data.root = str(tmp_path / "data")
  with pytest.raises(ConfigError, match="bucket 1024 is not divisible by the 8 devices"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


def test_cli_names_the_bad_field(repo_root, tmp_path):
  import subprocess
  import sys
  result = subprocess.run(
      [sys.executable, "-m", "echo_jax.train", "--config", str(repo_root / "configs" / "tiny.py"),
       "--workdir", str(tmp_path / "run"), "--config.model.d_model=63"],
      cwd=repo_root, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "config.model.d_model=63 is invalid" in result.stderr
  assert "divisible by num_heads" in result.stderr
