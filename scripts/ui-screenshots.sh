#!/usr/bin/env bash
# Regenerates the web UI screenshots in docs/screenshots (shown in the
# README): runs the web UI test (engine/cluster/tests/web_ui.rs) against a
# real cluster and the local Kafka broker, with headless Chromium saving a
# screenshot of every view it checks.
#
# Usage: scripts/ui-screenshots.sh
# Needs what the test command installs (scripts/install-deps.sh: Chromium)
# and starts (scripts/kafka-local.sh start).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-cargo-target}"
started=""
if ! scripts/kafka-local.sh status >/dev/null 2>&1; then
  scripts/kafka-local.sh start
  started=1
fi
trap '[ -n "$started" ] && scripts/kafka-local.sh stop >/dev/null 2>&1 || true' EXIT
out="$PWD/docs/screenshots"
mkdir -p "$out"
SLUICE_SCREENSHOTS_DIR="$out" cargo test --workspace --test web_ui -- --nocapture
ls -l "$out"
