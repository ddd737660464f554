#!/usr/bin/env bash
# Creates a Cloud TPU VM (single host or pod slice) for echo_jax.
#
#   TPU_NAME=echo ZONE=us-central2-b ACCELERATOR=v4-16 launch/tpu_create.sh [--spot]
#
# Env: TPU_NAME, ZONE, ACCELERATOR (e.g. v4-8, v4-32, v5litepod-16), RUNTIME (TPU VM image),
#      PROJECT (optional; default: gcloud's configured project).
# Extra arguments go to `gcloud compute tpus tpu-vm create` (e.g. --spot, --preemptible).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}"
: "${ZONE:?set ZONE}"
ACCELERATOR=${ACCELERATOR:-v4-8}
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
project_args=()
[ -n "${PROJECT:-}" ] && project_args=(--project "$PROJECT")

gcloud compute tpus tpu-vm create "$TPU_NAME" "${project_args[@]}" --zone "$ZONE" \
  --accelerator-type "$ACCELERATOR" --version "$RUNTIME" "$@"
gcloud compute tpus tpu-vm describe "$TPU_NAME" "${project_args[@]}" --zone "$ZONE" \
  --format="value(state,acceleratorType)"
