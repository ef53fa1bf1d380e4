#!/usr/bin/env bash
# Starts a standalone Sluice cluster on this host: one JobManager and N
# TaskManagers (default 2), ports and slots from the configuration file
# ($SLUICE_CONF_DIR/sluice.yaml or ./sluice.yaml, or --config FILE).
#
#   scripts/start-cluster.sh [N] [--config FILE] [-D key=value ...]
#
# Logs and pids go to ${SLUICE_LOG_DIR:-./log}; stop with scripts/stop-cluster.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
N=2
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then N=$1; shift; fi
LOG_DIR=${SLUICE_LOG_DIR:-$PWD/log}
mkdir -p "$LOG_DIR"
SLUICE=${SLUICE_BIN:-}
if [[ -z "$SLUICE" ]]; then
  cargo build --release --workspace --bins >&2
  SLUICE="${CARGO_TARGET_DIR:-target}/release/sluice"
fi
nohup "$SLUICE" "$@" jobmanager >"$LOG_DIR/jobmanager.log" 2>&1 &
echo $! >"$LOG_DIR/jobmanager.pid"
for i in $(seq 1 "$N"); do
  # Each TaskManager serves /metrics on its own port when a base port is set.
  extra=()
  if [[ -n "${SLUICE_TM_METRICS_BASE_PORT:-}" ]]; then
    extra=(-D "metrics.reporter.prom.port=$((SLUICE_TM_METRICS_BASE_PORT + i - 1))")
  fi
  nohup "$SLUICE" "$@" "${extra[@]}" -D "taskmanager.resource-id=taskmanager-$i" taskmanager \
    >"$LOG_DIR/taskmanager-$i.log" 2>&1 &
  echo $! >"$LOG_DIR/taskmanager-$i.pid"
done
echo "Started a JobManager and $N TaskManagers; logs in $LOG_DIR"
echo "Web UI and REST API: see the first line of $LOG_DIR/jobmanager.log"
