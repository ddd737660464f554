#!/usr/bin/env bash
# The train step before (a checkout of 957d355 in $OLD) and after the depthwise-conv gradient and
# erf-GELU rewrite (this checkout), alternately, twice each, with the same .venv. Usage:
#   git worktree add /tmp/echo_old 957d355
#   OLD=/tmp/echo_old bash docs/benchmarks/depthwise_gelu/side_by_side.sh
#   python -m echo_jax.benchmark --compare docs/benchmarks/depthwise_gelu/old_default_1.json \
#       docs/benchmarks/depthwise_gelu/new_default_1.json
set -u
: "${OLD:?set OLD to a checkout of 957d355}"
NEW=$PWD
PY=$NEW/.venv/bin/python
OUT=$NEW/docs/benchmarks/depthwise_gelu
bench() {  # dir, name, flags
  local dir=$1 name=$2; shift 2
  (cd "$dir" && "$PY" -m echo_jax.benchmark "$@" --out "$OUT/$name.json") > "$OUT/$name.log" 2>&1
}
for round in 1 2; do
  bench "$OLD" old_default_$round --config configs/default.py --what peak,train --steps 8
  bench "$NEW" new_default_$round --config configs/default.py --what peak,train --steps 8
  bench "$OLD" old_small_$round --config configs/base.py --shape small --what peak,train --steps 6
  bench "$NEW" new_small_$round --config configs/base.py --shape small --what peak,train --steps 6
done
# Profiles (op time per module), alternately; the old checkout reports with this op_profile.py
# (reporting only: it adds the per-module table).
cp echo_jax/benchmark/op_profile.py "$OLD/echo_jax/benchmark/op_profile.py"
for round in 1 2; do
  bench "$OLD" profile_old_$round --config configs/default.py --what train --steps 4 \
      --profile "/tmp/profile_old_$round"
  bench "$NEW" profile_new_$round --config configs/default.py --what train --steps 4 \
      --profile "/tmp/profile_new_$round"
done
