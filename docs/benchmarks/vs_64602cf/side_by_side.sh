#!/usr/bin/env bash
# Benchmarks of commit 64602cf (a checkout in $OLD) and of this checkout, run alternately with the
# same .venv: the old code runs the reference architecture as its configs/default.py under
# --shape; here configs/base.py has the same model settings (no conv2d front-end, no conv
# modules, no CTC head). Usage, from the repository root:
#   git worktree add /tmp/echo_64602cf 64602cf
#   OLD=/tmp/echo_64602cf bash docs/benchmarks/vs_64602cf/side_by_side.sh
#   python -m echo_jax.benchmark --compare docs/benchmarks/vs_64602cf/old_X.json \
#       docs/benchmarks/vs_64602cf/new_X.json
set -u
: "${OLD:?set OLD to a checkout of 64602cf}"
NEW=$PWD
PY=$NEW/.venv/bin/python
OUT=$NEW/docs/benchmarks/vs_64602cf
old() { (cd "$OLD" && "$PY" -m echo_jax.benchmark --config configs/default.py "$@"); }
new() { (cd "$NEW" && "$PY" -m echo_jax.benchmark --config configs/base.py "$@"); }
run() {  # name, then the old flags (dashes); the new CLI spells them with underscores
  local name=$1; shift
  old "$@" --out "$OUT/old_$name.json"
  local args=()
  for a in "$@"; do args+=("${a//-batches/_batches}"); done
  new "${args[@]//decode-repeats/decode_repeats}" --out "$OUT/new_$name.json"
}
run small_train --shape small --what peak,train --steps 6
run seed_train --shape seed --what peak,train --steps 3 --warmup 1
run small_decode --shape small --what decode --decode-batches 1,4,8 --beam-batches 1,4,8 \
    --decode-repeats 3
