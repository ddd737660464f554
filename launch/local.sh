#!/usr/bin/env bash
# Starts P training processes on this machine, each with D CPU devices, joined by
# jax.distributed over gloo collectives: the same code path as a TPU pod or a GPU cluster.
#
#   launch/local.sh P D --config configs/tiny.py --workdir runs/local [--config.x=y ...]
#
# Process 0 prints to the console; process i>0 logs to <workdir>/process_<i>.log.
# Env: PORT (coordinator port; default: a free one), PYTHON (default .venv/bin/python),
# XLA_FLAGS (kept; each process's device count is appended, so it wins over one given there).
# SIGTERM and SIGINT (Ctrl-C) reach every process as SIGTERM: they save a checkpoint and exit.
# (SIGINT itself would not do: background children of a script start with SIGINT ignored.)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  echo "usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS --config FILE --workdir DIR [--config.x=y ...]" >&2
  exit 2
fi
NUM_PROCESSES=$1
DEVICES=$2
shift 2
PYTHON=${PYTHON:-.venv/bin/python}

WORKDIR=""
prev=""
for arg in "$@"; do
  case "$arg" in
    --workdir=*) WORKDIR=${arg#--workdir=} ;;
  esac
  if [ "$prev" = "--workdir" ]; then WORKDIR=$arg; fi
  prev=$arg
done
if [ -z "$WORKDIR" ]; then
  echo "$0: --workdir is required" >&2
  exit 2
fi
mkdir -p "$WORKDIR"

PORT=${PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

# XLA reads its flags in order and the last of a repeated flag wins.
XLA_FLAGS_PER_PROCESS="${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$DEVICES"

pids=()
forward() {
  for pid in "${pids[@]}"; do kill -s "$1" "$pid" 2>/dev/null || true; done
}
trap 'forward TERM' TERM
trap 'forward TERM' INT

for ((i = 0; i < NUM_PROCESSES; i++)); do
  args=("$@"
        --config.distributed.initialize=True
        --config.distributed.coordinator_address="127.0.0.1:$PORT"
        --config.distributed.num_processes="$NUM_PROCESSES"
        --config.distributed.process_id="$i")
  if [ "$i" -eq 0 ]; then
    JAX_PLATFORMS=cpu XLA_FLAGS="$XLA_FLAGS_PER_PROCESS" \
      "$PYTHON" -m echo_jax.train "${args[@]}" &
  else
    JAX_PLATFORMS=cpu XLA_FLAGS="$XLA_FLAGS_PER_PROCESS" \
      "$PYTHON" -m echo_jax.train "${args[@]}" > "$WORKDIR/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done

# Wait for all; when one process fails, the others would block in collectives: stop them.
# Polled rather than `wait -n`, which can miss a process that exited before it was called (one
# that fails at start-up) and then waits forever for the others.
status=0
running=("${pids[@]}")
while [ "${#running[@]}" -gt 0 ]; do
  still=()
  for pid in "${running[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then still+=("$pid"); continue; fi
    set +e
    wait "$pid"
    rc=$?
    set -e
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
      status=$rc
      echo "$0: a training process exited with status $rc; stopping the others" >&2
      forward KILL
    fi
  done
  running=("${still[@]+"${still[@]}"}")
  if [ "${#running[@]}" -gt 0 ]; then sleep 0.2; fi
done
exit "$status"
