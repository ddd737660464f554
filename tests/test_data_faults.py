"""Damaged prepared data names the file and the rebuild: a corrupt ArrayRecord shard, a damaged
index (rebuilt from the records, the damaged copy kept), a broken dataset_info.json, and a workdir
tokenizer that no longer matches the prepared data."""

import json
import os
import shutil

import ml_collections
import pytest

from echo_jax.training import run_dir
from echo_jax.data import pipeline
from echo_jax.data.prepare import DamagedDataError, ensure_prepared
from echo_jax.errors import UserError


@pytest.fixture
def copied(_tiny_prepared_session, tmp_path):
  """A private copy of the tiny prepared data (config, prepared) that a test may damage."""
  config = ml_collections.ConfigDict(_tiny_prepared_session[0].to_dict())
  shutil.copytree(config.data.root, tmp_path / "data")
  config.data.root = str(tmp_path / "data")
  return config, ensure_prepared(config)


def _shards(prepared, split):
  return sorted(os.path.join(prepared.builder_dir, n) for n in os.listdir(prepared.builder_dir)
                if f"-{split}.array_record" in n)


def test_a_corrupt_shard_names_the_file_and_the_rebuild(copied):
  config, prepared = copied
  shard = _shards(prepared, "train")[0]
  size = os.path.getsize(shard)
  with open(shard, "r+b") as f:  # overwrite the middle: the records' chunks, not the footer
    f.seek(size // 4)
    f.write(os.urandom(size // 2))
  iterator = pipeline.make_train_iterator(config, prepared)
  with pytest.raises(DamagedDataError) as raised:
    for _ in range(4 * len(_shards(prepared, "train")) + 8):  # more than an epoch
      next(iterator)
  message = str(raised.value)
  assert shard in message and "does not read" in message
  assert f"rm -r {prepared.builder_dir}" in message
  assert len(message.splitlines()) == 1


def test_a_damaged_index_is_rebuilt_from_the_records_and_kept(copied):
  _, prepared = copied
  path = os.path.join(prepared.builder_dir, "echo_index.json")
  with open(path) as f:
    original = json.load(f)
  with open(path, "w") as f:
    f.write(json.dumps(original)[:50])  # truncated
  rebuilt = prepared.index()
  assert rebuilt["splits"] == original["splits"]
  assert os.path.exists(path + ".damaged")
  with open(path) as f:
    assert json.load(f)["splits"] == original["splits"]


def test_a_broken_dataset_info_names_the_file(copied):
  config, prepared = copied
  info = os.path.join(prepared.builder_dir, "dataset_info.json")
  with open(info, "w") as f:
    f.write("{broken")
  with pytest.raises(DamagedDataError, match="dataset_info.json") as raised:
    ensure_prepared(config)
  assert f"rm -r {prepared.builder_dir}" in str(raised.value)


def test_a_workdir_tokenizer_that_differs_from_the_data_is_an_error(copied, tmp_path):
  _, prepared = copied
  workdir = tmp_path / "run"
  workdir.mkdir()
  run_dir.copy_tokenizer(prepared.tokenizer_path, str(workdir))  # first start: copied
  run_dir.copy_tokenizer(prepared.tokenizer_path, str(workdir))  # resume, same data: fine
  target = workdir / ("tokenizer" + os.path.splitext(prepared.tokenizer_path)[1])
  target.write_text(target.read_text().replace("a", "b", 1))
  with pytest.raises(UserError, match="differs from the prepared data"):
    run_dir.copy_tokenizer(prepared.tokenizer_path, str(workdir))
