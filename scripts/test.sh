#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs the system packages
# the tests need (scripts/install-deps.sh), builds the workspace, lints it and
# runs every unit, integration and doc test.
#
# Usage: scripts/test.sh
# CARGO_TARGET_DIR is honoured; keep it outside the clone to reuse builds.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust with rustup (https://rustup.rs) and retry" >&2
  exit 1
fi

echo "== system packages"
scripts/install-deps.sh
echo "== building (target dir: ${CARGO_TARGET_DIR:-target})"
cargo build --workspace --all-targets
echo "== format check"
cargo fmt --all --check
echo "== lint (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== testing"
cargo test --workspace --no-fail-fast
