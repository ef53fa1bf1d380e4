#!/usr/bin/env bash
# The project's test command (README, .ci/run). On a fresh machine it sets up
# everything the tests use, then builds, lints and runs every test:
#   1. system packages (scripts/install-deps.sh: the build's C/C++ toolchain and
#      libclang, a Prometheus server, a headless Chromium);
#   2. a Docker engine and the test images, built locally when missing
#      (scripts/docker-images.sh; no registry is needed);
#   3. the local Kafka broker on 127.0.0.1:9092 (scripts/kafka-local.sh),
#      stopped again at the end if this script started it;
#   4. cargo fmt --check, clippy (warnings are errors), cargo test (Kafka
#      suites against Kafka 4.4, the default);
#   5. the Kafka suites again against Kafka 3.9 (scripts/test-kafka-matrix.sh).
#
# Usage: scripts/test.sh
# CARGO_TARGET_DIR is honoured; keep it outside the clone to reuse builds.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust with rustup (https://rustup.rs) and retry" >&2
  exit 1
fi

stamp() { echo "== $(date +%H:%M:%S) $*"; }

stamp "system packages"
scripts/install-deps.sh

stamp "docker engine and test images"
images=$(scripts/docker-images.sh build)
while IFS= read -r line; do
  case "$line" in SLUICE_*_IMAGE=*) export "${line?}" ;; esac
done <<<"$images"

stamp "local Kafka broker"
if scripts/kafka-local.sh status >/dev/null 2>&1; then
  echo "Kafka already running; leaving it running afterwards"
else
  scripts/kafka-local.sh start
  trap 'scripts/kafka-local.sh stop >/dev/null 2>&1 || true' EXIT
fi

stamp "format check"
cargo fmt --all --check
stamp "building (target dir: ${CARGO_TARGET_DIR:-target})"
cargo build --workspace --all-targets
stamp "lint (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
stamp "testing"
cargo test --workspace --no-fail-fast
stamp "Kafka suites against Kafka 3.9"
scripts/test-kafka-matrix.sh 3.9.2
stamp "done"
