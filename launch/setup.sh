#!/usr/bin/env bash
# Installs everything echo_jax needs on a fresh Debian machine, into ./.venv:
# the TTS engines and text used to synthesise the offline corpus, then the pinned Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
                 sox fortunes fortunes-min wordnet-base)
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9  # installs the pinned packages; nothing imports it
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
if ! cmp -s requirements.txt .venv/.requirements.installed; then
  echo "[setup] installing Python packages (1-2 minutes on a fresh machine)"
  .venv/bin/pip install -q --upgrade pip "setuptools<81" wheel
  # uv resolves and installs the same pinned set in parallel: 1.3 min vs 5.6 min for pip alone
  # on a fresh 2-core machine. pip stays the fallback (no uv wheel, or an index only pip knows).
  if ! { .venv/bin/pip install -q "uv==$UV_VERSION" &&
         .venv/bin/python -m uv pip install -q --python .venv/bin/python -r requirements.txt; }; then
    echo "[setup] uv failed; installing with pip instead"
    .venv/bin/pip install -q -r requirements.txt
  fi
  cp requirements.txt .venv/.requirements.installed
fi
if ! cmp -s pyproject.toml .venv/.project.installed; then
  # The package itself, editable, with its console scripts (echo-train, echo-evaluate, ...).
  .venv/bin/pip install -q --no-deps --no-build-isolation -e .
  cp pyproject.toml .venv/.project.installed
fi
bash launch/install_libtpu.sh  # .venv/libtpu: compile for TPU slices without a TPU
echo "[setup] ready: .venv/bin/python"
