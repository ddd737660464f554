"""Config files and --set overrides: literals parse, strings stay strings, typos are errors."""

import pytest

from echo_jax.config import files as config_files


def test_load_config_file_runs_get_config(repo_root):
  config = config_files.load_config_file(str(repo_root / "configs" / "tiny.py"))
  assert config.model.d_model == 64 and config.data.n_mels == config.model.n_mels


def test_missing_file_and_missing_get_config_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.py"):
    config_files.load_config_file(str(tmp_path / "nope.py"))
  empty = tmp_path / "empty.py"
  empty.write_text("x = 1\n")
  with pytest.raises(ValueError, match="no get_config"):
    config_files.load_config_file(str(empty))


def test_overrides_parse_literals_and_reject_unknown_fields(repo_root):
  config = config_files.load_config_file(str(repo_root / "configs" / "tiny.py"))
  out = config_files.apply_overrides(
      config, ["train.param_sharding=fsdp", "data.bucket_frames=(64, 128)", "init_from=runs/x",
               "train.learning_rate=1e-4"])
  assert out is config
  assert config.train.param_sharding == "fsdp" and tuple(config.data.bucket_frames) == (64, 128)
  assert config.init_from == "runs/x" and config.train.learning_rate == 1e-4
  with pytest.raises(ValueError, match="train.param_shardin"):
    config_files.apply_overrides(config, ["train.param_shardin=fsdp"])
  with pytest.raises(ValueError, match="no field 'nosection.x'"):
    config_files.apply_overrides(config, ["nosection.x=1"])
  with pytest.raises(ValueError, match="section.field=value"):
    config_files.apply_overrides(config, ["model.d_model"])
