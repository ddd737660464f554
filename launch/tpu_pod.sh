#!/usr/bin/env bash
# Copies this repository to every worker of a TPU VM, installs it, and starts the same training
# command on all workers at once (one process per worker; JAX joins them into one job).
#
#   TPU_NAME=echo ZONE=us-central2-b ACCELERATOR=v4-16 launch/tpu_pod.sh CONFIG WORKDIR [--config.x=y ...]
#   e.g. launch/tpu_pod.sh configs/base.py gs://my-bucket/echo/base
#
# Steps: (0) compile the train step for ACCELERATOR here (launch/tpu_precheck.sh; no TPU
# needed) and stop if it does not fit (SKIP_PRECHECK=1 skips); (1) copy the repo (without
# .venv/data/runs) to ~/echo_jax on all workers; (2) run
# launch/setup.sh and install the TPU build of jax there; (3) start launch/run_worker.sh on all
# workers in the background (log: ~/echo_jax/train.log on each worker). Re-running resumes from
# the workdir's latest checkpoint. Env: PROJECT (optional), JAX_TPU_SPEC (pip spec for TPU jax,
# default the pinned version), SKIP_SETUP=1 to only (re)start training.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TPU_NAME:?set TPU_NAME}"
: "${ZONE:?set ZONE}"
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG WORKDIR [--config.x=y ...]" >&2
  exit 2
fi
CONFIG=$1
WORKDIR=$2
shift 2
project_args=()
[ -n "${PROJECT:-}" ] && project_args=(--project "$PROJECT")
JAX_VERSION=$(sed -n 's/^jax==\([^ ]*\).*/\1/p' requirements.txt)
JAX_TPU_SPEC=${JAX_TPU_SPEC:-"jax[tpu]==$JAX_VERSION"}
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${project_args[@]}" --zone "$ZONE" --worker=all \
    --command "$1"
}

if [ "${SKIP_PRECHECK:-0}" != "1" ]; then
  : "${ACCELERATOR:?set ACCELERATOR (e.g. v4-32) for the compile check, or SKIP_PRECHECK=1}"
  overrides=()
  for arg in "$@"; do
    case "$arg" in --config.*=*) overrides+=("$arg") ;; esac
  done
  bash launch/tpu_precheck.sh "$CONFIG" "$ACCELERATOR" --steps train "${overrides[@]}"
fi

if [ "${SKIP_SETUP:-0}" != "1" ]; then
  bundle=$(mktemp -d)/echo_jax.tar.gz
  tar --exclude=.venv --exclude=./data --exclude=./runs --exclude=.git -czf "$bundle" .
  gcloud compute tpus tpu-vm scp "$bundle" "$TPU_NAME":echo_jax.tar.gz "${project_args[@]}" \
    --zone "$ZONE" --worker=all
  ssh_all "mkdir -p ~/echo_jax && tar -xzf ~/echo_jax.tar.gz -C ~/echo_jax && cd ~/echo_jax && \
    bash launch/setup.sh && .venv/bin/pip install -q '$JAX_TPU_SPEC' \
      -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
fi

quoted_args=$(printf " %q" "$@")
ssh_all "cd ~/echo_jax && nohup launch/run_worker.sh $(printf %q "$CONFIG") \
  $(printf %q "$WORKDIR")$quoted_args > train.log 2>&1 < /dev/null & echo started on \$(hostname)"
echo "training started on all workers of $TPU_NAME; follow worker 0 with:"
echo "  gcloud compute tpus tpu-vm ssh $TPU_NAME --zone $ZONE --worker=0 --command 'tail -f ~/echo_jax/train.log'"
