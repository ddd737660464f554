#!/usr/bin/env bash
# Installs libtpu (XLA's TPU compiler and runtime) into .venv/libtpu with `pip --target`.
# It stays out of .venv's site-packages on purpose: ordinary CPU/GPU processes never load it (and
# never print its start-up noise); `python -m echo_jax.compile_for` loads it by path to compile the
# train step for TPU slices on a machine without a TPU. Idempotent; safe to rerun.
#   LIBTPU_VERSION  the libtpu release matching the pinned jax (default below)
#   LIBTPU_WHEEL_DIR  optional folder with an already downloaded wheel (offline installs)
set -euo pipefail
cd "$(dirname "$0")/.."

LIBTPU_VERSION=${LIBTPU_VERSION:-0.0.52}  # built for jax/jaxlib 0.10.2 (requirements.txt)
TARGET=.venv/libtpu

if [ -f "$TARGET/libtpu/libtpu.so" ] && [ -d "$TARGET/libtpu-$LIBTPU_VERSION.dist-info" ]; then
  echo "[libtpu] ready: $TARGET (libtpu $LIBTPU_VERSION)"
  exit 0
fi
platform="$(uname -s)-$(uname -m)"
if [ "$platform" != "Linux-x86_64" ]; then
  echo "[libtpu] no libtpu wheel exists for $platform (Linux x86_64 only); TPU compile checks" \
       "(echo_jax.compile_for, its test) are unavailable here"
  exit 0
fi
if [ ! -x .venv/bin/pip ]; then
  echo "[libtpu] .venv is missing: run bash launch/setup.sh first" >&2
  exit 1
fi
echo "[libtpu] installing libtpu $LIBTPU_VERSION into $TARGET (about 140 MB download)"
rm -rf "$TARGET"
find_links=()
[ -n "${LIBTPU_WHEEL_DIR:-}" ] && find_links=(--find-links "$LIBTPU_WHEEL_DIR")
.venv/bin/pip install -q --no-deps --target "$TARGET" "${find_links[@]}" "libtpu==$LIBTPU_VERSION"
echo "[libtpu] ready: $TARGET (libtpu $LIBTPU_VERSION)"
