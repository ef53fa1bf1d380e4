#!/usr/bin/env bash
# The README's main command: Kafka WordCount, exactly-once, end to end.
#   0. installs the system packages the build needs if missing (g++, make,
#      libclang-dev: scripts/install-deps.sh build); Java and Maven are
#      installed by scripts/kafka-local.sh on first use;
#   1. starts the local Kafka broker (scripts/kafka-local.sh installs it on first use);
#   2. creates an input and an output topic (2 partitions each);
#   3. feeds FILE (default: README.md) into the input topic, one record per line;
#   4. runs kafka_wordcount over it at parallelism 2 with checkpoints every second,
#      bounded at the input's end offsets;
#   5. reads the committed output (read_committed) and prints the 20 most frequent
#      words with their final counts.
#
# Usage: scripts/demo.sh [FILE]
set -euo pipefail
cd "$(dirname "$0")/.."

input=${1:-README.md}
[ -r "$input" ] || { echo "error: cannot read input file '$input'" >&2; exit 1; }
bootstrap=127.0.0.1:9092
run="demo-$(date +%s)"
target=${CARGO_TARGET_DIR:-target}

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust with rustup (https://rustup.rs) and retry" >&2
  exit 1
fi

echo "== system packages the build needs"
scripts/install-deps.sh build

scripts/kafka-local.sh start
scripts/kafka-local.sh topics --create --topic "$run-lines" --partitions 2 >/dev/null
scripts/kafka-local.sh topics --create --topic "$run-counts" --partitions 2 >/dev/null

echo "== building the examples (release)"
cargo build --release --quiet -p sluice-examples --bin kafka_wordcount --bin kafka_feed

echo "== feeding $input into topic $run-lines"
"$target/release/kafka_feed" --bootstrap-servers "$bootstrap" --topic "$run-lines" --input "$input"

echo "== running kafka_wordcount ($run-lines -> $run-counts)"
"$target/release/kafka_wordcount" --bootstrap-servers "$bootstrap" \
  --input-topic "$run-lines" --output-topic "$run-counts" \
  --checkpoint-dir "${TMPDIR:-/tmp}/sluice-demo/$run" --checkpoint-interval 1s -p 2 --bounded

echo "== committed output: one record per word occurrence (key = word, value = running count);"
echo "   the 20 most frequent words with their final counts:"
scripts/kafka-local.sh console-consumer "$run-counts" --from-beginning --isolation-level read_committed \
  --property print.key=true --timeout-ms 10000 2>/dev/null \
  | awk -F'\t' '{ if ($2 + 0 > last[$1] + 0) last[$1] = $2 } END { for (w in last) print last[w] "\t" w }' \
  | sort -rn | head -20
