#!/usr/bin/env bash
# Fail fast before renting/starting a TPU pod run: compile the real train, eval and decode steps
# for the slice on this machine (no TPU needed) and stop when the train step does not fit in HBM
# or does not compile.
#   usage: bash launch/tpu_precheck.sh CONFIG TOPOLOGY [more echo_jax.compile_for flags]
#   e.g.   bash launch/tpu_precheck.sh configs/base.py v5litepod-16 --param_sharding fsdp
# TOPOLOGY is a slice shape (v5e:4x4, v4:2x2x2) or a gcloud accelerator type (v5litepod-16, v4-16).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  echo "usage: bash launch/tpu_precheck.sh CONFIG TOPOLOGY [compile_for flags]" >&2
  exit 2
fi
CONFIG=$1
TOPOLOGY=$2
shift 2

bash launch/install_libtpu.sh
status=0
.venv/bin/python -m echo_jax.compile_for --config "$CONFIG" --topology "$TOPOLOGY" "$@" || status=$?
if [ "$status" -eq 1 ]; then
  echo "[precheck] FAILED: the train step of $CONFIG does not fit or does not compile on" \
       "$TOPOLOGY (table above). Lower data.bucket_batch_sizes, set" \
       "--param_sharding fsdp (config train.param_sharding), or use a larger slice; not starting" \
       "the pod run." >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  echo "[precheck] FAILED: could not check $CONFIG on $TOPOLOGY (error above); not starting the" \
       "pod run." >&2
  exit "$status"
fi
echo "[precheck] OK: $CONFIG fits on $TOPOLOGY"
