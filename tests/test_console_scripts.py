"""The package installs (`pip install -e .`, done by launch/setup.sh) with one console script per
command; each script resolves to the same entry point as `python -m` and reports a user error in
one line with exit status 2."""

import importlib
import pathlib
import subprocess
import sys
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _scripts():
  with open(REPO / "pyproject.toml", "rb") as f:
    return tomllib.load(f)["project"]["scripts"]


def test_every_script_names_a_callable_of_a_command_module():
  scripts = _scripts()
  assert {"echo-train", "echo-prepare", "echo-evaluate", "echo-transcribe", "echo-diagnostics",
          "echo-benchmark", "echo-compile-for", "echo-synth-corpus",
          "echo-ablation", "echo-lm-build", "echo-lm-tune"} == set(scripts)
  for target in scripts.values():
    module, name = target.split(":")
    entry = getattr(importlib.import_module(module), name)
    assert callable(entry), target
    # `python -m module` runs the same entry point.
    source = pathlib.Path(importlib.import_module(module).__file__).read_text()
    assert f'if __name__ == "__main__":\n  {name}()' in source, target


def test_installed_script_reports_a_user_error_in_one_line(tmp_path):
  script = pathlib.Path(sys.executable).parent / "echo-evaluate"
  assert script.exists(), "run launch/setup.sh: it installs the package with its scripts"
  result = subprocess.run([str(script), "--workdir", str(tmp_path / "missing"), "--split", "test"],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "missing" in errors[0] and "Traceback" not in result.stderr
