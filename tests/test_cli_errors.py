"""Every command fails on a user error with one line `error: <what, where, fix>` and exit status 2;
--debug brings the traceback back."""

import json
import subprocess
import sys

import pytest

from echo_jax import benchmark, evaluate, transcribe
from echo_jax.data import synth_corpus
from echo_jax.diagnostics import __main__ as diagnostics_cli
from echo_jax.errors import EXIT_USER_ERROR, UserError, run_cli


def _one_error_line(stderr: str, *needles: str) -> str:
  lines = [line for line in stderr.splitlines() if line.strip()]
  errors = [line for line in lines if line.startswith("error: ")]
  assert len(errors) == 1, stderr
  assert "Traceback" not in stderr, stderr
  for needle in needles:
    assert needle in errors[0], (needle, errors[0])
  return errors[0]


@pytest.mark.parametrize("main,argv,needles", [
    (evaluate.main, ["--workdir", "{tmp}/no_run", "--split", "test"], ["no_run", "config.py"]),
    (transcribe.main, ["--workdir", "{tmp}/no_run", "{tmp}/empty"], ["no audio files", "empty"]),
    (diagnostics_cli.main, ["plot", "curves"], ["plot curves needs"]),
    (benchmark.main, [], ["--config is required"]),
    (synth_corpus.main, ["--out", "{tmp}/corpus", "--num_utterances", "0"],
     ["num_utterances must be >= 1"]),
])
def test_user_errors_are_one_line_with_exit_2(main, argv, needles, tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
  assert run_cli(main, argv) == EXIT_USER_ERROR
  _one_error_line(capsys.readouterr().err, *needles)
  with pytest.raises(UserError):  # --debug: the exception (and its traceback) propagates
    run_cli(main, argv + ["--debug"])


def test_evaluate_names_a_missing_checkpoint_step(tmp_path, capsys):
  from random_runs import save_random_run, tiny_config
  config = tiny_config()
  config.model.vocab_size = 40
  save_random_run(config, str(tmp_path / "run"), step=5)
  code = run_cli(evaluate.main, ["--workdir", str(tmp_path / "run"), "--checkpoint", "7",
                                 "--split", "test"])
  assert code == EXIT_USER_ERROR
  _one_error_line(capsys.readouterr().err, "checkpoint step 7", "[5]", "--checkpoint")


def _command(repo_root, module, *args, env=None):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=repo_root,
                        capture_output=True, text=True, timeout=300, env=env)


def test_train_bad_field_is_one_line(repo_root, tmp_path):
  result = _command(repo_root, "echo_jax.train", "--config", str(repo_root / "configs/tiny.py"),
                    "--workdir", str(tmp_path / "run"), "--config.model.d_model=63")
  assert result.returncode == EXIT_USER_ERROR, result.stderr
  _one_error_line(result.stderr, "config.model.d_model=63 is invalid", "divisible by num_heads")


def test_prepare_bad_manifest_line_is_one_line(repo_root, tmp_path):
  manifest = tmp_path / "manifest.jsonl"
  rows = [json.dumps({"path": f"a{i}.wav", "text": "hello", "split": "train"}) for i in range(3)]
  rows.insert(1, "{this is not json")
  manifest.write_text("\n".join(rows) + "\n")
  result = _command(repo_root, "echo_jax.data.prepare", "--config",
                    str(repo_root / "configs/tiny.py"), "--config.data.dataset=manifest",
                    f"--config.data.manifest_path={manifest}",
                    f"--config.data.root={tmp_path / 'data'}")
  assert result.returncode == EXIT_USER_ERROR, result.stderr
  _one_error_line(result.stderr, "manifest.jsonl:2", "not JSON")
