"""Config files: get_config() runs; a missing file or function is named."""

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

