"""Test set-up: 8 fake CPU devices (set before jax is imported), one compilation cache for the
session and shared fixtures."""

import os
import shutil
import tempfile

import xla_flags  # tests/ is on sys.path (this file's folder)

# Compile-speed flags (tests/xla_flags.py): most tests compile far more than they run.
os.environ.setdefault("XLA_FLAGS", xla_flags.cpu_devices(8))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# `import tensorflow` (tf.data, in every trainer the tests start) also imports Keras 3 eagerly,
# ~2.7 s of CPU per process of the ~10 s import; nothing here uses tf.keras. With this switch TF
# looks for tf_keras instead, which is not installed, and skips that import.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Many tests (and the trainers they start as subprocesses, which inherit the environment) compile
# the same tiny-model programs; a persistent cache shared by the whole session compiles each once.
# Under pytest-xdist the controller loads this file first, so its workers inherit the one cache.
# Programs are keyed by their HLO, so a hit is the executable a fresh compile would give. Set
# JAX_COMPILATION_CACHE_DIR yourself to keep the cache across sessions.
_SESSION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _SESSION_CACHE = tempfile.mkdtemp(prefix="echo_jax_tests_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO


# ------------------------------------------------------------------------------------------------
# Data fixtures: one tiny synthetic corpus and one prepared TFDS dataset per test session.

TINY_CORPUS_UTTERANCES = 20


def _tiny_config():
  import importlib.util

  path = REPO / "configs" / "tiny.py"
  spec = importlib.util.spec_from_file_location("tiny_config_for_data", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.data.synth_num_utterances = TINY_CORPUS_UTTERANCES
  return config


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> str:
  """A 20-utterance synthetic corpus over all engines (folder with manifest.jsonl + wavs), read
  only. Under pytest-xdist the workers of one run share it (their base temp folders have one
  parent): the first synthesises it (~20 s) while holding a lock, the others find it complete."""
  import fcntl

  from echo_jax.data.prepare import ensure_corpus

  shared = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = shared.parent
  config = _tiny_config()
  config.data.corpus_dir = str(shared / "tiny_corpus")
  with open(shared / "tiny_corpus.lock", "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    return ensure_corpus(config)


@pytest.fixture(scope="session")
def _tiny_prepared_session(tmp_path_factory, tiny_corpus):
  from echo_jax.data.prepare import ensure_prepared

  config = _tiny_config()
  config.data.root = str(tmp_path_factory.mktemp("tiny_data"))
  config.data.corpus_dir = tiny_corpus
  config.data.store_waveform = True  # lets tests compare on-the-fly with stored features
  config.data.prepare_workers = 2
  config.data.bucket_batch_sizes = (4, 4, 2)  # the 16 train utterances fill several batches
  return config, ensure_prepared(config)


@pytest.fixture(scope="session")
def tiny_prepared(_tiny_prepared_session):
  """PreparedData of the tiny config on `tiny_corpus` (features + waveforms), built once."""
  return _tiny_prepared_session[1]


@pytest.fixture
def tiny_data_config(_tiny_prepared_session):
  """A fresh, mutable copy of the config `tiny_prepared` was made with."""
  import ml_collections

  return ml_collections.ConfigDict(_tiny_prepared_session[0].to_dict())


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _SESSION_CACHE:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
