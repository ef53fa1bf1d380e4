#!/usr/bin/env bash
# Stops what scripts/start-cluster.sh started (TaskManagers first; their
# job processes end with them).
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${SLUICE_LOG_DIR:-$PWD/log}
shopt -s nullglob
for f in "$LOG_DIR"/taskmanager-*.pid "$LOG_DIR"/jobmanager.pid; do
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then echo "stopped $(basename "$f" .pid) (pid $pid)"; fi
  rm -f "$f"
done
