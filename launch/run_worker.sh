#!/usr/bin/env bash
# One training process on a TPU VM worker (or any host): the command every worker of a pod runs.
#
#   launch/run_worker.sh CONFIG WORKDIR [--config.x=y ...]
#
# On a multi-worker TPU VM JAX finds the pod itself (distributed.initialize=True, no coordinator).
# WORKDIR may be gs://bucket/path: checkpoints (orbax), metrics and TensorBoard events go there.
# The dataset is prepared on each worker's local disk under data/ (process 0 first).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
CONFIG=$1
WORKDIR=$2
shift 2
exec .venv/bin/python -m echo_jax.train --config "$CONFIG" --workdir "$WORKDIR" \
  --config.distributed.initialize=True "$@"
